"""The ``hubmod`` command: a thin layer over the library, one function per command.

Heavy imports (torch, timm) happen inside the commands, so ``hubmod --help`` is quick. Every
``HubmodError`` is printed as one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Annotated

import typer

from .devices import AUTO, DEVICE_HELP
from .formatting import percent

METHOD_NAMES = ("gradsplitter", "cnnsplitter", "activation")  # hubmod.splitters.METHODS, known without torch


class _Argument(typer.core.TyperArgument):
    """A positional argument shown by its metavar alone (SOURCE, REF...), with no type tag."""

    def display_type_rich(self, ctx):  # noqa: ANN001 - click's signature
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class _Command(typer.core.TyperCommand):
    """Commands whose help reads like the README: SOURCE and REF... in usage lines, no type tags."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is typer.core.TyperArgument:
                param.__class__ = _Argument


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"hubmod {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="hubmod",
    help=(
        "Split trained CNN classifiers into per-class modules, publish each as a Hub repo, and compose "
        "new classifiers from modules named by repo.\n\n"
        "Models are named as SOURCE: 'ns/name' or 'ns/name@rev' on the selected hub (the embedded one under "
        "$HUBMOD_HOME by default), 'hf-hub:ns/name' on the Hugging Face Hub, or a directory path "
        "starting with ./, ../, ~/ or /."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: text in square brackets is shown, paragraphs wrap to the terminal
    pretty_exceptions_enable=False,
)
app.command = functools.partial(app.command, cls=_Command)


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                 help="Print hubmod's version and exit.")] = False) -> None:
    """hubmod: the options every command shares (its description is the app's help)."""


HubOpt = Annotated[
    str | None,
    typer.Option("--hub", metavar="HUB",
                 help="Where repos live: 'local' (the embedded hub under $HUBMOD_HOME), 'hf' (HF_ENDPOINT or "
                      "huggingface.co), or an endpoint URL. Default: $HUBMOD_HUB, else 'hf' when HF_ENDPOINT or "
                      "HF_TOKEN is set, else 'local'."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
DeviceOpt = Annotated[str, typer.Option("--device", metavar="DEVICE", help=DEVICE_HELP)]


def _fail(err: Exception) -> None:
    from .errors import HubmodError
    from .untrusted import printable

    code = err.exit_code if isinstance(err, HubmodError) else 1
    typer.echo(f"error: {printable(err)}", err=True)
    raise typer.Exit(code)


def _s(value) -> str:
    """Text for rich output: control characters shown as escapes, square brackets not read as markup
    (class names, repo ids and config values can come from repos hubmod did not write)."""
    from rich.markup import escape

    from .untrusted import printable

    return escape(printable(value))


_UNSET = object()


def _run(fn, hub: str | None | object = _UNSET):
    """Run a command body, turning user errors into one line and an exit code.

    ``hub`` is the command's --hub value: when it was not given, a successful command ends by saying
    on stderr which hub it used and why (errors name their hub themselves).
    """
    from .errors import HubmodError, cli_messages

    try:
        with cli_messages():  # library messages name this command's flags (--shots), not Python's (shots=)
            result = fn()
    except HubmodError as e:
        _fail(e)
    except KeyboardInterrupt:
        typer.echo("interrupted; nothing half-written was published", err=True)
        raise typer.Exit(130) from None
    if hub is None:
        from .hub import LOCAL, default_hub_reason, hubmod_home

        choice, why = default_hub_reason()
        where = f"the embedded hub in {hubmod_home()}" if choice == LOCAL else f"hub {choice!r}"
        from .untrusted import printable

        typer.echo(printable(f"hub: {where} ({why}; choose with --hub)"), err=True)
    return result


def _before_torch(source: str, method: str | None = None, params: list[str] | None = None) -> None:
    """Input errors that need no model, found before torch is imported (seconds sooner)."""
    from .errors import HubmodError
    from .hub import existing_dir
    from .refs import parse_source

    ref = parse_source(source)
    if ref.kind == "dir":
        existing_dir(ref.path)
    if method is not None and method not in METHOD_NAMES:
        raise HubmodError(f"unknown method {method!r}; available: {', '.join(METHOD_NAMES)}")
    if params:
        _parse_params(params)


def _console():
    """Rich console; when output is not a terminal (pipes, CI logs) tables get room instead of '…'."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


PrivateOpt = Annotated[bool, typer.Option("--private", help="Create new repos as private (on hubs that have "
                                                             "visibility, such as the Hugging Face Hub).")]


def _parse_params(params: list[str]) -> dict[str, str]:
    from .errors import HubmodError

    out = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HubmodError(f"bad -p {item!r}: use -p NAME=VALUE (see `hubmod methods` for names)")
        out[key.strip()] = value.strip()
    return out


@app.command()
def split(
    source: Annotated[str, typer.Argument(metavar="SOURCE",
                                          help="The parent classifier to split (timm-format repo or dir).")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", metavar="DATASET",
                                                help="'fashion-mnist', a Hugging Face dataset id, or a path "
                                                "(save_to_disk folder, parquet, image folder). Default: the "
                                                "dataset the parent names (its card's datasets, or "
                                                "hubmod_validation in its config).")] = None,
    method: Annotated[str, typer.Option(metavar="NAME",
                                        help="Splitting method; `hubmod methods` lists them.")] = "gradsplitter",
    classes: Annotated[str | None, typer.Option(metavar="CLASS,...",
                                                help="Comma-separated classes to make modules of (default: all). "
                                                     "GradSplitter trains only these, on their images and a "
                                                     "sample of the others', ten at a time "
                                                     "(-p classes_per_search).")] = None,
    repo_prefix: Annotated[str | None, typer.Option(metavar="NS/NAME",
                                                    help="Modules go to PREFIX-<class-slug>; the split index "
                                                    "to PREFIX. Default: the parent's repo id.")] = None,
    hub: HubOpt = None,
    seed: Annotated[int, typer.Option(metavar="N",
                                      help="Seed for sampling and training; same seed, same modules.")] = 0,
    param: Annotated[list[str], typer.Option("--param", "-p", metavar="NAME=VALUE",
                                             help="Method option NAME=VALUE (repeatable), "
                                             "e.g. -p alpha=1.0 -p train_per_class=300; -p preset=small: the "
                                             "smallest modules, more slowly; -p preset=paper: the paper's frozen "
                                             "weights (`hubmod methods` lists all).")] = [],  # noqa: B006
    publish: Annotated[bool, typer.Option(help="Publish modules and index (--no-publish: only measure).")] = True,
    resume: Annotated[bool, typer.Option(help="Finish a split that was stopped: reuse its finished search and skip "
                                         "classes whose repo already holds this split's module.")] = False,
    stream: Annotated[bool, typer.Option(help="Read the dataset as a shuffled stream and decode only the sampled "
                                         "images (training and validation budgets, up to 500 test images per "
                                         "class): for datasets too big to hold in memory.")] = False,
    negatives: Annotated[str | None, typer.Option(metavar="DATASET",
                                                  help="A dataset with none of the parent's classes (e.g. digits "
                                                  "for a clothing parent): each module learns to reject its images "
                                                  "and then composes better with modules of other parents (the "
                                                  "'gated' rule; BENCHMARKS.md, zero-shot); a module that hardly "
                                                  "tells its class apart alone gets the whole parent "
                                                  "(-p max_auc_loss=0.05; BENCHMARKS.md, weak-modules).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    device: DeviceOpt = AUTO,
    private: PrivateOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Split SOURCE into one module per class and publish each as its own repo.

    \b
    Example:
      hubmod split demo/resnet18-fmnist

    With --classes only those modules are trained, so a few modules of a many-class parent cost
    about as much as a few. GradSplitter runs data-parallel when launched as several processes
    (each takes a share of every batch; the first one publishes):
    accelerate launch --multi_gpu --num_processes 2 -m hubmod.cli split ... (--multi_gpu also
    starts CPU-only processes, on gloo), or torchrun --nproc_per_node 2 -m hubmod.cli split ...
    """

    def body():
        _before_torch(source, method, param)
        from .parallel import close
        from .split_pipeline import split as run_split

        chosen = dataset
        if chosen is None:
            from .hub import open_ref
            from .refs import parse_source
            from .split_pipeline import dataset_of

            chosen = dataset_of(open_ref(parse_source(source), hub), source)
            typer.echo(f"splitting on {_s(chosen)}, the dataset {_s(source)} names (choose with --dataset)", err=True)
        try:
            report = run_split(source, chosen, method=method,
                               classes=[c.strip() for c in classes.split(",")] if classes else None,
                               repo_prefix=repo_prefix, hub=hub, seed=seed, options=_parse_params(param),
                               publish=publish, progress=progress and not as_json, resume=resume, stream=stream,
                               device=device, private=private, negatives=negatives)
        finally:
            close()
        if os.environ.get("RANK", "0") != "0":  # one launched process reports
            return
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=1))
        else:
            _print_split(report)

    _run(body, hub)


def _print_split(report) -> None:
    from rich.table import Table

    con = _console()
    table = Table(title=_s(f"{report.method} split of {report.parent} @ {report.parent_revision[:12]}"))
    for col in ("class", "repo", "kept kernels", "params", "MACs", "precision", "recall", "F1"):
        table.add_column(col, justify="left" if col in ("class", "repo") else "right", overflow="fold")
    for r in report.rows:
        table.add_row(_s(r.class_name), _s(f"{r.repo_id}@{r.revision[:8]}") if r.repo_id and r.revision else "-",
                      percent(r.kept_kernels), f"{r.params:,}", f"{r.macs:,}", percent(r.test_precision),
                      percent(r.test_recall), percent(r.test_f1))
    con.print(table)
    con.print(f"parent: {report.parent_kernels:,} kernels, {report.parent_params:,} params, "
              f"{report.parent_macs:,} MACs; mean module keeps {percent(report.mean_kept_kernels)} of the kernels")
    con.print(f"held-out accuracy on {_s(report.dataset)} ({_s(report.eval_split)}, {report.n_test} images): "
              f"composed modules {percent(report.composed_accuracy)}, parent {percent(report.parent_accuracy)}, "
              f"parent with classifier refit on the split's data {percent(report.parent_refit_accuracy)}")
    con.print("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.seconds.items()))
    if report.index_repo:
        con.print(_s(f"split index: {report.index_repo}@{report.index_revision[:12]} "
                     f"(compose with `hubmod compose {report.index_repo}:CLASS ...`)"))


@app.command()
def compose(
    refs: Annotated[list[str], typer.Argument(metavar="REF",
                                              help="REPO:CLASS (REPO a split parent or module repo), or a "
                                              "bare module repo. Modules may come from different parents. With "
                                              "--from-hub: class names.")],
    output: Annotated[str | None, typer.Option("--output", "-o", metavar="NS/NAME",
                                               help="Publish the classifier as this repo.")] = None,
    calibration: Annotated[str, typer.Option(metavar="RULE",
                                             help="How module scores are made comparable: auto (vote for "
                                             "activation modules, none for modules of one split, gated "
                                             "when every module was split with --negatives, else minmax), "
                                             "none, minmax, means, platt, vote, gated, exposed.")] = "auto",
    hub: HubOpt = None,
    dataset: Annotated[str | None, typer.Option("--eval-dataset", "-d", metavar="DATASET",
                                                help="Also evaluate on this dataset's "
                                                "test split.")] = None,
    fit: Annotated[str | None, typer.Option("--fit", metavar="DATASET",
                                            help="Fit a combiner on a few labelled images of this dataset "
                                            "(classes matched by name): what makes modules of different parents "
                                            "compose well.")] = None,
    shots: Annotated[int, typer.Option("--shots", metavar="K",
                                       help="Labelled images per class drawn from --fit.")] = 10,
    fit_split: Annotated[str | None, typer.Option("--fit-split", metavar="SPLIT",
                                                  help="Split of --fit to draw from (default: the "
                                                  "images none of the parents trained on, where they say which; "
                                                  "else train).")] = None,
    combiner: Annotated[str, typer.Option("--combiner", metavar="KIND",
                                          help="What --fit fits: affine (a scale and offset per module; the "
                                          "default: the most accurate on average with 1 to 10 images per class in "
                                          "BENCHMARKS.md), stack (logistic regression over the module scores), "
                                          "probe (a linear classifier on the modules' features; better with 50 "
                                          "or more images per class).")] = "affine",
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed for drawing the --fit or --adapt "
                                      "images.")] = 0,
    adapt: Annotated[str | None, typer.Option("--adapt", metavar="DATASET",
                                              help="No labels? Images of this task (a folder of them will do; labels "
                                              "are not read), about as many of each class: each module's score is "
                                              "offset so the composition shares them evenly between its classes. "
                                              "Helps modules of different parents when --fit is not possible; "
                                              "costs accuracy when the classes are far from equally common among "
                                              "the images (BENCHMARKS.md, adapt). Not with --fit.")] = None,
    adapt_split: Annotated[str, typer.Option("--adapt-split", metavar="SPLIT",
                                             help="Split of --adapt to read.")] = "train",
    from_hub: Annotated[bool, typer.Option("--from-hub",
                                           help="The arguments are class names: for each, find the modules on the "
                                           "hub and keep the one under which the composition is most accurate on "
                                           "the --fit images (cross-validated), or, without --fit, as --unlabelled "
                                           "says (a weaker choice).")] = False,
    candidates: Annotated[int, typer.Option("--candidates", metavar="N",
                                            help="With --from-hub: modules considered per class, the best N by "
                                            "recorded F1.")] = 5,
    unlabelled: Annotated[str, typer.Option("--unlabelled", metavar="RULE",
                                            help="With --from-hub and no --fit, how modules are chosen (and, with "
                                            "--fit, where the measured choice starts): splits (the default: as few "
                                            "splits as cover the classes, which composed better than f1 on every "
                                            "problem in BENCHMARKS.md) or f1 (each class's best recorded "
                                            "F1).")] = "splits",
    device: DeviceOpt = AUTO,
    private: PrivateOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Compose a classifier from class modules named by repo, or by class name with --from-hub.

    \b
    Examples:
      hubmod compose demo/resnet18-fmnist:Sneaker demo/vgg-fmnist:Bag --output me/shoes-vs-bags
      hubmod compose Sneaker Bag Shirt --from-hub --fit fashion-mnist --shots 10 --output me/three
      hubmod compose demo/vgg-fmnist:Coat demo/resnet18-fmnist:Shirt --adapt ./my-unlabelled-photos
    """

    def body():
        if from_hub:
            from .from_hub import compose_from_hub

            model = compose_from_hub(refs, output=output, hub=hub, candidates=candidates, fit=fit, shots=shots,
                                     combiner=combiner, calibration_method=calibration, seed=seed,
                                     fit_split=fit_split, private=private, unlabelled=unlabelled,
                                     adapt=adapt, adapt_split=adapt_split)
        else:
            from .composed import compose as run_compose

            model = run_compose(refs, output=output, calibration_method=calibration, hub=hub, private=private,
                                fit=fit, shots=shots, combiner=combiner, seed=seed, fit_split=fit_split,
                                adapt=adapt, adapt_split=adapt_split)
        info = {"output": output, "revision": model.pushed_revision, "classes": model.class_names,
                "calibration": model.calibration, "modules": model.provenance,
                "fit": {k: v for k, v in model.fit_info.items() if k != "rows"} if model.fit_info else None,
                "selection": model.selection}
        given = fit or adapt
        if given and dataset and model.fit_info and model.fit_info["split"] == "test":
            typer.echo(f"warning: the {'fit' if fit else 'adapt'} images come from {_s(given)}'s test split, which "
                       "--eval-dataset scores: the accuracy counts them", err=True)
        if dataset:
            from .evaluation import evaluate
            from .loading import COMPOSED, Loaded

            snap = getattr(model, "source", None)
            rep = evaluate(Loaded(COMPOSED, model, snap or _fake_snapshot(output)), dataset, device=device)
            info["eval"] = rep.to_dict()
        if as_json:
            typer.echo(json.dumps(info, indent=1))
            return
        con = _console()
        con.print(_s(f"composed {len(model.class_names)} classes ({model.calibration} calibration): "
                     + ", ".join(f"{c} <- {p.get('repo_id') or 'local dir'}@{(p.get('revision') or '')[:8]}"
                                 for c, p in zip(model.class_names, model.provenance, strict=True))))
        if model.selection:
            for entry in model.selection["classes"]:
                cand = entry["candidates"][entry["chosen"]]
                con.print(_s(f"  {entry['class_name']}: {cand['repo_id']} of {len(entry['candidates'])} candidates "
                             f"({entry['why']})"))
            if model.selection["by"] != "fit":
                con.print("note: without --fit the modules were chosen without measuring them on this task, a weaker "
                          "choice")
        if model.fit_info:
            f = model.fit_info
            con.print(_s(f"adapted to {f['images']} unlabelled images of {f['dataset']} ({f['split']})" if adapt else
                         f"fitted a {f['combiner']} combiner on {f['shots']} images per class of {f['dataset']} "
                         f"({f['source']})"))
        if output:
            con.print(_s(f"published {output}@{info['revision'][:12]}"))
        if dataset:
            con.print(f"accuracy on {_s(dataset)} (test): {percent(info['eval']['accuracy'])}")

    _run(body, hub)


@app.command()
def patch(
    weak_model: Annotated[str, typer.Argument(metavar="SOURCE",
                                              help="The timm-format classifier to patch (a SOURCE).")],
    module: Annotated[str, typer.Option("--module", "-m", metavar="REF",
                                        help="REF of the module that answers for its class: "
                                        "REPO:CLASS or a module repo.")],
    output: Annotated[str, typer.Option("--output", "-o", metavar="NS/NAME",
                                        help="Publish the patched classifier as this repo.")],
    class_name: Annotated[str | None, typer.Option("--class", metavar="CLASS",
                                                   help="The weak model's class to patch (default: "
                                                   "the module's class, matched by name).")] = None,
    strategy: Annotated[str, typer.Option(
        "--calibration", "--strategy", metavar="RULE",
        help="How the module's score meets the weak model's softmax: minmax (CNNSplitter's rule) or platt. "
             "(--strategy is the older name.)")] = "minmax",
    hub: HubOpt = None,
    dataset: Annotated[str | None, typer.Option("--eval-dataset", "-d", metavar="DATASET",
                                                help="Also evaluate the weak and the patched "
                                                "model on this dataset's test split.")] = None,
    device: DeviceOpt = AUTO,
    private: PrivateOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace a weak classifier's output for one class with a stronger module's.

    \b
    Example:
      hubmod patch me/weak-fmnist --module demo/resnet18-fmnist:Shirt --output me/weak-fmnist-patched
    """

    def body():
        from .patching import patch as run_patch

        model = run_patch(weak_model, module, class_name=class_name, strategy=strategy, output=output, hub=hub,
                          private=private)
        target = model.class_names[model.target]
        info = {"output": output, "revision": model.pushed_revision, "patched_class": target,
                "strategy": strategy, **model.provenance}
        if dataset:
            from .evaluation import evaluate

            before = evaluate(weak_model, dataset, hub=hub, device=device)
            after = evaluate(output, dataset, hub=hub, device=device)
            info["eval"] = {"before": before.to_dict(), "after": after.to_dict()}
        if as_json:
            typer.echo(json.dumps(info, indent=1))
            return
        con = _console()
        con.print(_s(f"patched {target} of {weak_model} with {info.get('module_repo_id') or module}; "
                     f"published {output}@{info['revision'][:12]}"))
        if dataset:
            b, a = info["eval"]["before"], info["eval"]["after"]
            con.print(f"accuracy {percent(b['accuracy'])} -> {percent(a['accuracy'])}; {_s(target)}: "
                      + ", ".join(f"{k} {percent(b['per_class'][target][k])} -> {percent(a['per_class'][target][k])}"
                                  for k in ("precision", "recall", "f1")))

    _run(body, hub)


@app.command()
def replace(
    model: Annotated[str, typer.Argument(metavar="MODEL",
                                         help="A composed classifier, or a split parent (all its modules).")],
    class_name: Annotated[str, typer.Option("--class", metavar="CLASS", help="The class whose module is swapped.")],
    with_ref: Annotated[str, typer.Option("--with", metavar="REF",
                                          help="REF of the better module of that class: REPO:CLASS "
                                          "or a module repo.")],
    output: Annotated[str, typer.Option("--output", "-o", metavar="NS/NAME",
                                        help="Publish the new classifier as this repo.")],
    calibration: Annotated[str, typer.Option(metavar="RULE",
                                             help="As in compose: auto, none, minmax, means, platt, vote, gated, "
                                             "exposed.")] = "auto",
    hub: HubOpt = None,
    dataset: Annotated[str | None, typer.Option("--eval-dataset", "-d", metavar="DATASET",
                                                help="Also evaluate the model before and "
                                                "after on this dataset's test split.")] = None,
    fit: Annotated[str | None, typer.Option("--fit", metavar="DATASET",
                                            help="For a fitted composition: the labelled dataset to fit "
                                            "its combiner on again (it is refused without).")] = None,
    shots: Annotated[int | None, typer.Option("--shots", metavar="K",
                                              help="Images per class for the refit (default: as "
                                              "before).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", metavar="N",
                                             help="Seed for the refit (default: as before).")] = None,
    adapt: Annotated[str | None, typer.Option("--adapt", metavar="DATASET",
                                              help="For a composition adapted to unlabelled images (compose "
                                              "--adapt): those images again, to adapt it to the new module (it is "
                                              "refused without).")] = None,
    device: DeviceOpt = AUTO,
    private: PrivateOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Swap one class's module of a modular classifier for a better one; every other module stays pinned.

    \b
    Example:
      hubmod replace me/fmnist-composed --class Shirt --with demo/resnet18-fmnist:Shirt --output me/fixed
    """

    def body():
        from .replacing import replace as run_replace

        new = run_replace(model, class_name, with_ref, output=output, calibration_method=calibration, hub=hub,
                          private=private, fit=fit, shots=shots, seed=seed, adapt=adapt)
        info = {"output": output, "revision": new.pushed_revision, "classes": new.class_names,
                "calibration": new.calibration, "modules": new.provenance}
        if dataset:
            from .evaluation import evaluate
            from .loading import COMPOSED, Loaded, load

            old = load(model, hub)
            if old.kind != COMPOSED:  # a split parent stands for all its modules: "before" is their composition
                from .composed import compose_modules, modules_of

                old = Loaded(COMPOSED, compose_modules(modules_of(model, hub), calibration_method=calibration,
                                                       hub=hub), old.snapshot)
            before, after = evaluate(old, dataset, device=device), evaluate(output, dataset, hub=hub, device=device)
            info["eval"] = {"before": before.to_dict(), "after": after.to_dict()}
        if as_json:
            typer.echo(json.dumps(info, indent=1))
            return
        con = _console()
        con.print(_s(f"replaced {class_name} of {model} with {with_ref} ({new.calibration}); "
                     f"published {output}@{info['revision'][:12]}"))
        if dataset:
            b, a = info["eval"]["before"], info["eval"]["after"]
            con.print(f"accuracy {percent(b['accuracy'])} -> {percent(a['accuracy'])}")

    _run(body, hub)


def _fake_snapshot(name: str | None):
    from pathlib import Path

    from .hub import Snapshot

    return Snapshot(path=Path("."), sha="", hub="memory", repo_id=name or "composed classifier")


@app.command("eval")
def eval_cmd(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="A parent, module or composed classifier.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", metavar="DATASET",
                                         help="Dataset to evaluate on (see split).")],
    split: Annotated[str, typer.Option(metavar="SPLIT", help="Dataset split.")] = "test",
    hub: HubOpt = None,
    device: DeviceOpt = AUTO,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy and per-class precision / recall / F1 of any model hubmod can load.

    A module is scored as a one-vs-rest detector of its class.
    """

    def body():
        _before_torch(source)
        from .evaluation import evaluate

        rep = evaluate(source, dataset, split=split, hub=hub, device=device)
        if as_json:
            typer.echo(json.dumps(rep.to_dict(), indent=1))
            return
        from rich.table import Table

        table = Table(title=_s(f"{rep.model} on {rep.dataset} ({rep.split}, {rep.n} images): "
                               f"accuracy {percent(rep.accuracy)}"))
        for col in ("class", "precision", "recall", "F1", "support"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for name, m in rep.per_class.items():
            table.add_row(_s(name), percent(m["precision"]), percent(m["recall"]), percent(m["f1"]), str(m["support"]))
        _console().print(table)

    _run(body, hub)


@app.command()
def inspect(
    source: Annotated[str, typer.Argument(metavar="SOURCE",
                                          help="A parent, module, composed classifier or split index repo.")],
    hub: HubOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What a repo is: classes, size, parent, method, metrics."""

    def body():
        _before_torch(source)
        from .inspection import describe

        info = describe(source, hub)
        if as_json:
            typer.echo(json.dumps(info, indent=1, default=str))
            return
        con = _console()
        from rich.table import Table

        for key, value in info.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                table = Table(title=_s(key))
                for col in value[0]:
                    table.add_column(_s(col), overflow="fold")
                for row in value:
                    table.add_row(*[_fmt(v) for v in row.values()])
                con.print(table)
            elif isinstance(value, dict) and value:
                table = Table(title=_s(key), show_header=False)
                table.add_column("key", style="bold")
                table.add_column("value", overflow="fold")
                for k, v in value.items():
                    table.add_row(_s(k), _fmt(v))
                con.print(table)
            else:
                con.print(f"[bold]{_s(key)}[/bold]: {_fmt(value)}")

    _run(body, hub)


@app.command()
def find(
    classes: Annotated[list[str], typer.Argument(metavar="CLASS",
                                                 help="Classes to find modules of (exact name, any case, or slug).")],
    hub: HubOpt = None,
    architecture: Annotated[str | None, typer.Option(metavar="ARCH", help="Only modules of this timm "
                                                     "architecture, e.g. resnet18.")] = None,
    method: Annotated[str | None, typer.Option(metavar="NAME", help="Only modules split with this method.")] = None,
    parent: Annotated[str | None, typer.Option(metavar="REPO", help="Only modules of this parent repo.")] = None,
    min_f1: Annotated[float | None, typer.Option(metavar="X", help="Only modules whose test F1 at split time is "
                                                 "at least X (0..1).")] = None,
    max_macs: Annotated[int | None, typer.Option(metavar="N", help="Only modules of at most N MACs per "
                                                 "image.")] = None,
    sort: Annotated[str, typer.Option(metavar="ORDER", help="f1 (best first), macs (smallest first), downloads "
                                      "or recent.")] = "f1",
    limit: Annotated[int, typer.Option(metavar="N", help="At most N modules per class.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List module repos of each CLASS on the hub, from their cards' metadata (nothing is downloaded).

    \b
    Example:
      hubmod find Sneaker Bag --sort macs --limit 5
    """

    def body():
        from .discovery import find as run_find

        found = run_find(classes, hub, architecture=architecture, method=method, parent=parent, min_f1=min_f1,
                         max_macs=max_macs, sort=sort, limit=limit)
        if as_json:
            typer.echo(json.dumps({c: [r.to_dict() for r in rows] for c, rows in found.items()}, indent=1))
            return
        from rich.table import Table

        con = _console()
        for wanted, rows in found.items():
            if not rows:
                con.print(_s(f"no module of {wanted!r} on this hub; make one with: hubmod split PARENT --classes "
                             f"{wanted!r}"))
                continue
            table = Table(title=_s(f"{wanted}: {len(rows)} module{'s' if len(rows) != 1 else ''}"))
            for col in ("repo", "parent", "architecture", "method", "F1", "kept kernels", "MACs", "input", "license",
                        "missing"):
                table.add_column(col, overflow="fold", justify="right" if col in ("F1", "kept kernels", "MACs")
                                 else "left")
            for r in rows:
                table.add_row(_s(f"{r.repo_id}@{r.sha[:8]}" if r.sha else r.repo_id),
                              _s(f"{r.parent}@{r.parent_revision[:8]}" if r.parent and r.parent_revision
                                 else r.parent or "-"),
                              _s(r.architecture or "-"), _s(r.method or "-"),
                              percent(r.f1) if r.f1 is not None else "-",
                              percent(r.kept_kernels) if r.kept_kernels is not None else "-",
                              f"{r.macs:,}" if r.macs is not None else "-",
                              "x".join(map(str, r.input_size)) if r.input_size else "-", _s(r.license or "-"),
                              _s(", ".join(r.missing) or "-"))
            con.print(table)

    _run(body, hub)


@app.command("app")
def app_command(
    hub: HubOpt = None,
    host: Annotated[str, typer.Option(metavar="ADDR", help="Address to listen on. The default, loopback, keeps "
                                      "the page to this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="N", help="Port to listen on.")] = 7860,
) -> None:
    """Start a local web page: find modules by class, read their cards, compose them, try them on images.

    The page works on one hub (--hub) and publishes composed models to it. It reads no file outside
    that hub and the images you upload. Stop it with Ctrl-C.

    \b
    Example:
      hubmod app --port 7860      # then open http://127.0.0.1:7860
    """

    def body():
        from .app import check_port, serve

        check_port(host, port)
        typer.echo(f"hubmod app on http://{host}:{port} (Ctrl-C stops it)", err=True)
        serve(hub, host, port, block=True)

    _run(body, hub)


def _fmt(value) -> str:
    """One value of ``inspect`` as rich text (escaped: it may come from a repo hubmod did not write)."""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | dict):
        return _s(json.dumps(value, default=str))
    return _s(value)


@app.command()
def export(
    source: Annotated[str, typer.Argument(metavar="SOURCE",
                                          help="A composed classifier (or a single module) to export.")],
    output: Annotated[str, typer.Option("--output", "-o", metavar="NS/NAME", help="The .onnx file to write.")],
    input_size: Annotated[str | None, typer.Option(metavar="C,H,W",
                                                   help="Raw image size C,H,W the graph takes (default: the "
                                                   "first module's input size); the batch is dynamic.")] = None,
    hub: HubOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write an ONNX graph: uint8 images in, one calibrated score out per class.

    Preprocessing, every module and calibration are in the graph; it is checked against PyTorch
    with onnxruntime before the file is written.

    \b
    Example:
      hubmod export me/shoes -o shoes.onnx
    """

    def body():
        _before_torch(source)
        from .errors import HubmodError
        from .onnx_export import export as run_export

        size = None
        if input_size:
            try:
                size = tuple(int(v) for v in input_size.split(","))
            except ValueError:
                size = ()
            if len(size) != 3 or min(size) < 1:
                raise HubmodError(f"--input-size {input_size!r} must be C,H,W (e.g. 1,28,28)")
        info = run_export(source, output, size, hub)
        if as_json:
            typer.echo(json.dumps(info, indent=1))
        else:
            from .untrusted import printable

            typer.echo(f"wrote {printable(info['path'])}: input uint8 {info['input']}, {len(info['outputs'])} "
                       "outputs; "
                       f"max |ONNX - PyTorch| {info['max_abs_diff']:.1e} on {info['checked_images']} images")

    _run(body, hub)


@app.command()
def methods(as_json: JsonOpt = False) -> None:
    """List the splitting methods and their -p options."""
    import dataclasses

    from .splitters import METHODS

    if as_json:
        typer.echo(json.dumps({name: {"name": cls.pretty_name, "paper": cls.paper, "paper_url": cls.paper_url,
                                      "options": {f.name: f.default for f in dataclasses.fields(cls.config_class)},
                                      "option_docs": cls.config_class.option_help(),
                                      "presets": cls.config_class.presets}
                               for name, cls in METHODS.items()}, indent=1))
        return
    for name, cls in METHODS.items():
        typer.echo(f"{name}: {cls.pretty_name} — {cls.paper} ({cls.paper_url})")
        for item in [*cls.config_class.option_lines(), *cls.config_class.preset_lines()]:
            typer.echo(f"    -p {item}")


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # e.g. `hubmod inspect ... | head`
        sys.exit(0)


if __name__ == "__main__":
    main()
