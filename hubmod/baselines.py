"""What a split is measured against besides its parent: the parent's own classifier refit on the split's data."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .metrics import pre_logits


def refit_classifier(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int,
                     seed: int = 0) -> nn.Module:
    """The parent's classifier refit on the split's data (features frozen): logits [B, num_classes].

    This is the fair baseline for a composition whose heads were trained on that data: it shows
    how much of any gain comes from recalibrating the parent rather than from modularisation.
    Only the classes the data holds are refit and can be predicted (a split of a few classes of a
    many-class parent draws a sample of the others; refitting the rest would cost what they do).
    """
    return refit_on_features(model, pre_logits(model, train_x), train_y, num_classes, seed)


def refit_on_features(model: nn.Module, feats: torch.Tensor, train_y: torch.Tensor, num_classes: int,
                      seed: int = 0) -> nn.Module:
    """`refit_classifier` from the parent's penultimate features of the training images, already computed
    (a split searched in groups computes them group by group instead of keeping every group's images)."""
    torch.manual_seed(seed)
    present = torch.unique(train_y)
    clf = nn.Linear(feats.shape[1], len(present))
    src = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(src, nn.Linear) and src.weight.shape == (num_classes, feats.shape[1]):
        clf.weight.data.copy_(src.weight.data[present])
        if src.bias is not None:
            clf.bias.data.copy_(src.bias.data[present])
    local = torch.searchsorted(present, train_y)
    opt = torch.optim.LBFGS(clf.parameters(), lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(clf(feats), local) + 1e-4 * clf.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return _OnClasses(clf.eval(), present, num_classes)


class _OnClasses(nn.Module):
    """A classifier over some of ``num_classes`` classes, answering for all of them (-inf for the rest)."""

    def __init__(self, clf: nn.Linear, classes: torch.Tensor, num_classes: int):
        super().__init__()
        self.clf, self.num_classes = clf, num_classes
        self.register_buffer("classes", classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        out = torch.full((len(feats), self.num_classes), float("-inf"), dtype=feats.dtype, device=feats.device)
        out[:, self.classes] = self.clf(feats)
        return out
