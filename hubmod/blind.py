"""Modules that cannot see the image (or barely), and the module a split ships for their class instead.

A method can leave a class's module with every path from the input to its head crossing a layer
with no live channel: a plain chain's layer it kept nothing of, or a thin path that distillation let
die. Such a module gives every image the same score. Next to its own split's modules it still ranks
right (they score their classes above it); next to other parents' modules it takes every image they
score lower. So the split pipeline checks every final module, whatever the method and after any
distillation, and gives such a class the whole parent instead. A module can also see the image and
still hardly tell its class from the parent's others on its own (a path of a channel or two per
layer): its split's other modules make up for it, other parents' modules do not. With the
``max_auc_loss`` option, a module whose ROC AUC on the validation images (its class against the
rest, scored alone) falls further than that below the parent's own logit's gets the whole parent too
(a split with ``--negatives``, made for other parents' company, uses 0.05 unless told otherwise).

The whole parent's score for the class must sit on the scale of its split's other modules, or it
takes the split's images from them: distillation matches softmaxes, which do not see a shift common
to all logits, so distilled modules score the parent's logits plus an offset of their own. The
parent's logit is therefore mapped onto the modules' scale by the least-squares line from the
parent's logits of the other modules' classes to those modules' scores on the validation images,
and written as a two-unit ``features_mlp`` head (``a * ReLU(z) - a * ReLU(-z) + b = a * z + b`` for
the logit ``z``), a head kind every hubmod release loads. A module whose head reads the logits
(CNNSplitter's logit, the activation method's margin, GradSplitter's head as published) keeps its
own head on the whole parent's logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .channels import classifier_of
from .heads import reads_features

# why a module that gives every image the same score gets the whole parent (its config and card say so);
# modules published before the reason was recorded say only ``whole_parent: true``, and mean this
CANNOT_SEE = ("gave every validation image the same score (every path to its head crossed a layer with no live "
              "channel)")


def roc_auc(scores: torch.Tensor, own: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for telling ``own`` (bool) images from the rest: the chance
    that an own image scores above another image, ties counting half (0.5 for constant scores)."""
    n_own, n_rest = int(own.sum()), int((~own).sum())
    if n_own == 0 or n_rest == 0:
        return 0.5
    _, group, counts = torch.unique(scores.double(), return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # 1-based rank of each distinct score's last image
    ranks = (last - (counts - 1) / 2)[group]  # tied scores share their mean rank
    return float((ranks[own].sum() - n_own * (n_own + 1) / 2) / (n_own * n_rest))


def logit_alignment(logits: torch.Tensor, scores: torch.Tensor) -> tuple[float, float]:
    """Scale and offset ``(a, b)`` with ``a * logits + b`` closest to ``scores`` (least squares).

    ``logits`` and ``scores`` are paired: a parent's logit for a class and that class's module's
    score, on the same image. A fit that would not keep the logit's order (no spread, or a slope
    of zero or below) keeps the scale and matches the means.
    """
    if logits.numel() < 2:
        return 1.0, 0.0
    x, y = logits.double(), scores.double()
    dx = x - x.mean()
    var = float((dx * dx).mean())
    a = float((dx * (y - y.mean())).mean()) / var if var > 0 else 0.0
    if a <= 0:
        a = 1.0
    return a, float(y.mean() - a * x.mean())


def whole_parent_head(parent: nn.Module, class_index: int, num_classes: int, head: dict,
                      head_state: dict[str, torch.Tensor], scale: float,
                      offset: float) -> tuple[dict, dict[str, torch.Tensor]]:
    """The head spec and state (keys under ``head.``) of the whole parent's module for ``class_index``.

    A head that reads logits is kept as it is. A head that read features becomes ``scale`` times the
    parent's logit plus ``offset``, written as a two-unit ``features_mlp``; a parent whose classifier
    is not one linear layer on the pooled features gets the parent's own logit (a ``logit`` head).
    """
    if not reads_features(head):
        return head, head_state
    clf = classifier_of(parent)
    if not isinstance(clf, nn.Linear):
        return {"type": "logit", "in_features": num_classes, "index": class_index}, {}
    w = clf.weight.detach()[class_index]
    bias = clf.bias.detach()[class_index] if clf.bias is not None else torch.zeros((), dtype=w.dtype)
    state = {
        "head.fc1.weight": torch.stack([w, -w]).clone(),
        "head.fc1.bias": torch.stack([bias, -bias]).clone(),
        "head.fc2.weight": torch.tensor([[scale, -scale]], dtype=w.dtype),
        "head.fc2.bias": torch.tensor([offset], dtype=w.dtype),
    }
    return {"type": "features_mlp", "in_features": int(w.numel()), "hidden": 2}, state
