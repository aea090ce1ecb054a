"""Running a computation over many images: in chunks that fit in memory, with an optional progress bar."""

from __future__ import annotations

from collections.abc import Callable

import torch


def progress_bar(enabled: bool, total: int, desc: str, unit: str):
    """A long step's progress bar (tqdm; off when ``enabled`` is false, e.g. in tests and --json runs)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)


def in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int = 512) -> torch.Tensor:
    """``fn(x)`` computed ``size`` images at a time: a whole split's images at once would not fit in memory."""
    return torch.cat([fn(x[i : i + size]) for i in range(0, len(x), size)])
