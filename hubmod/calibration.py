"""Making scores of modules trained apart comparable.

A module's raw score only means something next to the scores of the modules it was trained
with. Each module therefore stores, at split time, statistics of its raw score on held-out images
of its own class and of the other classes; ``compose`` turns raw scores into comparable ones with
one of these rules:

* ``none``   — raw scores (right for modules of one split: they were trained to compete);
* ``minmax`` — CNNSplitter's rule: rescale by the min and max over own-class validation samples;
* ``means``  — rescale so the other classes' mean validation score is 0 and the own class's is 1
  (means are steadier than minmax's extremes, which one odd validation image can set);
* ``platt``  — a logistic fit P(own class | score) on own vs other samples, class-balanced, so every
  module answers the same question on the same 0..1 scale;
* ``vote``   — Pan & Rajan's composition: a module votes when it says "mine" (P(own) > 0.5); voters
  rank above non-voters, and ties among voters or no vote at all go to the highest P(own). P(own)
  is the module's own class-vs-rest probability for a ``margin`` head (the activation method's),
  else its Platt probability. Returned as P(own) + 1 for voters, so argmax applies the rule;
* ``gated``  — the ``means`` score times the probability of the module's outlier-exposure gate
  (hubmod.exposure), for modules split with ``--negatives``;
* ``exposed`` — the ``minmax`` score times that gate (the first gated rule; ``gated`` was measured
  steadier across trainings of the same parents, BENCHMARKS.md zero-shot). Kept so composed repos
  that name it load as they were published.
"""

from __future__ import annotations

import torch

from .lbfgs import minimise

METHODS = ("none", "minmax", "means", "platt", "vote", "gated", "exposed")
# the rules that need every module to carry an outlier-exposure gate, and the score each multiplies by it
NEEDS_GATE = {"gated": "means", "exposed": "minmax"}
GATED = "gated"  # the one `auto` picks when every module has a gate
AUTO = "auto"


def _stats(x: torch.Tensor) -> dict:
    x = x.double()
    q = torch.quantile(x, torch.tensor([0.05, 0.5, 0.95], dtype=x.dtype))
    return {
        "n": int(x.numel()),
        "min": float(x.min()),
        "max": float(x.max()),
        "mean": float(x.mean()),
        "std": float(x.std()) if x.numel() > 1 else 0.0,
        "q05": float(q[0]),
        "q50": float(q[1]),
        "q95": float(q[2]),
    }


def fit(own: torch.Tensor, other: torch.Tensor) -> dict:
    """Calibration statistics from raw scores on own-class and other-class validation samples."""
    if own.numel() == 0 or other.numel() == 0:
        raise ValueError("calibration needs scores of both own-class and other-class samples")
    return {"own": _stats(own), "other": _stats(other), "platt": _platt(own.double(), other.double())}


def constant(calibration: dict) -> bool:
    """Whether a module's statistics say it gave every held-out image, of its class or not, the same score.

    Such a module (its split kept no channel of a layer it needs, so its head reads constant features)
    still ranks right next to its own split's modules, which score their classes above it; next to other
    parents' modules it takes every image they score lower.
    """
    try:
        values = [float(calibration[side][key]) for side in ("own", "other") for key in ("min", "max")]
    except (KeyError, TypeError, ValueError):
        return False
    return negligible(max(values) - min(values), max(abs(v) for v in values))


def negligible(spread: float, magnitude: float) -> bool:
    """Whether scores that differ by at most ``spread`` are the same, at float32 rounding of values
    as large as ``magnitude``: the one tolerance for 'this module gives every image one score'."""
    return spread <= 1e-6 * max(1.0, magnitude)


def _platt(own: torch.Tensor, other: torch.Tensor) -> dict:
    """Balanced logistic regression of 'own class' on the score: sigmoid(a * s + b)."""
    s = torch.cat([own, other])
    y = torch.cat([torch.ones_like(own), torch.zeros_like(other)])
    w = torch.cat([torch.full_like(own, 0.5 / own.numel()), torch.full_like(other, 0.5 / other.numel())])
    mu, sd = s.mean(), s.std().clamp_min(1e-6)
    z = (s - mu) / sd
    params = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    def loss():
        logits = params[0] * z + params[1]
        # a small ridge keeps perfectly separable scores from pushing the slope to infinity
        data = (w * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
        return data + 1e-4 * params[0] ** 2

    minimise(params, loss, max_iter=200)
    a, b = params.detach()
    return {"a": float(a / sd), "b": float(b - a * mu / sd)}


def apply(method: str, scores: torch.Tensor, calibration: dict, head_type: str | None = None,
          gate: torch.Tensor | None = None) -> torch.Tensor:
    """Calibrated scores [B] from raw scores [B] of a module whose head is ``head_type``; ``gate`` [B] is
    the module's exposure-gate probability, which the ``exposed`` rule needs."""
    if method == "none":
        return scores
    if method == "minmax":
        return _rescaled(scores, calibration["own"]["min"], calibration["own"]["max"])
    if method == "means":
        return _rescaled(scores, calibration["other"]["mean"], calibration["own"]["mean"])
    if method == "platt":
        p = calibration["platt"]
        return torch.sigmoid(scores * p["a"] + p["b"])
    if method == "vote":
        mine = torch.sigmoid(scores) if head_type == "margin" else apply("platt", scores, calibration)
        return mine + (mine > 0.5).to(mine.dtype)
    if method in NEEDS_GATE:
        if gate is None:
            raise ValueError(f"the {method} rule needs the module's exposure gate")
        return apply(NEEDS_GATE[method], scores, calibration) * gate
    raise ValueError(f"unknown calibration {method!r}; use one of {', '.join(METHODS)}")


def _rescaled(scores: torch.Tensor, zero: float, one: float) -> torch.Tensor:
    """Scores mapped linearly so that ``zero`` becomes 0 and ``one`` becomes 1."""
    return (scores - zero) / max(one - zero, 1e-12)
