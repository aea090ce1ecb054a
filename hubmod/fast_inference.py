"""Inference copies of module backbones: BatchNorm folded into the convolutions, channels-last memory.

A module is a narrow slice of its parent, and narrow convolutions in the default NCHW layout run far
below the speed their multiply-accumulates suggest, much of the time going to BatchNorm and
max-pooling. Folding each BatchNorm into the convolution before it (torch.fx's ``fuse``) and running
in channels-last memory speeds narrow modules up far more than their full-width parent
(BENCHMARKS.md, inference). The copy is rebuilt whenever the module's weights change, so training or
loading new weights never meets a stale copy.

Modules cut from one parent share their stem: a split keeps the first convolution and its
BatchNorm as they are in the parent (``stem_layers`` in hubmod.channels), so each module's first
layer is a subset of the same filters. For a network as small as resnet18 on 28 px images that
layer is cheap in multiply-accumulates but not in time, since it writes the largest feature map;
``SharedStems`` runs it (and the activation and pooling after it) once for all modules of a
composed classifier and hands each module its own channels.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from itertools import chain

import torch
import torch.fx as fx
import torch.nn as nn


def inference_copy(backbone: nn.Module) -> nn.Module:
    """An eval-mode copy of ``backbone`` with BatchNorm folded in (when torch.fx can trace it), channels-last."""
    from torch.fx.experimental.optimization import fuse

    net = copy.deepcopy(backbone).eval()
    with contextlib.suppress(Exception):  # not traceable by torch.fx: the unfused copy computes the same
        net = fuse(net, inplace=True)
    return net.to(memory_format=torch.channels_last)


_NOT_SPLIT = object()  # FastBackbone: the current copy has not been cut into stem and rest yet


class FastBackbone:
    """The inference copy of one backbone, kept while the backbone's weights stay the same.

    Deliberately not an ``nn.Module``: the copy must not appear in state dicts, parameter lists or
    saved files, which hold the original weights only.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._net: nn.Module | None = None
        self._stem: Stem | None | object = _NOT_SPLIT
        self.version = 0  # counts rebuilds, so plans made from an older copy can tell they are stale

    def current(self, backbone: nn.Module) -> nn.Module:
        """The inference copy of ``backbone`` as its weights are now."""
        key = tuple((t.data_ptr(), t._version, t.dtype) for t in chain(backbone.parameters(), backbone.buffers()))
        if key != self._key or self._net is None:
            self._net, self._key, self._stem = inference_copy(backbone), key, _NOT_SPLIT
            self.version += 1
        return self._net

    @property
    def net(self) -> nn.Module | None:
        """The copy as ``current`` or ``stem`` last made sure of (no check against the weights)."""
        return self._net

    def stem(self, backbone: nn.Module) -> Stem | None:
        """The current copy's first convolution and what follows it, when it can run apart (``split_stem``).

        Cut only when asked: a module running alone never needs it.
        """
        self.current(backbone)
        if self._stem is _NOT_SPLIT:
            self._stem = split_stem(self._net)
        return self._stem

    def __call__(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self.current(backbone)(channels_last(x))


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


# Layers that act on each channel alone: a stem followed by them still yields each channel independently.
_PER_CHANNEL = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.MaxPool2d, nn.AvgPool2d,
                nn.Identity)


@dataclass
class Stem:
    """An inference copy cut in two: its first convolution with the per-channel layers after it, and the rest."""

    conv: nn.Conv2d
    after: list[nn.Module]
    rest: fx.GraphModule
    signature: tuple  # what two stems must agree on to run as one convolution

    def rows(self) -> torch.Tensor:
        """[out_channels, in*k*k + 1]: each output channel's filter and bias, the unit stems share by."""
        w = self.conv.weight.detach()
        b = self.conv.bias.detach() if self.conv.bias is not None else torch.zeros(len(w), dtype=w.dtype,
                                                                                    device=w.device)
        return torch.cat([w.flatten(1), b[:, None]], 1)


def split_stem(net: nn.Module) -> Stem | None:
    """Cut a traced inference copy after its first convolution and the per-channel layers that follow it.

    None when the copy was not traced, or its input does not go into one plain convolution alone.
    """
    if not isinstance(net, fx.GraphModule):
        return None
    inputs = [n for n in net.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1 or len(inputs[0].users) != 1:
        return None
    first = next(iter(inputs[0].users))
    conv = net.get_submodule(first.target) if first.op == "call_module" else None
    if (type(conv) is not nn.Conv2d or conv.groups != 1
            or conv.padding_mode != "zeros" or first.args != (inputs[0],) or first.kwargs):
        return None
    nodes, after = [first], []
    while len(nodes[-1].users) == 1:
        nxt = next(iter(nodes[-1].users))
        mod = net.get_submodule(nxt.target) if nxt.op == "call_module" else None
        if type(mod) not in _PER_CHANNEL or nxt.args != (nodes[-1],) or nxt.kwargs:
            break
        nodes.append(nxt)
        after.append(mod)
    rest = copy.deepcopy(net)
    graph = rest.graph
    by_name = {n.name: n for n in graph.nodes}
    with graph.inserting_before(by_name[inputs[0].name]):
        stem_out = graph.placeholder("stem_out")
    by_name[nodes[-1].name].replace_all_uses_with(stem_out)
    for n in reversed(nodes):
        graph.erase_node(by_name[n.name])
    graph.erase_node(by_name[inputs[0].name])
    rest.delete_all_unused_submodules()
    rest.recompile()
    w = conv.weight
    signature = (conv.in_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, w.dtype, w.device,
                 tuple(repr(m) for m in after))
    return Stem(conv, after, rest, signature)


@dataclass
class _Group:
    """Modules whose stems run as one: the union of their filters, and where each module's channels are."""

    conv: nn.Conv2d
    after: list[nn.Module]
    members: list[tuple[int, torch.Tensor, fx.GraphModule]]  # (module position, its channels in the union, rest)


class SharedStems:
    """Runs the backbones of several modules, computing the stems they share once.

    Modules whose stems agree in shape and read the same input are grouped; the distinct filters of
    a group make one convolution, and each module continues from its own channels of the result.
    A group is only formed when the union is at most twice as wide as the widest member (modules
    of one parent), since one convolution over unrelated filters is slower than separate ones.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._groups: list[_Group] = []
        self._alone: list[int] = []

    def __call__(self, fast: Sequence[FastBackbone], backbones: Sequence[nn.Module],
                 inputs: Sequence[torch.Tensor], input_keys: Sequence[Hashable]) -> list[torch.Tensor]:
        """Backbone outputs, one per module; ``input_keys`` say which modules read the same input."""
        stems = [f.stem(b) for f, b in zip(fast, backbones, strict=True)]
        key = (tuple(id(f) for f in fast), tuple(f.version for f in fast), tuple(input_keys))
        if key != self._key:
            self._plan(stems, input_keys)
            self._key = key
        out: list[torch.Tensor | None] = [None] * len(fast)
        for i in self._alone:  # stem() above brought every copy up to date
            out[i] = fast[i].net(channels_last(inputs[i]))
        for g in self._groups:
            y = g.conv(channels_last(inputs[g.members[0][0]]))
            for layer in g.after:
                y = layer(y)
            for i, channels, rest in g.members:
                out[i] = rest(channels_last(y.index_select(1, channels)))
        return out

    def _plan(self, stems: list[Stem | None], input_keys: Sequence[Hashable]) -> None:
        by_kind: dict[tuple, list[int]] = {}
        for i, (s, k) in enumerate(zip(stems, input_keys, strict=True)):
            if s is not None:
                by_kind.setdefault((k, s.signature), []).append(i)
        self._groups, grouped = [], set()
        for members in by_kind.values():
            rows = [stems[i].rows() for i in members]
            union, where = torch.unique(torch.cat(rows), dim=0, return_inverse=True)
            if len(members) < 2 or len(union) > 2 * max(len(r) for r in rows):
                continue
            first = stems[members[0]].conv
            conv = nn.Conv2d(first.in_channels, len(union), first.kernel_size, first.stride, first.padding,
                             first.dilation, device=union.device, dtype=union.dtype)
            with torch.no_grad():
                conv.weight.copy_(union[:, :-1].reshape(len(union), *first.weight.shape[1:]))
                conv.bias.copy_(union[:, -1])
            conv = conv.eval().to(memory_format=torch.channels_last)
            offsets = torch.tensor([0, *(len(r) for r in rows)]).cumsum(0).tolist()
            self._groups.append(_Group(conv, [copy.deepcopy(m) for m in stems[members[0]].after], [
                (i, where[offsets[n] : offsets[n + 1]].clone(), stems[i].rest) for n, i in enumerate(members)]))
            grouped.update(members)
        self._alone = [i for i in range(len(stems)) if i not in grouped]


def use_fast_path(module: nn.Module) -> bool:
    """Inference only: not while training, computing gradients, or being traced for export."""
    return not (module.training or torch.is_grad_enabled() or torch.jit.is_tracing()
                or torch.onnx.is_in_onnx_export())
