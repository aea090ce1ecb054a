"""What sits on top of a module's pruned backbone: the part that turns its output into one score.

Heads are described by a small JSON spec in the module's config.json, so any method's module is
rebuilt by the same code. A head reads either the pruned parent's N logits (GradSplitter as
published, CNNSplitter's own-logit score) or, for ``features_mlp``, the pooled features that enter
the parent's classifier — the classifier is then dropped from the module. Reading features lets
the head re-weigh what the remaining channels still say about the class, which the parent's fixed
classifier cannot once most channels are gone.
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


class FeatureMLPHead(nn.Module):
    """Linear(F, H) -> ReLU -> Linear(H, 1) on the pruned backbone's pooled features."""

    def __init__(self, in_features: int, hidden: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(features))).squeeze(-1)


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


FEATURE_HEADS = ("features_mlp",)


def reads_features(spec: dict) -> bool:
    """Whether a head reads the pooled features (so the module carries no parent classifier)."""
    return isinstance(spec, dict) and spec.get("type") in FEATURE_HEADS


def _plain_int(value: object) -> bool:
    """JSON true/false arrive as Python bools, which are ints; a head size must be a real number."""
    return isinstance(value, int) and not isinstance(value, bool)


def build_head(spec: dict, width: int) -> nn.Module:
    """A head from its config.json spec, validated against the width of what the backbone outputs."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or spec.get("in_features") != width:
        raise InvalidRepoError(f"head spec {spec!r} does not fit a backbone with {width} outputs")
    if kind in ("mlp", "features_mlp"):
        hidden = spec.get("hidden")
        if not _plain_int(hidden) or not 1 <= hidden <= 4096:
            raise InvalidRepoError(f"{kind} head needs 1 <= hidden <= 4096 (got {hidden!r})")
        return (MLPHead if kind == "mlp" else FeatureMLPHead)(width, hidden)
    if kind in ("logit", "margin"):
        index = spec.get("index")
        if not _plain_int(index) or not 0 <= index < width:
            raise InvalidRepoError(f"{kind} head index {index!r} is outside 0..{width - 1}")
        return (LogitHead if kind == "logit" else MarginHead)(width, index)
    raise InvalidRepoError(f"unknown head type {kind!r} in config.json (known: mlp, features_mlp, logit, margin)")
