"""``split``: parent + dataset -> one published module repo per class, plus the split's index.

The stages are the same for every method, each a function here: ``_load_parent`` (the parent at
its commit, the classes and their repos, any negatives), ``open_split_data`` (the dataset, loaded
once: held-out test images and the pool searches draw from; hubmod.split_data), ``_resume`` (what an
interrupted split already finished), ``_search_groups`` (for each group of classes the method
searches together: draw its images, ``_search`` — the method decides kept channels and heads —
then ``_module_base`` + ``_build_modules``: extract each module physically and calibrate it on the
validation images (a class whose final module cannot see the image gets the whole parent instead,
hubmod.blind); ``expose`` fits the outlier-exposure gates), ``_measure`` (everything on
held-out test data), ``_report``, and only then ``_publish`` — each repo in one atomic commit, the
index last.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import calibration
from .baselines import refit_on_features
from .batching import in_chunks
from .blind import CANNOT_SEE, logit_alignment, roc_auc, whole_parent_head
from .channels import analyse_channels, constant_outputs, count_kernels, count_macs, count_params, extract
from .composed import ComposedClassifier
from .data import LabeledImages
from .devices import AUTO, resolve_device
from .errors import HubmodError, option
from .exposure import expose, load_negatives
from .hub import Hub, Snapshot, get_hub, open_ref
from .metrics import model_logits, per_class_metrics, pre_logits
from .module import ClassModule, ModuleConfig, attach_head, method_record
from .parallel import data_parallel, launched_processes
from .parents import Parent, parent_from_snapshot
from .preprocess import preprocess
from .refs import class_slugs, match_class, parse_source, validate_repo_id
from .resume import (
    clear_checkpoint,
    drop_stale_checkpoints,
    load_checkpoint,
    published_revision,
    save_checkpoint,
    split_lock,
)
from .split_data import SplitData, SplitSource, class_plan, open_split_data
from .split_index import SPLIT_INDEX, IndexEntry, SplitIndex
from .splitters import ClassSlice, SplitContext, get_splitter
from .trained_on import trained_on
from .untrusted import printable
from .weights import substate


@dataclass
class ModuleRow:
    class_name: str
    repo_id: str | None
    revision: str | None
    kept_kernels: float
    kernels: int
    params: int
    macs: int
    test_precision: float
    test_recall: float
    test_f1: float
    val_f1: float


@dataclass
class SplitReport:
    """What a split produced and measured; ``to_dict`` is what ``--json`` prints."""

    parent: str
    parent_revision: str
    method: str
    dataset: str
    eval_split: str
    rows: list[ModuleRow]
    parent_accuracy: float
    parent_refit_accuracy: float
    composed_accuracy: float
    n_test: int
    parent_kernels: int
    parent_params: int
    parent_macs: int
    seconds: dict[str, float]
    method_metrics: dict
    index_repo: str | None = None
    index_revision: str | None = None
    modules: list[ClassModule] = field(default_factory=list, repr=False)

    @property
    def mean_kept_kernels(self) -> float:
        return sum(r.kept_kernels for r in self.rows) / len(self.rows)

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "modules"}
        out["mean_kept_kernels"] = self.mean_kept_kernels
        return out


def default_prefix(source: str) -> str:
    ref = parse_source(source)
    if ref.kind == "dir":
        name = (ref.path.resolve().name or "model").replace(" ", "-")
        return validate_repo_id(f"local/{name}")
    return ref.repo_id


logger = logging.getLogger(__name__)


def dataset_of(snapshot: Snapshot, source: str) -> str:
    """The dataset a parent names as its training data, or a one-line error saying how to name one."""
    found = trained_on(snapshot)
    if found is None:
        raise HubmodError(f"{printable(source)} does not say which dataset it was trained on: name the dataset to "
                          f"split on, e.g. {option('dataset', 'fashion-mnist')}")
    logger.info("splitting on %s, named by %s of %s", found[0], found[1], printable(source))
    return found[0]


def split(
    source: str,
    dataset: str | None = None,
    method: str = "gradsplitter",
    classes: list[str] | None = None,
    repo_prefix: str | None = None,
    hub: str | Hub | None = None,
    seed: int = 0,
    options: dict | None = None,
    publish: bool = True,
    progress: bool = True,
    resume: bool = False,
    stream: bool = False,
    device: str | torch.device | None = AUTO,
    private: bool = False,
    negatives: str | None = None,
) -> SplitReport:
    """Split ``source`` into class modules on ``dataset`` and (by default) publish them to the hub.

    Without ``dataset``, the one the parent says it was trained on (hubmod.trained_on) is used.

    With ``resume``, a split stopped before its index was published continues: classes whose repo
    already holds this split's module are not published again, and a finished search is reused.
    With ``stream``, the dataset is read as a shuffled stream and only the sampled images are
    decoded (the training and validation budgets, and up to 500 held-out images per class), so a
    split never holds a whole big dataset in memory.
    The search runs on ``device`` (``auto``: a GPU when there is one and the method can use it);
    modules are extracted, measured and published from the CPU. ``private`` makes the repos the
    split creates private, on hubs that have visibility. ``negatives`` (a dataset with none of the
    parent's classes) gives every module an outlier-exposure gate (hubmod.exposure), so it can
    say "not mine" to other worlds' images when composed with modules of other parents.
    """
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    hub_obj = get_hub(hub)
    splitter = get_splitter(method, options)  # bad options fail before any work
    for_other_parents(splitter.config, options, negatives)
    if launched_processes() > 1 and not splitter.data_parallel:
        raise HubmodError(f"{option('method', method)} runs in one process; launch a multi-process split with "
                          f"{option('method', 'gradsplitter')}, or run this one without accelerate launch / torchrun")
    par = data_parallel()
    compute = _search_device(device, splitter, method, par)
    publish_here = publish and par.is_main  # every process searches; only the first one writes
    progress = progress and par.is_main

    job = _load_parent(source, dataset, classes, repo_prefix, hub_obj, negatives, seed)
    times["load_parent"] = time.perf_counter() - t0

    t = time.perf_counter()
    mcfg = splitter.config
    source_data = open_split_data(job.dataset, job.parent, mcfg.train_per_class, mcfg.val_per_class, seed, stream,
                                  mcfg.distill_per_class_needed())
    times["load_data"] = time.perf_counter() - t

    parent = job.parent
    model = parent.model.eval()
    example = torch.zeros(1, *parent.data_config.input_size)
    parent_sizes = {"kernels": count_kernels(model), "params": count_params(model), "macs": count_macs(model, example)}
    params = {**mcfg.to_dict(), **({"negatives": job.exposure_record} if job.exposure_record else {})}
    split_id = _split_id(parent, method, params, seed, f"{job.dataset} (streamed)" if stream else job.dataset)
    # only the publishing process keeps checkpoints; it holds the split's lock while it runs
    lock = split_lock(split_id) if publish_here else contextlib.nullcontext()
    with lock:
        if publish_here:
            drop_stale_checkpoints(job.prefix, split_id)
        done, restored = _resume(job, split_id, hub_obj, resume, publish)
        if restored is not None:
            modules, method_metrics = restored
            times["search"] = times["extract"] = 0.0
            data = source_data.draw(class_plan(len(parent.class_names), job.targets, splitter.samples_other_classes))
            refit = (pre_logits(model, data.train_x), data.train_y)
        else:
            modules, method_metrics, refit = _search_groups(
                splitter, job, source_data, model, example, parent_sizes, seed, progress, par, compute, times, method,
                _command(source, job.dataset, method, classes, repo_prefix, hub_obj, seed, options, stream,
                         negatives), split_id)
            if publish_here:
                save_checkpoint(split_id, modules, method_metrics, job.prefix)

        t = time.perf_counter()
        measured = _measure(modules, parent, job.targets, source_data.test, refit, seed)
        times["evaluate"] = time.perf_counter() - t

        report = _report(modules, parent, method, job.dataset, source_data.test, measured, parent_sizes, times,
                         method_metrics, job.repo_ids if publish else None)
        if publish_here:
            t = time.perf_counter()
            _publish(report, modules, job.repo_ids, parent, job.prefix, hub_obj, done, source_data.test, private)
            clear_checkpoint(split_id)
            times["publish"] = time.perf_counter() - t
        par.barrier()  # the other processes return once the modules are published
    times["total"] = time.perf_counter() - t0
    return report


# max_auc_loss of a split with negatives unless its options name it: modules made to compose with other
# parents' modules must recognise their class on their own (BENCHMARKS.md, weak-modules)
NEGATIVES_MAX_AUC_LOSS = 0.05


def for_other_parents(config, options: dict | None, negatives: str | None) -> None:
    """With ``negatives`` a split makes modules for other parents' company: unless the options (or their
    preset) name ``max_auc_loss``, a module that hardly tells its class apart alone gets the whole parent."""
    named = dict(options or {})
    named = {**type(config).presets.get(named.get("preset"), {}), **named}
    if negatives is not None and "max_auc_loss" not in named:
        config.max_auc_loss = NEGATIVES_MAX_AUC_LOSS


@dataclass
class _SplitJob:
    """What a split is of and where its modules go: the stage that loads the parent decides it all."""

    parent: Parent
    dataset: str
    targets: list[int]  # class indices to make modules of
    prefix: str
    repo_ids: dict[int, str]
    negative_images: LabeledImages | None = None
    exposure_record: dict | None = None


def _load_parent(source: str, dataset: str | None, classes: list[str] | None, repo_prefix: str | None, hub: Hub,
                 negatives: str | None, seed: int) -> _SplitJob:
    """Stage 1: the parent at its commit, the dataset (the one it names, when none is given), the classes
    and their repos, and the negatives for outlier exposure (checked before any data is loaded)."""
    prefix = validate_repo_id(repo_prefix or default_prefix(source))
    snapshot = open_ref(parse_source(source), hub)
    if dataset is None:
        dataset = dataset_of(snapshot, source)
    parent = parent_from_snapshot(snapshot)
    names = parent.class_names
    targets = (sorted({match_class(c, names, parent.display_name) for c in classes}) if classes
               else list(range(len(names))))
    slugs = class_slugs(names)
    job = _SplitJob(parent=parent, dataset=dataset, targets=targets, prefix=prefix,
                    repo_ids={c: validate_repo_id(f"{prefix}-{slugs[c]}") for c in targets})
    if negatives is not None:
        job.negative_images, job.exposure_record = load_negatives(negatives, names, seed)
    return job


def _resume(job: _SplitJob, split_id: str, hub: Hub, resume: bool,
            publish: bool) -> tuple[dict[int, str], tuple[list[ClassModule], dict] | None]:
    """Stage 3 (after the data): with ``resume``, the classes whose repo already holds this split's module
    (class -> commit), and the modules and method metrics of a finished search, if one was kept."""
    if not resume:
        return {}, None
    done = ({c: sha for c in job.targets if (sha := published_revision(hub, job.repo_ids[c], split_id))}
            if publish else {})
    restored = load_checkpoint(split_id, job.targets)
    if restored is None and done and len(done) == len(job.targets):  # all published, checkpoint gone
        restored = ([ClassModule.from_pretrained(job.repo_ids[c], revision=done[c], hub=hub) for c in job.targets],
                    {"resumed_from": "published modules"})
    return done, restored


def _search_groups(splitter, job: _SplitJob, source: SplitSource, model: torch.nn.Module, example: torch.Tensor,
                   parent_sizes: dict, seed: int, progress: bool, par, compute: torch.device, times: dict,
                   method: str, command: str,
                   split_id: str) -> tuple[list[ClassModule], dict, tuple[torch.Tensor, torch.Tensor]]:
    """Stages 4 and 5 for each group of classes the method searches together (`Splitter.search_groups`):
    draw the group's images, search, and build its modules. One group is the whole split, as ever;
    the method metrics of several are kept side by side under ``searches``."""
    class_groups = splitter.search_groups(job.targets)
    if len(class_groups) > 1:
        logger.info("searching %d classes in %d groups of at most %d", len(job.targets), len(class_groups),
                    max(len(g) for g in class_groups))
    channel_groups, fixed = _frozen_channels(model, example)
    modules: list[ClassModule] = []
    searches: list[dict] = []
    feats, labels = [], []
    for classes in class_groups:
        t = time.perf_counter()
        data = source.draw(class_plan(len(job.parent.class_names), classes, splitter.samples_other_classes))
        times["load_data"] = times.get("load_data", 0.0) + time.perf_counter() - t

        t = time.perf_counter()
        outcome = _search(splitter, model, example, channel_groups, data, len(job.parent.class_names), classes, seed,
                          progress, par, compute)
        times["search"] = times.get("search", 0.0) + time.perf_counter() - t

        t = time.perf_counter()
        base = _module_base(job.parent, method, splitter, outcome, job.dataset, data, seed, split_id, command)
        built = _build_modules(outcome.slices, model, channel_groups, fixed, example, base, parent_sizes, data,
                               splitter.config.max_auc_loss)
        group_modules = [module for module, _ in built]
        if job.negative_images is not None:
            expose(group_modules, [f for _, f in built], data.val_y, job.negative_images, job.exposure_record)
        modules += group_modules
        feats.append(pre_logits(model, data.train_x))
        labels.append(data.train_y)
        searches.append({**outcome.metrics, "classes": classes} if len(class_groups) > 1 else outcome.metrics)
        times["extract"] = times.get("extract", 0.0) + time.perf_counter() - t
    refit = (torch.cat(feats), torch.cat(labels))
    if len(searches) == 1:
        return modules, searches[0], refit
    return modules, {"searches": searches, "processes": par.world,
                     "distilled": all(m.get("distilled", False) for m in searches)}, refit


def _frozen_channels(model: torch.nn.Module, example: torch.Tensor) -> tuple[list, list]:
    """The parent's channel groups and the couplings kept whole, then its weights frozen for the searches
    (analysed first: torch-pruning traces through autograd)."""
    groups, fixed = analyse_channels(model, example)
    for p in model.parameters():
        p.requires_grad_(False)
    return groups, fixed


def _search(splitter, model: torch.nn.Module, example: torch.Tensor, groups: list, data: SplitData,
            num_classes: int, targets: list[int], seed: int, progress: bool, par, compute: torch.device):
    """The method's search on the frozen parent for ``targets``: its outcome."""
    with torch.no_grad():
        parent_val_acc = float((model(data.val_x).argmax(1) == data.val_y).float().mean())

    def on_compute(t: torch.Tensor | None) -> torch.Tensor | None:
        return t.to(compute) if t is not None else None

    ctx = SplitContext(
        model=model.to(compute), groups=groups, num_classes=num_classes, targets=targets,
        train_x=on_compute(data.train_x), train_y=on_compute(data.train_y),
        val_x=on_compute(data.val_x), val_y=on_compute(data.val_y), example_input=on_compute(example),
        seed=seed, progress=progress, parent_val_accuracy=parent_val_acc, parallel=par,
        distill_x=on_compute(data.distill_x), distill_y=on_compute(data.distill_y))
    try:
        outcome = splitter.split(ctx)
    finally:
        model.cpu()
    for s in outcome.slices:
        if s.backbone is not None:
            s.backbone.cpu()
        s.head_state = {k: v.cpu() for k, v in s.head_state.items()}
    return outcome


def _module_base(parent: Parent, method: str, splitter, outcome, dataset: str, data: SplitData, seed: int,
                 split_id: str, command: str) -> dict:
    """What every module config.json of this split shares: parent, input, method, dataset, split id, command."""
    return {
        "parent": {**parent.spec.to_dict(), "repo_id": parent.snapshot.repo_id,
                   "revision": parent.snapshot.sha, "hub": parent.snapshot.hub, "license": parent.license},
        "data_config": parent.data_config.to_dict(),
        "method": {"name": method, **method_record(splitter), "params": splitter.config.to_dict(),
                   "distilled": bool(outcome.metrics.get("distilled", False))},
        "dataset": {"name": dataset, "hub_id": data.hub_id, "train_samples": len(data.train_y),
                    "val_samples": len(data.val_y), "val_source": data.val_source, "seed": seed,
                    # the images the parent did not train on, for fitting compositions (hubmod.fitting)
                    **({"parent_held_out": parent.spec.validation} if parent.spec.validation else {})},
        "split_id": split_id,
        "command": command,
    }


def _report(modules: list[ClassModule], parent: Parent, method: str, dataset: str, test: LabeledImages, measured: dict,
            parent_sizes: dict, times: dict, method_metrics: dict, repo_ids: dict[int, str] | None) -> SplitReport:
    """The split's report: a row per module and the composed accuracy against the parent's."""
    rows = [
        ModuleRow(m.class_name, repo_ids[m.config.class_index] if repo_ids is not None else None, None,
                  m.config.metrics["kept_kernels"], m.config.metrics["kernels"], m.config.metrics["params"],
                  m.config.metrics["macs"], m.config.metrics["test_precision"], m.config.metrics["test_recall"],
                  m.config.metrics["test_f1"], m.config.metrics["val_f1"])
        for m in modules
    ]
    return SplitReport(
        parent=parent.display_name, parent_revision=parent.snapshot.sha, method=method, dataset=dataset,
        eval_split=test.split, rows=rows, parent_accuracy=measured["parent"],
        parent_refit_accuracy=measured["refit"], composed_accuracy=measured["composed"], n_test=measured["n"],
        parent_kernels=parent_sizes["kernels"], parent_params=parent_sizes["params"],
        parent_macs=parent_sizes["macs"], seconds=times, method_metrics=method_metrics, modules=modules,
    )


def _build_modules(slices: list[ClassSlice], model: torch.nn.Module, groups: list, fixed: list, example: torch.Tensor,
                   base: dict, parent_sizes: dict, data: SplitData,
                   max_auc_loss: float = 1.0) -> list[tuple[ClassModule, torch.Tensor]]:
    """The standalone modules of one search: each extracted, with its head, calibrated on validation
    images; with what its head read on them (for the outlier-exposure gate).

    Every final module is checked, whatever the method and after any distillation: one that gives
    every validation image the same score cannot see the image, and one whose ROC AUC on them falls
    more than ``max_auc_loss`` below the parent's own logit's hardly tells its class on its own. Its
    class gets the whole parent instead, scored on the scale of the split's other modules
    (hubmod.blind); its card says why.
    """
    built = []
    for s in slices:
        if s.backbone is not None:
            backbone, kept, zeroed = s.backbone, s.kept, s.zeroed
        else:
            backbone, kept, zeroed = extract(model, groups, s.kept, example)
        built.append(_assemble(s.class_index, backbone, kept, zeroed, s.head, s.head_state, groups, fixed, example,
                               base, data))
    blind = {i: CANNOT_SEE for i, (_, _, raw) in enumerate(built) if constant_outputs(raw)}
    if blind or max_auc_loss < 1:
        with torch.no_grad():
            logits = in_chunks(model, data.val_x)
        weak = {**_weak_by_auc(built, logits, data.val_y, max_auc_loss, blind), **blind}
        if weak:
            _give_whole_parent(built, weak, logits, slices, model, groups, fixed, example, base, data)
    for module, _, raw in built:
        _record_metrics(module, raw, data, example, parent_sizes)
    return [(module, features) for module, features, _ in built]


def _weak_by_auc(built: list, logits: torch.Tensor, labels: torch.Tensor, max_auc_loss: float,
                 skip: dict[int, str]) -> dict[int, str]:
    """The places in ``built`` (those in ``skip`` aside) of modules whose ROC AUC on the validation images
    falls more than ``max_auc_loss`` below the parent's own logit's for their class, each with why."""
    weak = {}
    if max_auc_loss >= 1:  # no limit
        return weak
    for i, (m, _, raw) in enumerate(built):
        c = m.config.class_index
        own = labels == c
        mine, parents = roc_auc(raw, own), roc_auc(logits[:, c], own)
        if i not in skip and parents - mine > max_auc_loss:
            weak[i] = (f"told its class from the parent's others with ROC AUC {mine:.3f} on the validation "
                       f"images, {parents - mine:.3f} below the parent's own logit ({parents:.3f}; "
                       f"max_auc_loss={max_auc_loss:g})")
    return weak


def _give_whole_parent(built: list, weak: dict[int, str], logits: torch.Tensor, slices: list[ClassSlice],
                       model: torch.nn.Module, groups: list, fixed: list, example: torch.Tensor, base: dict,
                       data: SplitData) -> None:
    """Replace (in ``built``) each module ``weak`` names by the whole parent, its logit on the scale of the
    other modules' scores (hubmod.blind), the reason in its config."""
    seeing = [(m.config.class_index, raw) for i, (m, _, raw) in enumerate(built) if i not in weak]
    scale, offset = logit_alignment(torch.cat([logits[:, c] for c, _ in seeing] or [torch.zeros(0)]),
                                    torch.cat([raw for _, raw in seeing] or [torch.zeros(0)]))
    whole = {g.name: list(range(g.size)) for g in groups}
    for i, why in sorted(weak.items()):
        s = slices[i]
        backbone, kept, zeroed = extract(model, groups, whole, example)
        head, head_state = whole_parent_head(model, s.class_index, logits.shape[1], s.head, s.head_state, scale,
                                             offset)
        built[i] = _assemble(s.class_index, backbone, kept, zeroed, head, head_state, groups, fixed, example,
                             {**base, "method": {**base["method"], "whole_parent": why}}, data)
        logger.warning("the %s module %s; that class's module is the whole parent instead, and its card says so",
                       built[i][0].class_name, why)


def _record_metrics(module: ClassModule, raw: torch.Tensor, data: SplitData, example: torch.Tensor,
                    parent_sizes: dict) -> None:
    """A module's sizes, against the parent's, and its validation metrics alone, into its config."""
    config = module.config
    prob = calibration.apply("platt", raw, config.calibration)
    own = data.val_y == module.config.class_index
    val = per_class_metrics((prob >= 0.5).long(), own.long(), ["rest", "own"])["own"]
    backbone = module.backbone
    sizes = {"kernels": count_kernels(backbone), "params": count_params(module), "macs": count_macs(backbone, example)}
    config.metrics = {**sizes, **{f"parent_{k}": v for k, v in parent_sizes.items()},
                      "kept_kernels": sizes["kernels"] / parent_sizes["kernels"],
                      "val_precision": val["precision"], "val_recall": val["recall"], "val_f1": val["f1"]}


def _assemble(class_index: int, backbone: torch.nn.Module, kept: dict, zeroed: list, head_spec: dict,
              head_state: dict, groups: list, fixed: list, example: torch.Tensor, base: dict,
              data: SplitData) -> tuple[ClassModule, torch.Tensor, torch.Tensor]:
    """A module from an extracted backbone and a head, calibrated on the validation images; with
    what its head read on them and its raw scores."""
    backbone, head = attach_head(backbone, head_spec, len(base["parent"]["label_names"]), example)
    head.load_state_dict(substate(head_state, "head."), strict=True)
    channels = {"example_input": list(example.shape),
                "groups": [{"name": g.name, "size": g.size, "kept": kept[g.name],
                            **({"repeat": g.repeat} if g.repeat > 1 else {}),
                            **({"zeroed": True} if g.name in zeroed else {})} for g in groups],
                # channels no module removes, and why (kept whole in every module of the parent)
                "fixed": [{"name": f.name, "size": f.size, "reason": f.reason} for f in fixed]}
    config = ModuleConfig(class_name=base["parent"]["label_names"][class_index], class_index=class_index,
                          channels=channels, head=head_spec, calibration={}, **base)
    module = ClassModule(backbone, head, config)
    val_features, raw = module.head_inputs_and_scores(data.val_x)
    own = data.val_y == class_index
    config.calibration = calibration.fit(raw[own], raw[~own])
    return module, val_features, raw


def _measure(modules: list[ClassModule], parent: Parent, targets: list[int], test: LabeledImages,
             refit: tuple[torch.Tensor, torch.Tensor], seed: int) -> dict:
    """Held-out accuracy of the composed modules, of the parent, and of the parent with a refit classifier.

    Only test images of the split's classes count, so a split of a few classes is compared with the
    parent on exactly those images. Per-class test metrics are written into each module's config.
    """
    model, cfg = parent.model, parent.data_config
    mask = torch.isin(test.labels, torch.tensor(targets))
    position = {c: j for j, c in enumerate(targets)}
    y_local = torch.tensor([position[int(c)] for c in test.labels[mask]], dtype=torch.long)
    pred = ComposedClassifier(modules, "none")(test.images[mask]).argmax(1)
    composed = float((pred == y_local).float().mean())
    per_class = per_class_metrics(pred, y_local, [m.class_name for m in modules])
    parent_acc = float((model_logits(model, test.images[mask], cfg).argmax(1) == test.labels[mask]).float().mean())
    clf = refit_on_features(model, *refit, len(parent.class_names), seed)
    with torch.no_grad():
        feats = torch.cat([pre_logits(model, preprocess(test.images[mask][i : i + 512], cfg))
                           for i in range(0, int(mask.sum()), 512)])
        refit_acc = float((clf(feats).argmax(1) == test.labels[mask]).float().mean())
    for module in modules:
        m = per_class[module.class_name]
        module.config.metrics.update({
            "test_precision": m["precision"], "test_recall": m["recall"], "test_f1": m["f1"],
            "test_split": test.split, "split_composed_accuracy": composed, "parent_accuracy": parent_acc,
        })
    return {"composed": composed, "parent": parent_acc, "refit": refit_acc, "n": int(mask.sum())}


def _publish(report: SplitReport, modules: list[ClassModule], repo_ids: dict[int, str], parent: Parent,
             prefix: str, hub: Hub, done: dict[int, str], test: LabeledImages, private: bool = False) -> None:
    """Each module repo in one commit (skipping those a resumed run finds done), then the index."""
    for row, module in zip(report.rows, modules, strict=True):
        c = module.config.class_index
        row.revision = done.get(c) or module.push_to_hub(
            repo_ids[c], hub, f"hubmod split: {module.class_name} module of {parent.display_name}", private)
    index = SplitIndex(
        index_repo=prefix,
        parent={"repo_id": parent.snapshot.repo_id, "revision": parent.snapshot.sha, "hub": parent.snapshot.hub},
        method={k: modules[0].config.method[k] for k in ("name", "title", "paper_url", "params")},
        split_id=modules[0].config.split_id,
        command=modules[0].config.command,
        metrics={"composed_accuracy": report.composed_accuracy, "parent_accuracy": report.parent_accuracy,
                 "eval_data": f"{test.name} ({test.split}, {report.n_test} images)"},
        modules=[IndexEntry(class_name=r.class_name, class_index=m.config.class_index, repo_id=r.repo_id,
                            revision=r.revision, kept_kernels=r.kept_kernels, macs_ratio=r.macs / report.parent_macs)
                 for r, m in zip(report.rows, modules, strict=True)],
    )
    # The index goes into the prefix repo. When that is the parent's own repo, only the index file is
    # added (the parent's files and card stay); otherwise the repo gets a card of its own.
    is_parent_repo = parent.snapshot.hub == hub.name and parent.snapshot.repo_id == prefix
    with tempfile.TemporaryDirectory(prefix="hubmod-index-") as tmp:
        (Path(tmp) / SPLIT_INDEX).write_text(index.to_json())
        if not is_parent_repo:
            from .cards import write_index_card

            write_index_card(index.to_dict(), Path(tmp))
        report.index_revision = hub.push_folder(prefix, Path(tmp), f"hubmod split index ({report.method})", private)
    report.index_repo = prefix


def _search_device(choice, splitter, method: str, par) -> torch.device:
    """The device the search runs on: the one asked for, or the best one the method can use."""
    wanted = resolve_device(choice)
    if wanted.type != "cpu" and not splitter.any_device:
        if str(choice or AUTO).lower() == AUTO:
            return torch.device("cpu")
        raise HubmodError(f"{option('method', method)} searches on the CPU only; use {option('device', 'cpu')} "
                          f"(or auto), or {option('method', 'gradsplitter')} to search on a GPU")
    if par.enabled and wanted.type == "cuda":  # one GPU per launched process
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return wanted


def _split_id(parent: Parent, method: str, params: dict, seed: int, dataset: str) -> str:
    blob = json.dumps([parent.snapshot.sha, method, params, seed, dataset], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _command(source, dataset, method, classes, repo_prefix, hub: Hub, seed, options, stream: bool = False,
             negatives: str | None = None) -> str:
    parts = ["hubmod", "split", source, "--dataset", dataset, "--method", method, "--seed", str(seed)]
    if stream:
        parts += ["--stream"]
    if negatives:
        parts += ["--negatives", negatives]
    if classes:
        parts += ["--classes", ",".join(classes)]
    if repo_prefix:
        parts += ["--repo-prefix", repo_prefix]
    parts += ["--hub", "local" if hub.name == "local" else "hf"]
    for k, v in sorted((options or {}).items()):
        parts += ["-p", f"{k}={v}"]
    return shlex.join(parts)
