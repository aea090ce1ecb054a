"""The small convex fits hubmod makes (Platt scaling, outlier-exposure gates, combiners), minimised one way."""

from __future__ import annotations

from collections.abc import Callable

import torch


def minimise(params: torch.Tensor, loss_fn: Callable[[], torch.Tensor], max_iter: int = 200, **options) -> None:
    """Minimise ``loss_fn()`` over ``params`` (one tensor that requires grad) in place, with L-BFGS and a
    strong Wolfe line search: deterministic, and exact enough for problems of a few thousand parameters.
    ``options`` go to ``torch.optim.LBFGS`` (tolerances, history size)."""
    opt = torch.optim.LBFGS([params], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe", **options)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss_fn()
        value.backward()
        return value

    opt.step(closure)
