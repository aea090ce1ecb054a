"""ComposedClassifier: a classifier assembled from class modules named by repo.

Modules may come from different parents, datasets, architectures and input formats. Each keeps its
own preprocessing (run once per distinct data config), and raw scores are made comparable with
the calibration statistics every module carries. The composed repo pins every module to the
commit sha it was built from and, by default, carries all weights consolidated in one
safetensors file so loading it needs one download.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import calibration, cards
from .artifact import CONFIG, HubArtifact, PredictsClassNames, artifact_class
from .combiners import Combiner
from .devices import device_of
from .errors import HubmodError, InvalidRepoError, option
from .fast_inference import SharedStems, use_fast_path
from .formatting import percent
from .hub import Hub, Snapshot, get_hub, open_ref
from .module import ClassModule
from .preprocess import batches_by_config
from .refs import is_commit_sha, match_class, parse_ref, validate_repo_id
from .split_index import SPLIT_INDEX, SplitIndex, has_index
from .untrusted import Fields, printable
from .weights import WEIGHTS, load_parts

logger = logging.getLogger(__name__)

MAX_MODULES = 1000  # each module costs a parent build: a composed config listing more is refused
DEFAULT_COMBINER = "affine"  # the most accurate on average at 1-10 images per class (BENCHMARKS.md, reuse)


class ComposedClassifier(PredictsClassNames, HubArtifact, nn.Module):
    """argmax over calibrated module scores; one output per module, in the order given."""

    kind = "composed_classifier"
    format_version = 1
    version_required = False  # composed repos written before the version was recorded read as version 1
    title = "composed classifier"
    card_template = "composed.md.j2"

    def __init__(self, modules: Sequence[ClassModule], calibration_method: str = "none",
                 provenance: Sequence[dict] | None = None, combiner: Combiner | None = None,
                 fit_info: dict | None = None, selection: dict | None = None):
        super().__init__()
        if not modules:
            raise HubmodError("a composed classifier needs at least one module")
        names = [m.class_name for m in modules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise HubmodError(
                f"two modules claim the class {', '.join(map(repr, dupes))}: a composed classifier "
                "needs one module per class (drop one REF)"
            )
        if calibration_method not in calibration.METHODS:
            raise HubmodError(f"unknown calibration {calibration_method!r}; use one of "
                              f"{', '.join((calibration.AUTO, *calibration.METHODS))}")
        ungated = [m.class_name for m in modules if not m.exposed]
        if calibration_method in calibration.NEEDS_GATE and ungated:
            raise HubmodError(f"the {calibration_method} calibration needs modules split with --negatives; "
                              f"{', '.join(map(repr, ungated[:5]))} {'has' if len(ungated) == 1 else 'have'} no "
                              "outlier-exposure gate: use --calibration minmax")
        self.class_modules = nn.ModuleList(modules)
        self.calibration = calibration_method
        self.provenance = list(provenance or [{} for _ in modules])
        self.combiner = combiner  # fitted on a few labelled images of this task (hubmod.combiners), or None
        self.fit_info = fit_info  # where those images came from
        self.selection = selection  # composed by class name: the candidates considered (hubmod.from_hub)
        self._shared_stems = SharedStems()
        self.share_stems = True  # False: every module runs its own stem (to measure what sharing buys)
        self.eval()

    @property
    def class_names(self) -> list[str]:
        return [m.class_name for m in self.class_modules]

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def forward(self, images: Any, batch_size: int = 256) -> torch.Tensor:
        """Scores [B, k] (on the CPU) for raw images (or preprocessed input, if every module shares it):
        calibrated module scores, or the combiner's logits when the composition was fitted.

        Each module runs on the device its parameters are on (``.to(device)`` moves them all). For
        inference, modules of one parent run their shared stem once (hubmod.fast_inference.SharedStems).
        """
        out = [self.combine(scores, features) for scores, features in self.module_outputs(images, batch_size)]
        return torch.cat(out) if out else torch.empty(0, len(self.class_modules))

    def module_outputs(self, images: Any, batch_size: int = 256):
        """Per batch: the modules' calibrated scores [B, k] and their head inputs concatenated [B, D] (CPU)."""
        mods = list(self.class_modules)
        configs = [m.data_config for m in mods]
        for inputs in batches_by_config(images, configs, batch_size, "these modules"):
            if use_fast_path(self) and self.share_stems:
                features = self._shared_stems([m.fast_backbone for m in mods], [m.backbone for m in mods],
                                              [inputs[m.data_config].to(device_of(m)) for m in mods], configs)
            else:
                features = [m.head_input(inputs[m.data_config]) for m in mods]
            scores = [m.calibrated(m.head(f), self.calibration, f).cpu() for m, f in zip(mods, features, strict=True)]
            yield torch.stack(scores, dim=1), torch.cat([f.cpu() for f in features], dim=1)

    def combine(self, scores: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The composition's output from its modules' outputs: the scores, or the fitted combiner's logits."""
        return scores if self.combiner is None else self.combiner(scores, features)

    @property
    def feature_width(self) -> int:
        return sum(m.head_width for m in self.class_modules)

    # ------------------------------------------------------------------ repo files

    def config_dict(self) -> dict:
        return {
            **self.config_header(),
            "class_names": self.class_names,
            "calibration": self.calibration,
            "modules": [{**prov, "class_name": m.class_name, "config": m.config.to_dict()}
                        for m, prov in zip(self.class_modules, self.provenance, strict=True)],
            "consolidated_weights": True,
            **({"combiner": self.combiner.spec(), "fit": self.fit_info} if self.combiner is not None else {}),
            **({"selection": self.selection} if self.selection is not None else {}),
        }

    def weights(self) -> dict[str, torch.Tensor]:
        state = {f"modules.{i}.{k}": v for i, m in enumerate(self.class_modules) for k, v in m.state_dict().items()}
        if self.combiner is not None:
            state.update({f"combiner.{k}": v for k, v in self.combiner.state_dict().items()})
        return state

    def card_values(self, name: str, hub_name: str | None, directory: Path | None) -> tuple[Any, dict]:
        """The composed card: its modules pinned to their commits, its rule, any fit."""
        from huggingface_hub import ModelCardData

        from . import __version__

        rows, parents, bases, datasets, licenses = [], set(), [], [], set()
        for m, prov in zip(self.class_modules, self.provenance, strict=True):
            cfg = m.config
            parent = cfg.parent.get("repo_id") or "local parent"
            parents.add((parent, cfg.parent.get("revision")))
            rows.append({"class_name": m.class_name, "repo": prov.get("repo_id") or "(local directory)",
                         "revision": (prov.get("revision") or "")[:12], "parent": parent,
                         "method": cfg.method.get("name"), "kept": percent(cfg.metrics.get("kept_kernels", 0.0))})
            if prov.get("repo_id") and prov.get("hub") not in (None, "dir") and prov["repo_id"] not in bases:
                bases.append(prov["repo_id"])
            if cfg.dataset.get("hub_id") and cfg.dataset["hub_id"] not in datasets:
                datasets.append(cfg.dataset["hub_id"])
            if cfg.parent.get("license"):
                licenses.add(cfg.parent["license"])
        card_data = ModelCardData(
            library_name="hubmod", tags=["hubmod", "composed-classifier", "image-classification"],
            base_model=bases or None, base_model_relation="merge" if bases else None,
            datasets=datasets or None, pipeline_tag="image-classification",
            license=licenses.pop() if len(licenses) == 1 else None, model_name=name,
        )
        metric_rows: list[tuple[str, str]] = []
        hub_arg, hub_flag = cards.usage(hub_name)
        refs = " ".join(f"{r['repo']}" for r in rows)
        fit = self.fit_info if self.combiner is not None else None
        fit_flags = _fit_flags(fit) if fit else ""
        if fit and fit.get("dataset_hub_id") and fit["dataset_hub_id"] not in datasets:
            card_data.datasets = [*(card_data.datasets or []), fit["dataset_hub_id"]]
        selection_rows, from_hub = [], None
        if self.selection is not None:
            for entry in self.selection["classes"]:
                for j, cand in enumerate(entry["candidates"]):
                    selection_rows.append({
                        "class_name": entry["class_name"], "repo": cand["repo_id"], "revision": cand["revision"][:12],
                        "parent": cand.get("parent") or "?",
                        "f1": percent(cand["f1"]) if "f1" in cand else "?",
                        "score": percent(cand["score"]) if "score" in cand else "",
                        "chosen": "**chosen**: " + entry["why"] if j == entry["chosen"] else ""})
            names = " ".join(f'"{c}"' if " " in c or "/" in c else c for c in self.class_names)
            rule = f" --unlabelled {self.selection['unlabelled']}" if self.selection.get("unlabelled", "splits") != \
                "splits" else ""
            from_hub = (f"hubmod compose {names} --from-hub --candidates {self.selection['candidates_per_class']}"
                        f"{rule}{fit_flags} --output {name}{hub_flag}")
        return card_data, dict(
            selection=self.selection, selection_rows=selection_rows, from_hub_command=from_hub,
            title=f"{name}: {', '.join(self.class_names)}", num_classes=len(self.class_names),
            num_modules=len(rows), num_parents=len(parents), calibration=self.calibration, rows=rows,
            metric_rows=metric_rows, repo_id=name, hub_arg=hub_arg, hub_flag=hub_flag, fit=fit,
            command=(f"hubmod compose {refs} --calibration {self.calibration}{fit_flags} --output "
                     f"{name}{hub_flag}"),
            hubmod_version=__version__,
        )

    def commit_message(self) -> str:
        return f"hubmod: compose {', '.join(self.class_names)}"

    # ------------------------------------------------------------------ loading

    @classmethod
    def _from_config(cls, data: dict, snap: Snapshot, hub: str | Hub | None) -> ComposedClassifier:
        name = printable(snap.name)
        entries = data.get("modules")
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise InvalidRepoError(f"{name}: config.json lists no modules")
        if len(entries) > MAX_MODULES:
            raise InvalidRepoError(f"{name}: config.json lists {len(entries):,} modules, over hubmod's limit of "
                                   f"{MAX_MODULES:,}")
        calibration_method = data.get("calibration", "none")
        if calibration_method not in calibration.METHODS:
            raise InvalidRepoError(f"{name}: config.json names calibration {printable(calibration_method)!r}; "
                                   f"this hubmod knows {', '.join(calibration.METHODS)}")
        combiner = Combiner.from_spec(data["combiner"], name) if "combiner" in data else None
        fit_info = None
        if combiner is not None:
            from .fitting import checked_fit_record

            fit_info = checked_fit_record(data.get("fit"), name)
        parts: dict[str, torch.nn.Module] = {"combiner.": combiner} if combiner is not None else {}
        if snap.file(WEIGHTS, required=False) is not None:
            modules = [ClassModule.from_config(_entry_config(e, name, i), f"{name} module {i}")
                       for i, e in enumerate(entries)]
            load_parts(snap.file(WEIGHTS), {**{f"modules.{i}.": m for i, m in enumerate(modules)}, **parts}, name)
            provenance = [{k: e.get(k) if isinstance(e.get(k), str) else None for k in ("repo_id", "revision", "hub")}
                          for e in entries]
        else:  # no consolidated weights: fetch each module at its pinned commit
            if combiner is not None:
                raise InvalidRepoError(f"{name}: config.json names a fitted combiner but the repo has no {WEIGHTS} "
                                       "to hold it; re-publish the composed model")
            pairs = [_pinned_module(e, i, snap, hub) for i, e in enumerate(entries)]
            modules, provenance = [m for m, _ in pairs], [p for _, p in pairs]
        if combiner is not None:
            combiner.check_fits(len(modules), sum(m.head_width for m in modules), name)
        if calibration_method in calibration.NEEDS_GATE and not all(m.exposed for m in modules):
            raise InvalidRepoError(f"{name}: config.json names the {calibration_method} calibration but not every "
                                   "module has an outlier-exposure gate; re-publish the composed model")
        selection = checked_selection(data["selection"], name, len(modules)) if "selection" in data else None
        model = cls(modules, calibration_method, provenance, combiner, fit_info, selection)
        model.source = snap
        return model


def checked_selection(data: object, where: str, classes: int) -> dict:
    """A composed config's ``selection`` record (composed by class name), checked field by field."""
    f = Fields(data, f"{where} config.json selection")
    record: dict[str, Any] = {"by": f.str("by", max_len=50), "hub": f.str("hub", max_len=200),
                              "candidates_per_class": f.int("candidates_per_class", lo=1, hi=1000)}
    if (penalty := f.number("penalty", optional=True, lo=0.0, hi=1e6)) is not None:
        record["penalty"] = penalty
    if (unlabelled := f.str("unlabelled", optional=True, max_len=50)) is not None:
        record["unlabelled"] = unlabelled
    entries = f.list("classes", max_len=classes)
    if len(entries) != classes:
        raise f.error(f"field 'classes' must list the {classes} composed classes")
    record["classes"] = []
    for i, entry in enumerate(entries):
        e = Fields(entry, f"{where} config.json selection class {i}")
        rows = e.list("candidates", max_len=1000)
        cands = []
        for j, row in enumerate(rows):
            r = Fields(row, f"{where} config.json selection class {i} candidate {j}")
            cand = {"class_name": r.str("class_name", max_len=500), "repo_id": r.str("repo_id", max_len=200),
                    "revision": r.str("revision", max_len=64)}
            for key, value in (("parent", r.str("parent", optional=True, max_len=200)),
                               ("f1", r.number("f1", optional=True, lo=0.0, hi=1.0)),
                               ("score", r.number("score", optional=True, lo=0.0, hi=1.0)),
                               ("loss", r.number("loss", optional=True, lo=0.0, hi=1e9))):
                if value is not None:
                    cand[key] = value
            cands.append(cand)
        record["classes"].append({"class_name": e.str("class_name", max_len=500),
                                  "chosen": e.int("chosen", lo=0, hi=max(len(cands) - 1, 0)),
                                  "why": e.str("why", max_len=500), "candidates": cands})
    return record


def _entry_config(entry: dict, name: str, i: int) -> dict:
    config = entry.get("config")
    if not isinstance(config, dict):
        raise InvalidRepoError(f"{name}: config.json module {i} has no config object; re-publish the repo")
    return config


def linked_hub(snap: Snapshot, named: object, hub: str | Hub | None, what: str) -> Hub:
    """The hub to read a repo that ``snap``'s own files point to.

    That is the hub ``snap`` came from (for a local directory: the selected one), or the hub the
    user selected. A file naming any other hub is refused: a repo never chooses where hubmod
    connects, nor whom it sends the user's token to.
    """
    selected = get_hub(hub)
    home = snap.origin or selected
    for candidate in (home, selected):
        if named in (None, "dir", candidate.name):
            return candidate
    raise InvalidRepoError(
        f"{what} names the hub {printable(named)!r}; hubmod reads it only from the hub {printable(snap.name)} came "
        f"from ({printable(home.name)}) or the one you selected: select that hub yourself if you trust it"
    )


def _pinned_module(entry: dict, i: int, snap: Snapshot, hub: str | Hub | None) -> tuple[ClassModule, dict]:
    """One module of a composed repo without consolidated weights, read at the commit the entry pins."""
    where = f"{printable(snap.name)} module {i}"
    repo_id, revision = entry.get("repo_id"), entry.get("revision")
    if not isinstance(repo_id, str) or not isinstance(revision, str):
        raise InvalidRepoError(f"{where} has no repo_id/revision and the repo has no consolidated weights")
    validate_repo_id(repo_id)
    if not is_commit_sha(revision):
        raise InvalidRepoError(f"{where} pins {repo_id} at {printable(revision)!r}, which is not a full commit sha; "
                               "hubmod only follows pinned commits")
    target = linked_hub(snap, entry.get("hub"), hub, where)
    return module_at(target, repo_id, revision, where)


def module_at(target: Hub, repo_id: str, revision: str, where: str) -> tuple[ClassModule, dict]:
    module_snap = target.snapshot(repo_id, revision)
    if module_snap.sha != revision:
        raise InvalidRepoError(f"{where}: {repo_id} came back at commit {printable(module_snap.sha)!r}, not the "
                               f"pinned {revision}")
    return module_in(module_snap)


def module_in(snap: Snapshot) -> tuple[ClassModule, dict]:
    """The module an opened repo holds, with its provenance (repo, commit sha, hub)."""
    return ClassModule.from_snapshot(snap), _provenance(snap)


# --------------------------------------------------------------------------- REF resolution


def resolve_ref(text: str, hub: str | Hub | None = None) -> list[tuple[ClassModule, dict]]:
    """The module(s) a REF names, each with its provenance (repo, commit sha, hub).

    ``REPO:CLASS`` goes through REPO's split index when REPO is a split parent or index repo, and
    must match the module's class when REPO is a module repo; a bare module repo is that module;
    a composed repo contributes all its modules (or the one named by ``:CLASS``).
    """
    ref, class_name = parse_ref(text)
    snap = open_ref(ref, hub)
    name = printable(snap.name)
    if has_index(snap):
        index = SplitIndex.from_snapshot(snap)
        if class_name is None:
            raise HubmodError(f"{name} is a split parent: name a class, e.g. {name}:{printable(index.class_names[0])} "
                              f"(classes: {printable(', '.join(index.class_names))})")
        return [_from_index(snap, index, class_name, hub)]
    kind = artifact_class(snap.read_json(CONFIG))
    if kind is ClassModule:
        module, provenance = module_in(snap)
        if class_name is not None:
            try:
                match_class(class_name, [module.class_name], name)
            except HubmodError:
                raise HubmodError(f"REF {printable(text)} names two different things: {name} is the module of class "
                                  f"{printable(module.class_name)!r}, not {printable(class_name)!r}") from None
        return [(module, provenance)]
    if kind is ComposedClassifier:
        composed = ComposedClassifier.from_snapshot(snap, hub)
        pairs = list(zip(composed.class_modules, composed.provenance, strict=True))
        if class_name is None:
            return pairs
        return [pairs[match_class(class_name, composed.class_names, f"composed classifier {name}")]]
    from .trained_on import trained_on

    how = f"hubmod split {printable(ref)}" + ("" if trained_on(snap) else " --dataset DATASET")
    raise HubmodError(f"{name} is neither a hubmod module nor a split parent (it has no {SPLIT_INDEX}): "
                      f"split it first with `{how}`")


def _provenance(snap: Snapshot) -> dict:
    return {"repo_id": snap.repo_id, "revision": snap.sha, "hub": snap.hub}


def _from_index(snap: Snapshot, index: SplitIndex, class_name: str, hub: str | Hub | None):
    """The module of ``class_name`` a split index points to, read from the hub the index came from."""
    entry = index.modules[match_class(class_name, index.class_names, f"the split of {printable(snap.name)}")]
    target = linked_hub(snap, None, hub, f"the split index of {printable(snap.name)}")
    where = f"the split index of {printable(snap.name)} ({printable(entry.class_name)})"
    module, provenance = module_at(target, entry.repo_id, entry.revision, where)
    if module.class_name != entry.class_name:
        raise InvalidRepoError(f"{entry.repo_id} holds class {printable(module.class_name)!r}, but the split index "
                               f"of {printable(snap.name)} says {printable(entry.class_name)!r}")
    return module, provenance


def modules_of(source: str, hub: str | Hub | None = None) -> list[tuple[ClassModule, dict]]:
    """Every module a split parent (through its index) or a composed classifier holds, in class order."""
    ref, class_name = parse_ref(source)
    if class_name is not None:
        raise HubmodError(f"{printable(source)}: name the whole model (REPO), not one class")
    snap = open_ref(ref, hub)
    if has_index(snap):
        index = SplitIndex.from_snapshot(snap)
        return [_from_index(snap, index, name, hub) for name in index.class_names]
    if artifact_class(snap.read_json(CONFIG)) is ComposedClassifier:
        return resolve_ref(source, hub)
    raise HubmodError(f"{printable(snap.name)} is neither a composed classifier nor a split parent: compose or split "
                      f"it first (a plain classifier is patched with `hubmod patch`)")


def _fit_flags(fit: dict) -> str:
    """The compose options that fitted (or adapted) a combiner as recorded, for the card's command."""
    from .fitting import ADAPTED, HELD_OUT

    if fit.get("method") == ADAPTED:
        return (f" --adapt {fit['dataset']}" + (f" --adapt-split {fit['split']}" if fit["split"] != "train" else "")
                + (f" --seed {fit['seed']}" if fit["seed"] else ""))
    return (f" --fit {fit['dataset']} --shots {fit['shots']} --combiner {fit['combiner']} --seed {fit['seed']}"
            + (f" --fit-split {fit['split']}" if fit.get("source") != HELD_OUT else ""))


def compose(refs: Sequence[str], output: str | None = None, calibration_method: str = calibration.AUTO,
            hub: str | Hub | None = None, private: bool = False, fit: str | None = None, shots: int = 10,
            combiner: str = DEFAULT_COMBINER, seed: int = 0, fit_split: str | None = None,
            adapt: str | None = None, adapt_split: str = "train") -> ComposedClassifier:
    """Build a classifier from module REFs; publish it to ``output`` on the hub when given
    (``private``: as a private repo, where the hub has visibility).

    With ``fit`` (a labelled dataset whose class names include the composed classes), a combiner
    of kind ``combiner`` is fitted on ``shots`` images per class drawn with ``seed`` (see
    hubmod.fitting) and becomes part of the composed model. With ``adapt`` instead (images of the
    task, labels not needed), each module's score is offset so the composition shares those images
    evenly between its classes (hubmod.adaptation).
    """
    if not refs:
        raise HubmodError("name at least one module REF (REPO:CLASS or a module repo)")
    check_fit_args(fit, shots, combiner, adapt)
    pairs = [pair for text in refs for pair in resolve_ref(text, hub)]
    return compose_modules(pairs, output, calibration_method, hub, private, fit, shots, combiner, seed, fit_split,
                           adapt, adapt_split)


def check_fit_args(fit: str | None, shots: int, combiner: str, adapt: str | None = None) -> None:
    """Option errors before any module is loaded."""
    if combiner not in Combiner.registry:
        raise HubmodError(f"unknown combiner {combiner!r}; use one of {', '.join(Combiner.registry)}")
    if fit is not None and adapt is not None:
        raise HubmodError(f"give {option('fit')} (labelled images) or {option('adapt')} (unlabelled ones), not both: "
                          "with labels, --fit alone is the more accurate")
    if fit is not None:
        from .fitting import check_shots

        check_shots(shots)


def compose_modules(pairs: Sequence[tuple[ClassModule, dict]], output: str | None = None,
                    calibration_method: str = calibration.AUTO, hub: str | Hub | None = None,
                    private: bool = False, fit: str | None = None, shots: int = 10,
                    combiner: str = DEFAULT_COMBINER, seed: int = 0,
                    fit_split: str | None = None, adapt: str | None = None,
                    adapt_split: str = "train") -> ComposedClassifier:
    """A classifier from resolved (module, provenance) pairs; ``auto`` picks the calibration."""
    check_fit_args(fit, shots, combiner, adapt)
    modules = [m for m, _ in pairs]
    if len({m.config.split_id for m in modules}) > 1 and fit is None and adapt is None:
        for m, prov in pairs:
            if calibration.constant(m.config.calibration):
                name = printable(m.class_name)
                where = f" of {printable(prov['repo_id'])}" if prov.get("repo_id") else ""
                logger.warning("the %s module%s gives every image the same score, so next to other splits' modules "
                               "it takes every image they score lower; compose with %s or %s (which give it its "
                               "share), use another split's module for %s, or split its parent again (hubmod split now "
                               "gives such a class the whole parent)", name, where, option("fit"), option("adapt"),
                               name)
    method = calibration_method
    if method == calibration.AUTO:
        method = auto_calibration(modules)
    model = ComposedClassifier(modules, method, [p for _, p in pairs])
    if fit is not None:
        from .fitting import fit_combiner

        fit_combiner(model, fit, shots, combiner, seed, fit_split)
    if adapt is not None:
        from .adaptation import adapt_combiner

        adapt_combiner(model, adapt, adapt_split, seed)
    if output:
        model.push_to_hub(output, hub, private=private)
    return model


def auto_calibration(modules: Sequence[ClassModule]) -> str:
    """Activation modules answer "mine or not": Pan & Rajan's vote. Modules of one split were trained
    to compete: raw scores. Modules of different splits that all carry an outlier-exposure gate: the
    ``gated`` rule, the steadiest zero-shot rule over trainings of the same parents and the best on
    average for all ten classes (BENCHMARKS.md, zero-shot). Otherwise min-max (BENCHMARKS.md, reuse
    and zero-shot, set it beside the other rules on each problem)."""
    if {m.config.method.get("name") for m in modules} == {"activation"}:
        return "vote"
    split_ids = {m.config.split_id for m in modules}
    if len(split_ids) == 1 and "" not in split_ids:
        return "none"
    return calibration.GATED if all(m.exposed for m in modules) else "minmax"
