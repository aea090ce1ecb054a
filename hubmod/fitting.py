"""Fitting a composed classifier on a few labelled images of its own task (``compose --fit D --shots K``).

K images per composed class are drawn, stratified and seeded, from a labelled dataset whose class
names match the composed classes. Images a module's parent trained on flatter that module's score,
so when every module's parent named the images it held out of training (``hubmod_validation``,
copied into each module's config at split time) the draw is made among the images none of them
trained on; otherwise from the split the user names (``train`` by default). Which it was, and the
exact rows, go into the composed repo's config and card.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import torch

from .combiners import build
from .data import LabeledImages, load_images
from .errors import HubmodError, option
from .module import ClassModule
from .parents import validation_record
from .preprocess import largest_input_size
from .untrusted import Fields

logger = logging.getLogger(__name__)
HELD_OUT = "images none of the parents trained on"
ADAPTED = "adapt"  # a fit record's method when the images were unlabelled (compose --adapt)


def checked_fit_record(data: object, where: str) -> dict:
    """A composed config's ``fit`` record, checked field by field (it came from a repo)."""
    f = Fields(data, f"{where} config.json fit")
    record = {"dataset": f.str("dataset", max_len=500), "split": f.str("split", max_len=100),
              "source": f.str("source", max_len=200), "seed": f.int("seed", lo=0, hi=2**63 - 1),
              "combiner": f.str("combiner", max_len=50), "calibration": f.str("calibration", max_len=50)}
    method = f.str("method", optional=True, max_len=50)
    if method not in (None, ADAPTED):
        raise f.error(f"field 'method' must be {ADAPTED!r} or absent (labelled images)")
    if method == ADAPTED:  # compose --adapt: unlabelled images, balancing offsets (hubmod.adaptation)
        record.update(method=method, images=f.int("images", lo=1, hi=100_000_000),
                      temperature=f.number("temperature", lo=1e-6, hi=1e6))
    else:
        record.update(shots=f.int("shots", lo=1, hi=1_000_000), penalty=f.number("penalty", lo=0.0, hi=1e6))
    rows = f.list("rows", max_len=100_000_000)
    if any(type(r) is not int or r < 0 for r in rows):
        raise f.error("field 'rows' must list row numbers")
    record["rows"] = rows
    for key in ("dataset_hub_id", "images_sha256"):
        value = f.str(key, optional=True, max_len=500)
        if value is not None:
            record[key] = value
    return record


def untouched_rows(modules: Sequence[ClassModule], data: LabeledImages, dataset: str) -> torch.Tensor | None:
    """Indices of ``data`` that no module's parent trained on, if every parent said which images it held out.

    A parent trained on the images of its own classes except those it held out: an image of a class
    a parent does not have was never in its training data.
    """
    parents = {}
    for m in modules:
        record = m.config.dataset.get("parent_held_out")
        if record is None:
            return None
        record = validation_record(record, f"module {m.class_name!r} config.json dataset.parent_held_out")
        if record["dataset"] not in (dataset, data.hub_id) or record["split"] != data.split:
            return None
        key = (m.config.parent.get("repo_id"), m.config.parent.get("revision"))
        parents[key] = (record["rows"], {n.casefold() for n in m.config.parent["label_names"]})
    allowed = torch.ones(len(data), dtype=torch.bool)
    for rows, classes in parents.values():
        theirs = torch.tensor([data.class_names[int(c)].casefold() in classes for c in data.labels], dtype=torch.bool)
        held = torch.zeros(len(data), dtype=torch.bool)
        held[data.rows_within(rows)] = True
        allowed &= ~theirs | held
    return torch.nonzero(allowed).flatten()


def check_shots(shots: object) -> None:
    """One line unless ``shots`` is a whole number of images per class, at least 1."""
    if type(shots) is not int or shots < 1:
        raise HubmodError(f"{option('shots')} must be a whole number of images per class, at least 1 (got {shots!r})")


def draw_fit_images(modules: Sequence[ClassModule], dataset: str, shots: int, seed: int = 0,
                    split: str | None = None, class_names: Sequence[str] | None = None,
                    fall_back: bool = False) -> tuple[LabeledImages, dict]:
    """K labelled images per class of the composition, and a record of where they came from.

    ``class_names`` (default: the modules' classes, in order) are the composed classes when
    ``modules`` holds several candidates per class; the images are then ones none of the
    candidates' parents trained on. ``fall_back``: when those are fewer than ``shots`` of a class
    (many parents each held out different images), draw from the whole split instead, with a warning.
    """
    check_shots(shots)
    names = list(class_names) if class_names is not None else [m.class_name for m in modules]
    size = largest_input_size(m.data_config for m in modules)
    data = load_images(dataset, split or "train", size).for_classes(names, "the composed classifier")
    untouched = None if split else untouched_rows(modules, data, dataset)
    source = f"the {data.split} split"
    if untouched is not None:
        counts = torch.bincount(data.labels[untouched], minlength=len(names))
        if fall_back and int(counts.min()) < shots:
            logger.warning("only %d images of some class are ones none of the %d modules' parents trained on; drawing "
                           "the fit images from the whole %s split instead (a module may score images its parent "
                           "trained on a little higher)", int(counts.min()), len(modules), data.split)
        else:
            data = data.subset(untouched)
            source = HELD_OUT
    counts = torch.bincount(data.labels, minlength=len(names))
    short = [(names[c], int(counts[c])) for c in range(len(names)) if counts[c] < shots]
    if short:
        listing = ", ".join(f"{n!r} has {k}" for n, k in short)
        raise HubmodError(f"{option('shots', shots)} asks for {shots} images per class, but among {source} of "
                          f"{dataset} {listing}: lower {option('shots')} or name another {option('fit_split')}")
    picked = data.subset(data.stratified(shots, torch.Generator().manual_seed(seed)))
    digest = hashlib.sha256(picked.images.contiguous().numpy().tobytes() + picked.labels.numpy().tobytes())
    info = {"dataset": dataset, "dataset_hub_id": picked.hub_id, "split": picked.split, "source": source,
            "shots": shots, "seed": seed, "rows": sorted(int(r) for r in picked.rows),
            "images_sha256": digest.hexdigest()}
    return picked, info


def fit_combiner(model, dataset: str, shots: int, kind: str, seed: int = 0, split: str | None = None,
                 drawn: tuple[LabeledImages, dict] | None = None) -> None:
    """Fit ``model``'s combiner (in place) on K labelled images per class of ``dataset``
    (``drawn``: images already drawn by `draw_fit_images`, labelled in the model's class order)."""
    modules = list(model.class_modules)
    data, info = drawn or draw_fit_images(modules, dataset, shots, seed, split)
    parts = list(model.module_outputs(data.images))
    scores = torch.cat([s for s, _ in parts])
    features = torch.cat([f for _, f in parts])
    combiner = build(kind, len(modules), model.feature_width)
    combiner.fit(scores, features, data.labels, torch.Generator().manual_seed(seed))
    model.combiner = combiner
    model.fit_info = {**info, "combiner": kind, "penalty": combiner.penalty, "calibration": model.calibration}
    logger.info("fitted a %s combiner on %d images (%s of %s)", kind, len(data), info["source"], dataset)
