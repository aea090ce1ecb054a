"""The data stage of a split: the images each search trains and validates on, and the test images.

A split loads its dataset once (`open_split_data`): the held-out test images it is measured on, and
the pool that each search draws disjoint validation and training samples from (`SplitSource.draw`),
plus extra images to distil on. A split of a few classes of a many-class parent draws those classes
and a sample of the others (`class_plan`); a split of many classes searches them in groups
(`Splitter.search_groups`), each group drawing its own sample. Either way what a split draws grows
with the classes split, not with the parent's class count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .data import LabeledImages, dataset_splits, load_for_model, sample_stream
from .errors import HubmodError
from .parents import Parent
from .preprocess import preprocess

logger = logging.getLogger(__name__)
HELD_OUT_FRACTION = 0.2  # of a dataset without a test split, the share carved out to measure on
STREAM_TEST_PER_CLASS = 500  # held-out images per class a streamed split measures on


@dataclass
class SplitData:
    """Disjoint training, validation and held-out test images, relabelled to the parent's classes."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test: LabeledImages
    hub_id: str | None
    distill_x: torch.Tensor | None = None  # images the modules are distilled on
    distill_y: torch.Tensor | None = None  # their labels
    val_source: str = "train"  # where the validation images come from (for the modules' configs)


# A split of k classes of a many-class parent draws, beside k classes' images, as many images of the
# other classes as max(k, OTHER_CLASSES_DRAWN) classes would give: its cost grows with k, not with the
# parent's class count. A parent of at most ten classes is always drawn whole, class by class.
OTHER_CLASSES_DRAWN = 9


@dataclass(frozen=True)
class ClassPlan:
    """Which images a split draws: ``per_class`` of every class (``targets`` None), or of each
    requested class plus a random sample of the other classes' images, ``others`` classes' worth."""

    targets: list[int] | None = None
    others: int = 0

    def draw(self, data: LabeledImages, per_class: int, generator: torch.Generator,
             exclude: torch.Tensor | None = None) -> torch.Tensor:
        if self.targets is None:
            return data.stratified(per_class, generator, exclude)
        own = data.stratified(per_class, generator, exclude, self.targets)
        rest = data.sample_outside(self.targets, per_class * self.others, generator, exclude)
        out = torch.cat([own, rest])
        return out[torch.randperm(len(out), generator=generator)]


def class_plan(num_classes: int, targets: list[int], samples_others: bool) -> ClassPlan:
    """The plan for a split of ``targets``: a sample of the others when the method can work from one
    (``Splitter.samples_other_classes``) and they are more than the sample would hold."""
    others = max(len(targets), OTHER_CLASSES_DRAWN)
    if not samples_others or num_classes - len(targets) <= others:
        return ClassPlan()
    return ClassPlan(sorted(targets), others)


@dataclass
class SplitSource:
    """A split's dataset, loaded once; each search draws its own samples from it (`draw`).

    Draws share one seeded generator, so a split's first draw is the same whatever follows it.
    A streamed source holds the one sample its stream gave, and every draw returns it.
    """

    dataset: str
    parent: Parent
    budgets: tuple[int, int, int]  # training, validation and distillation images per class
    test: LabeledImages
    generator: torch.Generator
    train: LabeledImages | None = None
    not_val: torch.Tensor | None = None  # training rows validation must not use
    held_out: torch.Tensor | None = None  # training rows carved out as test images
    val_source: str = "train"
    streamed: SplitData | None = None

    def draw(self, plan: ClassPlan = ClassPlan()) -> SplitData:
        """Disjoint validation and training samples (and images to distil on) of the classes ``plan`` names."""
        if self.streamed is not None:
            return self.streamed
        train, cfg, gen = self.train, self.parent.data_config, self.generator
        train_per_class, val_per_class, distill_per_class = self.budgets
        extra = max(0, distill_per_class - train_per_class)
        val_per_class, train_per_class = fit_budgets(train, self.not_val, self.held_out, val_per_class,
                                                     train_per_class, self.dataset, plan.targets)
        if plan.targets is not None:
            logger.info("drawing images of the %d classes split and %d classes' worth of the other %d classes",
                        len(plan.targets), plan.others, len(train.class_names) - len(plan.targets))
        val_idx = plan.draw(train, val_per_class, gen, self.not_val)
        exclude = val_idx if self.held_out is None else torch.cat([val_idx, self.held_out])
        train_idx = plan.draw(train, train_per_class, gen, exclude)
        train_x = preprocess(train.images[train_idx], cfg)
        distill_x = distill_y = None
        if distill_per_class:
            more = plan.draw(train, extra, gen, torch.cat([exclude, train_idx])) if extra else train_idx[:0]
            distill_x = torch.cat([train_x, preprocess(train.images[more], cfg)])
            distill_y = torch.cat([train.labels[train_idx], train.labels[more]])
        return SplitData(train_x, train.labels[train_idx], preprocess(train.images[val_idx], cfg),
                         train.labels[val_idx], self.test, train.hub_id, distill_x, distill_y, self.val_source)


def open_split_data(dataset: str, parent: Parent, train_per_class: int, val_per_class: int, seed: int,
                    stream: bool = False, distill_per_class: int = 0) -> SplitSource:
    """Load ``dataset`` for a split of ``parent``: its test images, and the pool searches draw from.

    Without a test split, a held-out part of train is carved out to measure on, disjoint from
    everything a search sees. ``distill_per_class`` asks for that many images per class to distil
    into the modules: the training images, topped up with further ones disjoint from validation
    and test. A streamed split (``stream``) samples every class as it reads.
    """
    cfg, names = parent.data_config, parent.class_names
    budgets = (train_per_class, val_per_class, distill_per_class)
    gen = torch.Generator().manual_seed(seed)
    if stream:
        data = _stream_data(dataset, parent, train_per_class, val_per_class, seed,
                            max(0, distill_per_class - train_per_class))
        return SplitSource(dataset, parent, budgets, data.test, gen, streamed=data)
    size = tuple(cfg.input_size[1:])
    train = load_for_model(dataset, "train", names, parent.display_name, size)
    held_out: torch.Tensor | None = None
    if "test" in dataset_splits(dataset):
        test = load_for_model(dataset, "test", names, parent.display_name, size)
    else:
        held_out = train.stratified(max(1, int(HELD_OUT_FRACTION * len(train) / len(names))), gen)
        test = train.subset(held_out)
        test.split = "train (held-out part)"
    not_val, val_source = _not_validation(parent, dataset, train, held_out)
    return SplitSource(dataset, parent, budgets, test, gen, train, not_val, held_out, val_source)


MIN_VAL_PER_CLASS = 5  # fewer validation images cannot choose masks or calibrate a module
MIN_TRAIN_PER_CLASS = 5


def fit_budgets(train: LabeledImages, not_val: torch.Tensor | None, held_out: torch.Tensor | None,
                val_per_class: int, train_per_class: int, dataset: str,
                drawn: list[int] | None = None) -> tuple[int, int]:
    """Validation and training images per class that this dataset can give (both drawn from ``train``)
    for the classes ``drawn`` class by class (default: every class).

    When its smallest class has fewer images than the two budgets ask for, validation gets its
    share of that class (``val / (val + train)``, at least MIN_VAL_PER_CLASS) and training the rest,
    with a warning; a dataset too small for even the minimum is one clear error.
    """
    classes = len(train.class_names)
    counts = torch.bincount(train.labels, minlength=classes)
    if held_out is not None and len(held_out):
        counts = counts - torch.bincount(train.labels[held_out], minlength=classes)
    val_pool = counts
    if not_val is not None and len(not_val):
        allowed = torch.ones(len(train), dtype=torch.bool)
        allowed[not_val] = False
        val_pool = torch.bincount(train.labels[allowed], minlength=classes)
    if drawn is not None:
        counts, val_pool = counts[drawn], val_pool[drawn]
    smallest = int(counts.argmin()) if drawn is None else drawn[int(counts.argmin())]
    have, have_val = int(counts.min()), int(val_pool.min())
    need = MIN_VAL_PER_CLASS + MIN_TRAIN_PER_CLASS
    if have < need or have_val < MIN_VAL_PER_CLASS:
        raise HubmodError(
            f"dataset {dataset} has {have} images of class {train.class_names[smallest]!r} in its train split "
            f"({have_val} of them usable for validation); a split needs at least {need} per class "
            f"({MIN_TRAIN_PER_CLASS} to train on, {MIN_VAL_PER_CLASS} to validate on): add images of that class")
    if have >= val_per_class + train_per_class and have_val >= val_per_class:
        return val_per_class, train_per_class
    share = val_per_class / (val_per_class + train_per_class)
    val = min(val_per_class, have_val, max(MIN_VAL_PER_CLASS, round(share * have)))
    train_n = min(train_per_class, have - val)
    logger.warning("dataset %s has %d images of its smallest class %r: validating on %d and training on %d "
                   "images per class (asked: %d and %d)", dataset, have, train.class_names[smallest], val, train_n,
                   val_per_class, train_per_class)
    return val, train_n


def _not_validation(parent: Parent, dataset: str, train: LabeledImages,
                    held_out: torch.Tensor | None) -> tuple[torch.Tensor | None, str]:
    """Which training images validation must not use, and a phrase saying where validation comes from.

    When the parent's config.json names images it was not trained on (``hold_out`` in training.py)
    in this dataset's train split, validation is drawn from those only: images the parent trained
    on would flatter it against its modules.
    """
    record = parent.spec.validation
    if record is None or record["split"] != "train" or record["dataset"] not in (dataset, train.hub_id):
        return held_out, "train"
    allowed = torch.zeros(len(train), dtype=torch.bool)
    allowed[train.rows_within(record["rows"])] = True
    if held_out is not None:
        allowed[held_out] = False
    if not allowed.any():
        raise HubmodError(f"{parent.display_name} names {len(record['rows'])} held-out images of {dataset}, but "
                          f"none of them is in the train split loaded; check the dataset (or remove "
                          "hubmod_validation from the parent's config.json)")
    return torch.nonzero(~allowed).flatten(), "train (images held out of the parent's training)"


def _stream_data(dataset: str, parent: Parent, train_per_class: int, val_per_class: int, seed: int,
                 extra_per_class: int = 0) -> SplitData:
    """The same disjoint parts, filled from shuffled streams: only the sampled images are decoded."""
    cfg, names, where = parent.data_config, parent.class_names, parent.display_name
    size = tuple(cfg.input_size[1:])
    quotas = [val_per_class, train_per_class, extra_per_class]
    if "test" in dataset_splits(dataset, streaming=True):
        val, train, extra = sample_stream(dataset, "train", names, where, quotas, size, seed)
        (test,) = sample_stream(dataset, "test", names, where, [STREAM_TEST_PER_CLASS], size, seed)
    else:
        val, train, extra, test = sample_stream(dataset, "train", names, where, [*quotas, STREAM_TEST_PER_CLASS],
                                                size, seed)
        test.split = "train (held-out streamed sample)"
    train_x = preprocess(train.images, cfg)
    distill_x = torch.cat([train_x, preprocess(extra.images, cfg)]) if extra_per_class else None
    distill_y = torch.cat([train.labels, extra.labels]) if extra_per_class else None
    return SplitData(train_x, train.labels, preprocess(val.images, cfg), val.labels, test, train.hub_id, distill_x,
                      distill_y)


