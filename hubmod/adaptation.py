"""Adapting a composed classifier to its task without labels (``compose --adapt D``).

Modules of different parents over-claim images of classes their parents never saw, and without
labels nothing says by how much. Unlabelled images of the task do: if the classes are about equally
common among them, a composition that gives one module far more than its share of those images is
over-claiming with it. ``--adapt`` shifts each module's calibrated score by an offset, the same
for every image, chosen so that over the images the composition's average soft prediction is the
same for every class. The offsets are the minimum of a smooth convex function (the log-sum-exp of
the shifted scores, less the mean offset), solved deterministically; they become an ``affine``
combiner (scale 1/T, offset b/T) so the adapted repo loads, evaluates and exports as a fitted one.

What it assumes, and what happens when that is false, is measured in BENCHMARKS.md (adapt):
it helps where the task's classes are about balanced among the images, and a strongly unbalanced
set of images pulls the offsets toward the wrong shares. Labels, where the dataset has them, are
never read.
"""

from __future__ import annotations

import hashlib
import logging

import torch

from .combiners import AffineCombiner
from .data import load_unlabelled_images
from .errors import HubmodError, option
from .fitting import ADAPTED
from .lbfgs import minimise
from .preprocess import largest_input_size

logger = logging.getLogger(__name__)

TEMPERATURE = 0.3  # softness of the assignment the offsets balance, in calibrated-score units (BENCHMARKS.md, adapt)
MAX_IMAGES = 5000  # images drawn (seeded) from the dataset; more add time, not accuracy
MIN_IMAGES_PER_CLASS = 5  # fewer images than this per composed class: the shares say too little
SOURCE = "unlabelled images of the task (labels not read)"


def balancing_offsets(scores: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Offsets b [k] such that mean_i softmax((scores_i + b) / T) is uniform over the k classes.

    They minimise f(b) = mean_i T * logsumexp((scores_i + b) / T) - mean(b), convex with gradient
    (average soft prediction - 1/k); b is defined up to a constant, fixed by mean(b) = 0.
    """
    if scores.ndim != 2 or scores.shape[1] < 2 or len(scores) == 0:
        raise ValueError("balancing needs scores [n, k] of at least one image and two classes")
    s = scores.double()
    params = torch.zeros(s.shape[1], dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        b = params - params.mean()
        return temperature * torch.logsumexp((s + b) / temperature, dim=1).mean() - b.mean()

    minimise(params, loss, max_iter=1000, tolerance_grad=1e-10, tolerance_change=1e-14)
    b = params.detach()
    return (b - b.mean()).float()


def check_adapt_images(count: int, classes: int, dataset: str) -> None:
    """One line when the dataset holds too few images to say anything about ``classes`` classes' shares."""
    if count < MIN_IMAGES_PER_CLASS * classes:
        raise HubmodError(f"{option('adapt', dataset)} has {count} images; adapting {classes} classes needs at "
                          f"least {MIN_IMAGES_PER_CLASS * classes} ({MIN_IMAGES_PER_CLASS} per class), about as many "
                          "of each class")


def adapt_combiner(model, dataset: str, split: str = "train", seed: int = 0) -> None:
    """Give ``model`` (in place) an affine combiner of balancing offsets, from unlabelled images of one split
    of ``dataset`` (up to MAX_IMAGES of them, drawn with ``seed``), and a record of which images."""
    modules = list(model.class_modules)
    images, hub_id = load_unlabelled_images(dataset, split, largest_input_size(m.data_config for m in modules))
    check_adapt_images(len(images), len(modules), dataset)
    rows = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:MAX_IMAGES].sort().values
    images = images[rows]
    scores = torch.cat([s for s, _ in model.module_outputs(images)])
    offsets = balancing_offsets(scores)
    model.combiner = AffineCombiner.of(torch.full((len(modules),), 1.0 / TEMPERATURE), offsets / TEMPERATURE)
    model.fit_info = {"method": ADAPTED, "dataset": dataset, "split": split, "source": SOURCE, "images": len(images),
                      "seed": seed, "rows": [int(r) for r in rows],
                      "images_sha256": hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest(),
                      "temperature": TEMPERATURE, "combiner": "affine", "calibration": model.calibration,
                      **({"dataset_hub_id": hub_id} if hub_id else {})}
    logger.info("adapted %d modules to %d unlabelled images of %s (%s)", len(modules), len(images), dataset, split)
