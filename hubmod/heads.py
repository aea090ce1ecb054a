"""What sits on top of a module's pruned backbone: the part that turns its output into one score.

Heads are described by a small JSON spec in the module's config.json, so any method's module is
rebuilt by the same code. A head reads either the pruned parent's N logits (GradSplitter as
published, CNNSplitter's own-logit score) or, for ``features_mlp``, the pooled features that enter
the parent's classifier — the classifier is then dropped from the module. Reading features lets
the head re-weigh what the remaining channels still say about the class, which the parent's fixed
classifier cannot once most channels are gone.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn as nn

from .errors import InvalidRepoError


class Head(nn.Module):
    """A head kind: its ``type`` in config.json, how it is built from its spec, and how a card describes it."""

    type: ClassVar[str]
    reads_features: ClassVar[bool] = False  # True: reads pooled features, and the module drops the parent's classifier
    registry: ClassVar[dict[str, type[Head]]] = {}  # config.json head type -> class

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            Head.registry[cls.type] = cls

    @classmethod
    def from_spec(cls, spec: dict, width: int) -> Head:
        raise NotImplementedError

    @classmethod
    def describe(cls, spec: dict) -> str:
        """One phrase for the module card: what the head computes, from what."""
        raise NotImplementedError


class _HiddenLayerHead(Head):
    """Linear(width, hidden) -> ReLU -> Linear(hidden, 1), with ``hidden`` from the spec."""

    def __init__(self, in_features: int, hidden: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    @classmethod
    def from_spec(cls, spec: dict, width: int) -> Head:
        hidden = spec.get("hidden")
        if not _plain_int(hidden) or not 1 <= hidden <= 4096:
            raise InvalidRepoError(f"{cls.type} head needs 1 <= hidden <= 4096 (got {hidden!r})")
        return cls(width, hidden)


class _OneClassHead(Head):
    """A parameter-free score read off the logits of the class at ``index``."""

    def __init__(self, in_features: int, index: int):
        super().__init__()
        self.in_features, self.index = in_features, index

    @classmethod
    def from_spec(cls, spec: dict, width: int) -> Head:
        index = spec.get("index")
        if not _plain_int(index) or not 0 <= index < width:
            raise InvalidRepoError(f"{cls.type} head index {index!r} is outside 0..{width - 1}")
        return cls(width, index)


class MLPHead(_HiddenLayerHead):
    """GradSplitter's head: ReLU(logits) -> Linear(N, H) -> ReLU -> Linear(H, 1)."""

    type = "mlp"

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(torch.relu(logits)))).squeeze(-1)

    @classmethod
    def describe(cls, spec: dict) -> str:
        return (f"GradSplitter's head (ReLU, Linear({spec.get('in_features')}, {spec.get('hidden')}), ReLU, "
                "Linear(…, 1)) on the pruned network's logits")


class FeatureMLPHead(_HiddenLayerHead):
    """Linear(F, H) -> ReLU -> Linear(H, 1) on the pruned backbone's pooled features."""

    type = "features_mlp"
    reads_features = True

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(features))).squeeze(-1)

    @classmethod
    def describe(cls, spec: dict) -> str:
        return (f"a small head (Linear({spec.get('in_features')}, {spec.get('hidden')}), ReLU, Linear(…, 1)) on the "
                "pruned network's pooled features (the parent's classifier is not part of the module)")


class LogitHead(_OneClassHead):
    """The parent's own logit for one class (no parameters)."""

    type = "logit"

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, self.index]

    @classmethod
    def describe(cls, spec: dict) -> str:
        return "the parent's own logit for the class"


class MarginHead(_OneClassHead):
    """Class-vs-rest margin: the class's logit minus the log-sum-exp of the others' logits."""

    type = "margin"

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        others = torch.cat([logits[:, : self.index], logits[:, self.index + 1 :]], dim=1)
        return logits[:, self.index] - torch.logsumexp(others, dim=1)

    @classmethod
    def describe(cls, spec: dict) -> str:
        return "the class's logit margin over the other classes"


def _head_class(spec: object) -> type[Head] | None:
    """The registered head kind a config.json head spec names, or None."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    return Head.registry.get(kind) if isinstance(kind, str) else None


def reads_features(spec: dict) -> bool:
    """Whether a head reads the pooled features (so the module carries no parent classifier)."""
    head = _head_class(spec)
    return head is not None and head.reads_features


def _plain_int(value: object) -> bool:
    """JSON true/false arrive as Python bools, which are ints; a head size must be a real number."""
    return isinstance(value, int) and not isinstance(value, bool)


def build_head(spec: dict, width: int) -> nn.Module:
    """A head from its config.json spec, validated against the width of what the backbone outputs."""
    if not isinstance(spec, dict) or spec.get("in_features") != width:
        raise InvalidRepoError(f"head spec {spec!r} does not fit a backbone with {width} outputs")
    head = _head_class(spec)
    if head is None:
        raise InvalidRepoError(f"unknown head type {spec.get('type')!r} in config.json "
                               f"(known: {', '.join(Head.registry)})")
    return head.from_spec(spec, width)


def describe_head(spec: dict) -> str:
    """The card's phrase for a head spec (its type name when this hubmod does not know the type)."""
    head = _head_class(spec)
    return head.describe(spec) if head is not None else str(spec.get("type") if isinstance(spec, dict) else None)
