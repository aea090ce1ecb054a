"""Random flips and shifts of image batches, drawn from a generator so a seed gives the same images.

Used to train parents (hubmod.training) and, for its first ``augment_epochs``, to distil them into
modules (hubmod.distillation). The draw and its application are separate so several processes can
apply one draw to their shares of a batch.
"""

from __future__ import annotations

import torch


def draw_augment(n: int, gen: torch.Generator) -> tuple[torch.Tensor, tuple[int, int]]:
    """Random horizontal flips for ``n`` images and one shift of up to 2 px for the batch."""
    flip = torch.rand(n, generator=gen) < 0.5
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return flip, (dy, dx)


def apply_augment(x: torch.Tensor, flip: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    """``x`` [B, C, H, W] with the drawn images flipped and the whole batch rolled by ``shift``."""
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    return torch.roll(x, shifts=shift, dims=(-2, -1))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``x`` flipped and shifted by a fresh draw from ``gen``."""
    return apply_augment(x, *draw_augment(len(x), gen))
