"""What a split is measured against besides its parent: the parent's own classifier refit on the split's data."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .metrics import pre_logits


def refit_classifier(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int,
                     seed: int = 0) -> nn.Linear:
    """The parent's classifier refit on the split's data (features frozen).

    This is the fair baseline for a composition whose heads were trained on that data: it shows
    how much of any gain comes from recalibrating the parent rather than from modularisation.
    """
    torch.manual_seed(seed)
    feats = pre_logits(model, train_x)
    clf = nn.Linear(feats.shape[1], num_classes)
    src = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(src, nn.Linear) and src.weight.shape == clf.weight.shape:
        clf.load_state_dict(src.state_dict())
    opt = torch.optim.LBFGS(clf.parameters(), lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(clf(feats), train_y) + 1e-4 * clf.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return clf.eval()
