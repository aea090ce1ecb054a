"""What a module costs, as a differentiable function of its masks: kept kernels or multiply-accumulates.

The search presses ``alpha`` times this cost down while the heads keep accuracy up; the choice ranks
mask snapshots by it (hubmod.splitters.gradsplitter.selection).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from ...channels import ChannelGroup, conv_macs, is_depthwise

Masks = dict[str, torch.Tensor]  # channel group name -> [modules, units] binary masks


def kernel_share(groups: list[ChannelGroup]) -> Callable[[Masks], torch.Tensor]:
    """[k] share of the parent's conv kernels each module keeps, as a function of its masks (the paper's cost)."""
    kernels_per_unit = [g.kernels_per_unit for g in groups]
    total_kernels = float(sum(g.kernels for g in groups))

    def share(bin_masks: Masks) -> torch.Tensor:
        kept = sum(bin_masks[g.name].sum(1) * per for g, per in zip(groups, kernels_per_unit, strict=True))
        return kept / total_kernels  # [k]

    return share


def mac_share(model: nn.Module, groups: list[ChannelGroup],
              example: torch.Tensor) -> Callable[[Masks], torch.Tensor]:
    """[k] share of the parent's conv multiply-accumulates each module keeps, as a function of its masks.

    A convolution's cost is its full cost times the kept fraction of its output channels and of its
    input channels (a product, so pruning both sides of a layer counts twice, as it should; a
    depthwise convolution's inputs are its outputs, counted once). Inputs that come from several
    groups (after a concatenation) count each group's share. It is differentiable in the masks, so
    alpha can press on inference cost rather than on kernel count: a kernel of an early,
    high-resolution layer costs many times one of the last.
    """
    macs = conv_macs(model, example)
    modules = dict(model.named_modules())
    out_of = {c: i for i, g in enumerate(groups) for c in g.conv_modules}
    reads: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        for c in g.in_convs:
            if not is_depthwise(modules[c]):
                reads.setdefault(c, []).append(i)
    terms = [(float(m), out_of.get(c), reads.get(c, []), modules[c].in_channels) for c, m in macs.items()]
    total = sum(m for m, _, _, _ in terms)

    def share(bin_masks: Masks) -> torch.Tensor:
        kept = [bin_masks[g.name].sum(1) / g.units for g in groups]  # [k] per group
        out = 0.0
        for m, o, ins, width in terms:
            term = torch.full_like(kept[0], m)
            if o is not None:
                term = term * kept[o]
            if ins:
                fixed = width - sum(groups[i].size for i in ins)  # input channels no group removes
                term = term * (fixed + sum(kept[i] * groups[i].size for i in ins)) / width
            out = out + term
        return out / total

    return share


def mean_share(*shares: Callable[[Masks], torch.Tensor]) -> Callable[[Masks], torch.Tensor]:
    """[k] the mean of several shares: pressing on kernels and MACs together.

    The kernel share falls fastest in the wide late layers, the MAC share in the early high-resolution
    ones; their mean presses on both, for modules small in size and in inference cost at once.
    """
    def share(bin_masks: Masks) -> torch.Tensor:
        return sum(s(bin_masks) for s in shares) / len(shares)

    return share


def as_extracted(bin_masks: Masks) -> Masks:
    """The masks as extraction will count them: a group with no kept channel keeps one (zeroed) channel."""
    out = {}
    for name, m in bin_masks.items():
        m = m.clone()
        m[m.sum(1) == 0, 0] = 1.0
        out[name] = m
    return out


def top_up(values: Masks, cost_of: Callable[[Masks], float], budget: float) -> Masks:
    """Binary masks of real-valued ``values`` at the lowest threshold (<= 0) whose mean cost stays within ``budget``.

    Cost only grows as the threshold falls, so bisection finds it; at threshold 0 these are the masks
    the search itself binarises to.
    """
    def at(depth: float) -> Masks:
        return {name: (v > -depth).to(v.dtype) for name, v in values.items()}

    low, high = 0.0, max(float(-v.min()) for v in values.values()) + 1.0  # at ``high`` every channel is kept
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if cost_of(at(mid)) <= budget else (low, mid)
    return at(low)
