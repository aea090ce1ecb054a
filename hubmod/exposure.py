"""Outlier exposure: teaching each module of a split to say "not mine" to images of other worlds.

A module only ever saw its own parent's classes, so next to modules of another parent it
over-claims images of classes it never met: a Shirt module trained against footwear and bags has
no reason to reject a coat. ``hubmod split ... --negatives D2`` shows it images of a dataset with
none of the parent's classes. Each module gets a **gate**: a class-balanced logistic regression on
the features its head reads, own class against the parent's other classes and the negatives,
stored beside the head (``exposure.weight``, ``exposure.bias``) with a record of what it saw. The
``gated`` composition rule multiplies a module's ``means`` score by its gate's probability (``exposed``:
its min-max score); ``auto`` picks ``gated`` for modules of different splits when every one of them
was exposed.

Why a gate rather than retraining the head: the head was chosen with the search (and distilled);
the gate is fitted in seconds on the validation images the split already holds, so the module's
own scores, and every composition of one split, stay exactly as they were.
"""

from __future__ import annotations

import hashlib
import logging

import torch

from .data import LabeledImages, load_images
from .errors import HubmodError, option
from .lbfgs import minimise
from .untrusted import Fields

logger = logging.getLogger(__name__)

MAX_NEGATIVES = 2000  # images drawn from the negatives dataset (seeded); more add time, not accuracy
PENALTY = 0.1  # L2 strength on the standardised features (BENCHMARKS.md, zero-shot)


def load_negatives(dataset: str, parent_classes: list[str], seed: int) -> tuple[LabeledImages, dict]:
    """Up to MAX_NEGATIVES images of ``dataset``'s train split, and a record of which; one line if the
    dataset shares a class name with the parent (those images would teach a module to reject its own class)."""
    data = load_images(dataset, "train")
    ours = {c.casefold() for c in parent_classes}
    shared = [c for c in data.class_names if c.casefold() in ours]
    if shared:
        raise HubmodError(f"{option('negatives', dataset)} has the parent's class{'es' if len(shared) > 1 else ''} "
                          f"{', '.join(map(repr, shared[:5]))}; negatives must be images of none of the parent's "
                          "classes (e.g. another dataset)")
    if len(data) == 0:
        raise HubmodError(f"{option('negatives', dataset)} has no images in its train split")
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:MAX_NEGATIVES].sort().values
    picked = data.subset(rows)
    digest = hashlib.sha256(picked.images.contiguous().numpy().tobytes()).hexdigest()
    record = {"dataset": dataset, "split": picked.split, "images": len(picked), "images_sha256": digest,
              "penalty": PENALTY, "seed": seed}
    if picked.hub_id:
        record["dataset_hub_id"] = picked.hub_id
    return picked, record


def checked_record(data: object, where: str) -> dict:
    """A module config's ``exposure`` record, checked field by field (it came from a repo); {} if none."""
    if data == {}:
        return {}
    f = Fields(data, f"{where}: config.json exposure")
    record = {"dataset": f.str("dataset", max_len=500), "split": f.str("split", max_len=100),
              "images": f.int("images", lo=1, hi=100_000_000), "images_sha256": f.str("images_sha256", max_len=100),
              "penalty": f.number("penalty", lo=0.0, hi=1e6), "seed": f.int("seed", lo=0, hi=2**63 - 1)}
    hub_id = f.str("dataset_hub_id", optional=True, max_len=500)
    if hub_id is not None:
        record["dataset_hub_id"] = hub_id
    return record


def fit_gate(own: torch.Tensor, other: torch.Tensor, penalty: float = PENALTY) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight [1, D] and bias [1] of P(own class | features), class-balanced, ridge on standardised features.

    Solved in float64 with L-BFGS (a small convex problem), then the standardisation is folded into
    the weights so the gate is one linear layer on the raw features.
    """
    x = torch.cat([own, other]).double()
    y = torch.cat([torch.ones(len(own)), torch.zeros(len(other))]).double()
    w = torch.cat([torch.full((len(own),), 0.5 / len(own)), torch.full((len(other),), 0.5 / len(other))]).double()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mu) / sd
    params = torch.zeros(z.shape[1] + 1, dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        logits = z @ params[:-1] + params[-1]
        data = (w * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
        return data + penalty * (params[:-1] ** 2).sum()  # the data term is a weighted mean

    minimise(params, loss, max_iter=500)
    a, b = params.detach()[:-1], params.detach()[-1]
    weight = (a / sd)[None].float()
    bias = (b - (a * mu / sd).sum()).reshape(1).float()
    return weight, bias


def expose(modules: list, val_features: list[torch.Tensor], val_y: torch.Tensor, negatives: LabeledImages,
           record: dict) -> None:
    """Give every module (in place) a gate fitted on what its head read on the split's validation
    images (``val_features``, one tensor per module) and on the negatives."""
    for m, feats in zip(modules, val_features, strict=True):
        own = val_y == m.config.class_index
        weight, bias = fit_gate(feats[own], torch.cat([feats[~own], m.head_inputs_and_scores(negatives.images)[0]]))
        m.set_exposure(weight, bias, record)
        logger.info("exposed module %s to %d negatives of %s", m.class_name, len(negatives), record["dataset"])
