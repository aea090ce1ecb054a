"""Combiners: a composed classifier's last layer, fitted on a few labelled images of its own task.

Modules split from different parents were each trained to tell their class from the other classes
of their own parent only; composed, a module may claim images of a class it never met. A combiner
learns from K labelled images per composed class how to weigh the modules against each other:

* ``affine`` — one scale and one offset per module on its calibrated score (the fix for scales
  that do not match, as BiC fits two parameters on a small balanced set);
* ``stack`` — multinomial logistic regression over the k calibrated scores (it can learn that
  module A's score says something about class B: look-alike classes);
* ``probe`` — a linear classifier over what every module's head reads (its pooled features or
  its parent's logits) and its calibrated score, concatenated: the most the modules can say.

Every fit is a small convex problem solved deterministically (L-BFGS in float64) with an L2
penalty toward "no change" (for ``stack`` and ``probe``: each class reading its own module's
score, and for ``probe`` no feature weighed, so that a few images move the plain composition
rather than build a classifier from nothing); the penalty's strength is chosen by stratified
cross-validation on the K images when there are at least two per class.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import HubmodError, InvalidRepoError
from .lbfgs import minimise

PENALTIES = (1e-3, 1e-2, 1e-1, 1.0)
DEFAULT_PENALTY = 1e-2  # the strength used when the K images are too few to cross-validate (K = 1)


class Combiner(nn.Module):
    """scores [B, k] (calibrated) and features [B, D] -> logits [B, k]; argmax is the prediction."""

    kind: ClassVar[str]
    reads_features: ClassVar[bool] = False
    registry: ClassVar[dict[str, type[Combiner]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:  # concrete combiners declare their kind; shared bases do not
            Combiner.registry[cls.kind] = cls

    def __init__(self, classes: int, features: int = 0):
        super().__init__()
        self.classes, self.features = classes, features

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": self.classes, "features": self.features}

    def inputs(self, scores: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        return scores

    @classmethod
    def from_spec(cls, spec: Any, where: str) -> Combiner:
        """An empty combiner of the recorded kind and shape (its weights come from the safetensors file)."""
        if not isinstance(spec, dict) or spec.get("kind") not in Combiner.registry:
            raise InvalidRepoError(f"{where}: config.json names no combiner this hubmod knows "
                                   f"({', '.join(Combiner.registry)})")
        classes, features = spec.get("classes"), spec.get("features", 0)
        if type(classes) is not int or not 2 <= classes <= 100_000 or type(features) is not int or \
                not 0 <= features <= 10_000_000:
            raise InvalidRepoError(f"{where}: config.json gives the combiner an impossible shape")
        return Combiner.registry[spec["kind"]](classes, features)

    def check_fits(self, classes: int, features: int, where: str) -> None:
        """Loading re-checks that the combiner fits the modules it combines."""
        if self.classes != classes or (self.reads_features and self.features != features):
            raise InvalidRepoError(
                f"{where}: the {self.kind} combiner takes {self.classes} classes and {self.features} features, but "
                f"the modules give {classes} and {features}; re-fit with `hubmod compose ... --fit`")

    def fit(self, scores: torch.Tensor, features: torch.Tensor | None, labels: torch.Tensor,
            generator: torch.Generator) -> Combiner:
        """Fit on labelled images (in place); the penalty is chosen by cross-validation where K allows."""
        z = self._standardised(scores, features)
        penalty = _choose_penalty(lambda zz, yy, lam: self._solve(zz, yy, lam), z, labels, generator)
        self._load(*self._solve(z, labels, penalty))
        self.penalty = penalty
        return self

    def _standardised(self, scores: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """The combiner's inputs in float64, its scaling fitted to them and applied."""
        x = self.inputs(scores, features).double()
        self._standardise(x)
        return self._standard(x)

    # subclasses: how inputs are scaled and what the parameters are
    def _standardise(self, x: torch.Tensor) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _standard(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def _solve(self, z: torch.Tensor, y: torch.Tensor, penalty: float) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError  # pragma: no cover

    def _load(self, *params: torch.Tensor) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class AffineCombiner(Combiner):
    """logits_i = a_i * score_i + b_i: a scale and an offset per module."""

    kind = "affine"

    def __init__(self, classes: int, features: int = 0):
        super().__init__(classes, 0)
        self.scale = nn.Parameter(torch.ones(classes), requires_grad=False)
        self.offset = nn.Parameter(torch.zeros(classes), requires_grad=False)

    def forward(self, scores: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return scores * self.scale + self.offset

    def _standardise(self, x: torch.Tensor) -> None:
        pass

    def _standard(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _solve(self, z: torch.Tensor, y: torch.Tensor, penalty: float) -> tuple[torch.Tensor, ...]:
        k = self.classes
        params = torch.cat([torch.ones(k, dtype=z.dtype), torch.zeros(k, dtype=z.dtype)]).requires_grad_(True)

        def loss() -> torch.Tensor:
            a, b = params[:k], params[k:]
            return F.cross_entropy(z * a + b, y) + penalty * (((a - 1) ** 2).sum() + (b ** 2).sum())

        _lbfgs(params, loss)
        return params.detach()[:k], params.detach()[k:]

    def _load(self, a: torch.Tensor, b: torch.Tensor) -> None:
        with torch.no_grad():
            self.scale.copy_(a.float())
            self.offset.copy_(b.float())

    @classmethod
    def of(cls, scale: torch.Tensor, offset: torch.Tensor) -> AffineCombiner:
        """An affine combiner with these scales and offsets (one per module), set rather than fitted."""
        combiner = cls(len(scale))
        combiner._load(scale, offset)
        return combiner


class _Linear(Combiner):
    """logits = W standard(x) + c, x standardised with the fit images' mean and spread."""

    def __init__(self, classes: int, features: int = 0):
        super().__init__(classes, features)
        width = self.width
        self.mean = nn.Parameter(torch.zeros(width), requires_grad=False)
        self.scale = nn.Parameter(torch.ones(width), requires_grad=False)
        self.weight = nn.Parameter(torch.zeros(classes, width), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(classes), requires_grad=False)

    @property
    def width(self) -> int:
        raise NotImplementedError  # pragma: no cover

    def forward(self, scores: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        z = (self.inputs(scores, features) - self.mean) / self.scale
        return z @ self.weight.T + self.bias

    def _standardise(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            self.mean.copy_(x.mean(0).float())
            self.scale.copy_(x.std(0, unbiased=False).clamp_min(1e-6).float() if len(x) > 1
                             else torch.ones(x.shape[1]))

    def _standard(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.double()) / self.scale.double()

    def _solve(self, z: torch.Tensor, y: torch.Tensor, penalty: float) -> tuple[torch.Tensor, ...]:
        k, d = self.classes, z.shape[1]
        params = torch.zeros(k * d + k, dtype=z.dtype, requires_grad=True)
        start = self._start(d, z.dtype)

        def loss() -> torch.Tensor:
            w = params[: k * d].view(k, d) + start
            return F.cross_entropy(z @ w.T + params[k * d:], y) + penalty * (params[: k * d] ** 2).sum() / d

        _lbfgs(params, loss)
        return params.detach()[: k * d].view(k, d) + start, params.detach()[k * d:]

    def _start(self, d: int, dtype: torch.dtype) -> torch.Tensor:
        """The weights the penalty pulls toward."""
        return torch.zeros(self.classes, d, dtype=dtype)

    def _load(self, w: torch.Tensor, c: torch.Tensor) -> None:
        with torch.no_grad():
            self.weight.copy_(w.float())
            self.bias.copy_(c.float())


class StackCombiner(_Linear):
    """Multinomial logistic regression over the k calibrated scores."""

    kind = "stack"

    def __init__(self, classes: int, features: int = 0):
        super().__init__(classes, 0)

    @property
    def width(self) -> int:
        return self.classes

    def _start(self, d: int, dtype: torch.dtype) -> torch.Tensor:
        # toward each class reading its own module's score: with no evidence, the plain composition
        return torch.eye(self.classes, dtype=dtype) * 1.0


class ProbeCombiner(_Linear):
    """A linear classifier over every module's head input and calibrated score, concatenated."""

    kind = "probe"
    reads_features = True

    @property
    def width(self) -> int:
        return self.features + self.classes

    def inputs(self, scores: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        if features is None:
            raise HubmodError("the probe combiner reads the modules' features")
        return torch.cat([features.to(scores.dtype), scores], dim=1)

    def _start(self, d: int, dtype: torch.dtype) -> torch.Tensor:
        # toward the plain composition, as stack: each class reads its own module's score (the last
        # k inputs), and no feature until the images show it helps
        start = torch.zeros(self.classes, d, dtype=dtype)
        start[:, d - self.classes:] = torch.eye(self.classes, dtype=dtype)
        return start


KINDS = tuple(Combiner.registry)


def _lbfgs(params: torch.Tensor, loss_fn) -> None:
    minimise(params, loss_fn, max_iter=200, tolerance_grad=1e-7, tolerance_change=1e-10, history_size=20)


def _choose_penalty(solve, z: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> float:
    """The L2 strength with the best held-out log-loss over stratified folds (DEFAULT_PENALTY for one per class)."""
    folds = _fold_count(y)
    if folds < 2:
        return DEFAULT_PENALTY
    fold_of = _stratified_folds(y, folds, generator)
    best, best_loss = DEFAULT_PENALTY, math.inf
    for penalty in PENALTIES:
        total = 0.0
        for f in range(folds):
            train, held = fold_of != f, fold_of == f
            params = solve(z[train], y[train], penalty)
            total += float(F.cross_entropy(_apply(params, z[held]), y[held], reduction="sum"))
        if total < best_loss - 1e-9:
            best, best_loss = penalty, total
    return best


def _fold_count(y: torch.Tensor) -> int:
    """Up to five folds, and no more than the rarest class has samples (fewer than 2: no cross-validation)."""
    counts = torch.bincount(y)
    return int(min(5, counts[counts > 0].min()))


def _stratified_folds(y: torch.Tensor, folds: int, generator: torch.Generator) -> torch.Tensor:
    """A fold number per sample: each class spread evenly over the folds, in a seeded order."""
    fold_of = torch.empty(len(y), dtype=torch.long)
    for c in range(int(y.max()) + 1):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        fold_of[idx] = torch.arange(len(idx)) % folds
    return fold_of


def _apply(params: tuple[torch.Tensor, ...], z: torch.Tensor) -> torch.Tensor:
    first, second = params
    if first.ndim == 1:  # affine: scale, offset
        return z * first + second
    return z @ first.T + second


def build(kind: str, classes: int, features: int) -> Combiner:
    if kind not in Combiner.registry:
        raise HubmodError(f"unknown combiner {kind!r}; use one of {', '.join(Combiner.registry)}")
    return Combiner.registry[kind](classes, features)


def cross_validated_accuracy(kind: str, scores: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                             generator: torch.Generator) -> tuple[float, float]:
    """(accuracy, mean log-loss) of a ``kind`` combiner on held-out folds of these labelled outputs.

    Used to compare module sets on the same few images: each fold's combiner is fitted at
    DEFAULT_PENALTY on the other folds. With one image per class there is nothing to hold out, and
    the argmax of the calibrated scores themselves is measured instead.
    """
    folds = _fold_count(labels)
    if folds < 2:
        logits = scores.double()
        return (float((logits.argmax(1) == labels).double().mean()),
                float(F.cross_entropy(logits, labels)))
    combiner = build(kind, scores.shape[1], features.shape[1])
    z = combiner._standardised(scores, features)
    fold_of = _stratified_folds(labels, folds, generator)
    correct, loss = 0, 0.0
    for f in range(folds):
        train, held = fold_of != f, fold_of == f
        logits = _apply(combiner._solve(z[train], labels[train], DEFAULT_PENALTY), z[held])
        correct += int((logits.argmax(1) == labels[held]).sum())
        loss += float(F.cross_entropy(logits, labels[held], reduction="sum"))
    return correct / len(labels), loss / len(labels)
