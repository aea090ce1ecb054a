"""What sits on top of a module's pruned backbone: the part that turns N logits into one score.

Heads are described by a small JSON spec in the module's config.json, so any method's module is
rebuilt by the same code: GradSplitter trains an MLP on the pruned parent's logits, CNNSplitter
reads the parent's own logit for the class.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .errors import InvalidRepoError


class MLPHead(nn.Module):
    """GradSplitter's head: ReLU(logits) -> Linear(N, H) -> ReLU -> Linear(H, 1)."""

    def __init__(self, in_features: int, hidden: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(torch.relu(logits)))).squeeze(-1)


class LogitHead(nn.Module):
    """The parent's own logit for one class (no parameters)."""

    def __init__(self, in_features: int, index: int):
        super().__init__()
        self.in_features, self.index = in_features, index

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, self.index]


class MarginHead(nn.Module):
    """Class-vs-rest margin: the class's logit minus the log-sum-exp of the others' logits."""

    def __init__(self, in_features: int, index: int):
        super().__init__()
        self.in_features, self.index = in_features, index

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        others = torch.cat([logits[:, : self.index], logits[:, self.index + 1 :]], dim=1)
        return logits[:, self.index] - torch.logsumexp(others, dim=1)


def build_head(spec: dict, num_logits: int) -> nn.Module:
    """A head from its config.json spec, validated against the backbone's number of logits."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if spec.get("in_features") != num_logits if isinstance(spec, dict) else True:
        raise InvalidRepoError(f"head spec {spec!r} does not fit a backbone with {num_logits} outputs")
    if kind == "mlp":
        hidden = spec.get("hidden")
        if not isinstance(hidden, int) or not 1 <= hidden <= 4096:
            raise InvalidRepoError(f"mlp head needs 1 <= hidden <= 4096 (got {hidden!r})")
        return MLPHead(num_logits, hidden)
    if kind in ("logit", "margin"):
        index = spec.get("index")
        if not isinstance(index, int) or not 0 <= index < num_logits:
            raise InvalidRepoError(f"{kind} head index {index!r} is outside 0..{num_logits - 1}")
        return (LogitHead if kind == "logit" else MarginHead)(num_logits, index)
    raise InvalidRepoError(f"unknown head type {kind!r} in config.json (known: mlp, logit, margin)")
