"""Activation-based decomposition (Pan & Rajan, ICSE 2022): modules from which channels fire for a class.

The three steps of the paper, on torch-pruning's channel groups:

* **concern identification** — a channel belongs to class c's concern if it is *active* on at least
  ``support`` of c's images. Active means its mean post-ReLU response on the image exceeds
  ``threshold`` times its mean response over all classes' images, so "active" is relative to each
  channel's own scale (a feature map's raw mean is almost never exactly zero after pooling);
* **tangling identification** — a concern alone cannot say "not mine". Channels active on the
  negative images most easily confused with c (the ``negative_share`` of other-class images the
  parent gives the highest probability of c) are added back, so the module keeps what separates c
  from its nearest neighbours;
* **concern modularization** — the N-way output becomes "class vs rest": the module's score is
  logit_c - logsumexp(other logits), i.e. log P(c) / (1 - P(c)); the module says "mine" when it is > 0.

Unlike the authors' modules (full size, channels switched off), the kept channels are physically
extracted like every other method's. What the authors set by hand is measured here: with
``threshold=-1`` (the default) every class gets its own threshold from 1.5 .. 0.0: as strict as
possible while the voting composition stays within ``tolerance`` points of the parent on validation
images (``choose_thresholds``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn as nn

from ..batching import in_chunks, progress_bar
from ..channels import ChannelGroup, GroupMasks, group_activations, unit_channels
from .base import (
    ClassSlice,
    MethodConfig,
    Rule,
    SplitContext,
    SplitOutcome,
    Splitter,
    at_least,
    between,
    method_option,
)
from .cnnsplitter import masked_logits

THRESHOLDS = (1.5, 1.25, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.25, 0.0)


@dataclass
class ActivationConfig(MethodConfig):
    method_name: ClassVar[str] = "activation"
    train_per_class: int = method_option(200, "images per class whose activations identify concerns", at_least(1))
    val_per_class: int = method_option(
        200, "held-out images per class for choosing the threshold, the final check and calibration", at_least(1))
    threshold: float = method_option(
        -1.0, "a channel is active on an image above this multiple of its mean response (-1: per class, the "
        "strictest of 1.5 .. 0.0 that keeps voting accuracy within tolerance)",
        Rule(lambda v: v == -1.0 or v >= 0, "-1 (automatic) or at least 0"))
    support: float = method_option(
        0.5, "share of a class's images a channel must be active on to belong to its concern",
        Rule(lambda v: 0 < v <= 1, "above 0 and at most 1"))
    negative_share: float = method_option(
        0.1, "share of other-class images (those most confused with the class) whose active channels are added back "
        "(tangling); 0 disables it", between(0, 1))
    tolerance: float = method_option(
        1.0, "accuracy points below the parent the automatic threshold may cost", at_least(0))
    detector_tolerance: float = method_option(
        2.0, "F1 points a module, as a stand-alone 'mine' detector (margin > 0), may lose against the most lenient "
        "threshold, so modules stay reusable beside other parents' modules", at_least(0))


def channel_responses(model: nn.Module, groups: list[ChannelGroup], x: torch.Tensor,
                      batch_size: int = 512) -> dict[str, torch.Tensor]:
    """[images, units] per group: each unit's mean post-ReLU response on each image.

    Read after the group's last non-convolution output (its norm) when it has one; coupled
    outputs of a residual group are averaged.
    """
    taps = [replace(g, out_modules=tuple(m for m in g.out_modules if m not in g.conv_modules) or g.out_modules)
            for g in groups]
    parts = [group_activations(model, taps, x[i : i + batch_size], per_image=True)
             for i in range(0, len(x), batch_size)]
    return {g.name: torch.cat([p[g.name] for p in parts]) for g in groups}


def active_share(responses: torch.Tensor, scale: torch.Tensor, threshold: float) -> torch.Tensor:
    """[size]: share of the images (rows of ``responses``) on which each channel is active."""
    return (responses >= threshold * scale).float().mean(0) if len(responses) else torch.zeros(responses.shape[1])


def confusable_negatives(probs: torch.Tensor, y: torch.Tensor, c: int, share: float) -> torch.Tensor:
    """Indices of the ``share`` of class-c negatives the parent finds most like c."""
    neg = torch.nonzero(y != c).flatten()
    count = int(round(share * len(neg)))
    if count == 0:
        return neg[:0]
    return neg[probs[neg, c].argsort(descending=True)[:count]]


def identify(responses: dict[str, torch.Tensor], y: torch.Tensor, probs: torch.Tensor, num_classes: int,
             threshold: float, support: float, negative_share: float) -> dict[str, torch.Tensor]:
    """Per group, [num_classes, size] bool: channels each class's module keeps (concern + tangling)."""
    out = {}
    for name, r in responses.items():
        scale = r.mean(0).clamp_min(1e-12)
        keep = torch.zeros(num_classes, r.shape[1], dtype=torch.bool)
        for c in range(num_classes):
            concern = active_share(r[y == c], scale, threshold) >= support
            negatives = confusable_negatives(probs, y, c, negative_share)
            tangled = active_share(r[negatives], scale, threshold) >= support if len(negatives) else concern
            row = concern | tangled
            if not row.any():  # a module keeps at least its most responsive channel of every group
                row[r[y == c].mean(0).argmax()] = True
            keep[c] = row
        out[name] = keep
    return out


def margins(model: nn.Module, hooks: GroupMasks, keep: dict[str, torch.Tensor], x: torch.Tensor,
            classes: list[int]) -> torch.Tensor:
    """[len(classes), images]: each module's class-vs-rest margin, all modules in one batched forward."""
    masks = {name: k[classes].float() for name, k in keep.items()}
    out = torch.empty(len(classes), len(x))
    idx = torch.tensor(classes)
    for rows, logits in masked_logits(model, hooks, masks, x, images_per_pass=2048):
        own = logits[torch.arange(len(classes)), :, idx]  # [m, rows]
        others = logits.clone()
        others[torch.arange(len(classes)), :, idx] = float("-inf")
        out[:, rows] = own - torch.logsumexp(others, dim=2)
    return out


def retention(keep: dict[str, torch.Tensor], groups: list[ChannelGroup]) -> float:
    """Mean share of the parent's conv kernels the modules keep."""
    total = sum(g.kernels for g in groups)
    kept = sum(keep[g.name].float().sum(1) * g.kernels_per_unit for g in groups)
    return float((kept / total).mean())


def detector_f1(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[T, n]: F1 of each module as a stand-alone "mine" detector (margin > 0) under each threshold."""
    n = scores.shape[1]
    votes = scores > 0
    truth = (y[None, :] == torch.arange(n)[:, None]).unsqueeze(0)
    tp = (votes & truth).sum(2).float()
    wrong = (votes ^ truth).sum(2).float()  # false positives + false negatives
    return 2 * tp / (2 * tp + wrong).clamp_min(1)


def choose_thresholds(scores: torch.Tensor, y: torch.Tensor, sizes: torch.Tensor, target: float,
                      allowed: torch.Tensor | None = None) -> list[int]:
    """Per class, the index of its threshold: as strict as the composed accuracy allows.

    ``scores`` [T, n, images] holds each module's margins under each threshold (strictest first),
    ``sizes`` [T, n] its kept kernels, ``allowed`` [T, n] which thresholds each class may take
    at all. A module's margins depend only on its own channels, so the composed accuracy of any
    assignment is an argmax over cached rows. Greedily, starting from the most lenient threshold
    for every class, the move to a stricter allowed threshold that saves the most kernels while the
    accuracy stays at or above ``target`` is taken until none is left.
    """
    t_count, n, _ = scores.shape
    pick = [t_count - 1] * n
    if allowed is None:
        allowed = torch.ones(t_count, n, dtype=torch.bool)

    def accuracy(choice: list[int]) -> float:
        rows = scores[torch.tensor(choice), torch.arange(n)]
        return float((rows.argmax(0) == y).float().mean())

    while True:
        best, best_saving = None, 0.0
        for c in range(n):
            for t in range(pick[c] - 1, -1, -1):
                saving = float(sizes[pick[c], c] - sizes[t, c])
                if saving <= best_saving or not allowed[t, c]:
                    continue
                trial = pick.copy()
                trial[c] = t
                if accuracy(trial) >= target:
                    best, best_saving = trial, saving
        if best is None:
            return pick
        pick = best


class ActivationSplitter(Splitter):
    name = "activation"
    pretty_name = "Activation-based decomposition"
    paper = "Pan & Rajan, Decomposing Convolutional Neural Network Models into Modules, ICSE 2022"
    paper_url = "https://arxiv.org/abs/2110.07720"
    config_class = ActivationConfig

    def split(self, ctx: SplitContext) -> SplitOutcome:
        cfg: ActivationConfig = self.config  # type: ignore[assignment]
        n, model, groups = ctx.num_classes, ctx.model, ctx.groups
        hooks = GroupMasks(model, groups)
        responses = channel_responses(model, groups, ctx.train_x)
        with torch.no_grad():
            probs = in_chunks(model, ctx.train_x).softmax(1)
        thresholds = THRESHOLDS if cfg.threshold < 0 else (cfg.threshold,)
        kernels = torch.tensor([g.kernels_per_unit for g in groups], dtype=torch.float)
        keeps, scores, sizes = [], [], []
        bar = progress_bar(ctx.progress, len(thresholds), "activation", "threshold")
        try:
            for t in thresholds:
                keep = identify(responses, ctx.train_y, probs, n, t, cfg.support, cfg.negative_share)
                keeps.append(keep)
                scores.append(margins(model, hooks, keep, ctx.val_x, list(range(n))))
                sizes.append(torch.stack([keep[g.name].float().sum(1) for g in groups], 1) @ kernels)
                bar.update(1)
                bar.set_postfix(threshold=t, kept=f"{retention(keep, groups):.3f}")
        finally:
            bar.close()
        score_t, size_t = torch.stack(scores), torch.stack(sizes)
        target = ctx.parent_val_accuracy - cfg.tolerance / 100
        # a module must stay a working detector on its own, not just win the argmax inside this split: a
        # module that never says "mine" still wins its class here when every other module says "not mine",
        # but is useless beside modules of another parent
        f1 = detector_f1(score_t, ctx.val_y)
        allowed = f1 >= f1[-1] - cfg.detector_tolerance / 100
        pick = choose_thresholds(score_t, ctx.val_y, size_t, target, allowed)
        keep = {g.name: torch.stack([keeps[pick[c]][g.name][c] for c in range(n)]) for g in groups}
        chosen = score_t[torch.tensor(pick), torch.arange(n)]
        val_accuracy = float((chosen.argmax(0) == ctx.val_y).float().mean())
        votes = (chosen > 0).sum(0)
        slices = [ClassSlice(class_index=c, kept=unit_channels(groups, {g.name: keep[g.name][c] for g in groups}),
                             head={"type": "margin", "in_features": n, "index": c}) for c in ctx.targets]
        tried = [{"threshold": t, "retention": retention(k, groups),
                  "val_accuracy": float((score_t[i].argmax(0) == ctx.val_y).float().mean())}
                 for i, (t, k) in enumerate(zip(thresholds, keeps, strict=True))]
        metrics = {"thresholds": {str(c): thresholds[pick[c]] for c in range(n)}, "thresholds_tried": tried,
                   "detector_f1": {str(c): float(f1[pick[c], c]) for c in range(n)},
                   "lenient_detector_f1": {str(c): float(f1[-1, c]) for c in range(n)},
                   "val_accuracy": val_accuracy, "parent_val_accuracy": ctx.parent_val_accuracy,
                   "mean_retention": retention(keep, groups),
                   "val_votes": {"none": float((votes == 0).float().mean()), "one": float((votes == 1).float().mean()),
                                 "several": float((votes > 1).float().mean())}}
        return SplitOutcome(slices=slices, metrics=metrics)
