"""Channel groups of any timm CNN, masks over them, and physical extraction — from torch-pruning.

torch-pruning's DependencyGraph traces the model and groups every set of channels that must be
kept or removed together (a conv's outputs, its BatchNorm, the next layer's inputs, and — in
residual nets — every conv feeding the same addition). hubmod never writes per-architecture code:
a module is "these channels of these groups", masks act on groups, and extraction asks
torch-pruning to remove the rest. A group is named by its root module, which is stable for a given
architecture, so a module is rebuilt from the parent architecture plus the kept indices alone.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .calibration import negligible
from .errors import InvalidRepoError


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that are kept or removed together.

    Channels are kept in whole *units*. Usually a unit is one channel. When the group feeds or
    leaves a grouped convolution (``groups`` = g, neither 1 nor depthwise), each of the g blocks
    of the layer must keep the same channels, so a unit is one position in every block: unit u is
    channels u, u + units, u + 2 * units, ... (``repeat`` of them). Methods decide per unit;
    `expand` and `channels` turn their decisions into channels.
    """

    name: str  # the root module's name
    size: int
    out_modules: tuple[str, ...]  # modules whose outputs carry these channels (masked in training)
    conv_modules: tuple[str, ...]  # convolutions among them: each kept channel keeps one kernel of each
    feeds_classifier: bool = False  # these channels are the pooled features entering the classifier
    in_convs: tuple[str, ...] = ()  # convolutions that read these channels as their inputs
    repeat: int = 1  # channels per unit (the blocks of the grouped convolutions this group meets)
    # out modules whose channel dimension holds more than this group's channels (a concatenation):
    # where this group's channels sit in it, in the group's order
    positions: tuple[tuple[str, tuple[int, ...]], ...] = ()
    feature_positions: tuple[int, ...] = ()  # where the channels sit among the classifier's inputs

    @property
    def kernels(self) -> int:
        return self.size * len(self.conv_modules)

    @property
    def units(self) -> int:
        return self.size // self.repeat

    @property
    def kernels_per_unit(self) -> int:
        return self.repeat * len(self.conv_modules)

    def expand(self, unit_values: torch.Tensor) -> torch.Tensor:
        """[..., units] -> [..., size]: each channel takes its unit's value."""
        if self.repeat == 1:
            return unit_values
        return unit_values.repeat(*([1] * (unit_values.ndim - 1)), self.repeat)

    def pool(self, channel_values: torch.Tensor) -> torch.Tensor:
        """[..., size] -> [..., units]: the mean over each unit's channels."""
        if self.repeat == 1:
            return channel_values
        return channel_values.reshape(*channel_values.shape[:-1], self.repeat, self.units).mean(-2)

    def channels(self, units: Iterable[int]) -> list[int]:
        """The channels of the given units, sorted."""
        return sorted(int(u) + k * self.units for u in set(units) for k in range(self.repeat))

    def whole_units(self, channels: Iterable[int]) -> bool:
        """Whether ``channels`` keep every channel of each unit they touch."""
        kept = set(channels)
        return kept == set(self.channels({c % self.units for c in kept}))


@dataclass(frozen=True)
class FixedGroup:
    """Channels no module may remove, and why (a coupling hubmod cannot prune exactly)."""

    name: str
    size: int
    reason: str


# Modules a group's channels may pass through and still be removed exactly: a removed channel
# contributes nothing downstream, which is what masking it to zero does in training.
_PRUNABLE_TYPES = (nn.Conv2d, nn.modules.batchnorm._BatchNorm)


def _dependency_graph(model: nn.Module, example_input: torch.Tensor):
    import torch_pruning as tp

    was_training = model.training
    model.eval()  # tracing must not touch BatchNorm statistics
    with torch.enable_grad():
        dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    model.train(was_training)
    return dg


def classifier_of(model: nn.Module) -> nn.Module | None:
    """A timm model's classifier (``get_classifier()``), or None when it has none."""
    getter = getattr(model, "get_classifier", None)
    clf = getter() if callable(getter) else None
    return clf if isinstance(clf, nn.Module) else None


def is_depthwise(conv: nn.Module) -> bool:
    """torch-pruning's own test: such a convolution's inputs and outputs are pruned together."""
    return isinstance(conv, nn.Conv2d) and conv.groups == conv.out_channels and conv.out_channels > 1


def analyse_channels(model: nn.Module, example_input: torch.Tensor) -> tuple[list[ChannelGroup], list[FixedGroup]]:
    """The channel groups modules may prune, rooted at convolutions, and those that must stay whole.

    The classifier's outputs are never grouped. A group is prunable when every layer its channels
    pass through removes them exactly (convolutions, BatchNorm, the classifier's inputs); a norm
    over channels (LayerNorm, GroupNorm) or any other layer type makes it fixed. The model's
    parameters must still require grad: torch-pruning traces through autograd.
    """
    dg = _dependency_graph(model, example_input)
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    clf = classifier_of(model)
    ignored = [clf] if clf is not None else []
    groups, fixed = [], []
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        root = group[0].dep.target.module
        size = len(group[0].idxs)
        outs, convs, ins, feeds, repeat = [], [], [], False, 1
        positions: dict[str, tuple[int, ...]] = {}
        feature_positions: tuple[int, ...] = ()
        blocker = None
        for item in group:
            mod = item.dep.target.module
            if mod not in names:  # torch-pruning's own nodes for additions, concatenations, reshapes
                continue
            name = names[mod]
            reads = dg.is_in_channel_pruning_fn(item.dep.handler)
            writes = dg.is_out_channel_pruning_fn(item.dep.handler)
            idxs = tuple(int(i) for i in item.idxs)
            if mod is clf:
                feeds = feeds or reads
                feature_positions = idxs
                continue
            if not isinstance(mod, _PRUNABLE_TYPES):
                blocker = blocker or f"{type(mod).__name__} {name}"
                continue
            if isinstance(mod, nn.Conv2d) and mod.groups > 1 and not is_depthwise(mod):
                repeat = math.lcm(repeat, mod.groups)
            if writes and name not in outs:
                outs.append(name)
                if isinstance(mod, nn.Conv2d):
                    convs.append(name)
                width = mod.out_channels if isinstance(mod, nn.Conv2d) else mod.num_features
                if idxs != tuple(range(size)) or width != size:
                    positions[name] = idxs
            if isinstance(mod, nn.Conv2d) and reads and name not in ins:
                ins.append(name)
        if blocker is not None or size % repeat:
            reason = (f"its channels pass through {blocker}, which hubmod cannot prune exactly" if blocker
                      else f"its size {size} does not split into the {repeat} blocks of its grouped convolutions")
            fixed.append(FixedGroup(names[root], size, reason))
            continue
        groups.append(ChannelGroup(names[root], size, tuple(outs), tuple(convs), feeds, tuple(ins), repeat,
                                   tuple(sorted(positions.items())), feature_positions if feeds else ()))
    groups.sort(key=lambda g: order[g.name])  # forward order, for tables and charts
    fixed.sort(key=lambda g: order[g.name])
    if not groups:
        reasons = "; ".join(sorted({f.reason for f in fixed})) or "none of its convolutions can be grouped"
        raise InvalidRepoError(
            f"hubmod cannot split {type(model).__name__}: no convolution channels can be removed exactly ({reasons})"
        )
    return groups, fixed


def channel_groups(model: nn.Module, example_input: torch.Tensor) -> list[ChannelGroup]:
    """The prunable channel groups of ``model`` (see `analyse_channels`)."""
    return analyse_channels(model, example_input)[0]


def drop_classifier(model: nn.Module) -> nn.Module:
    """Replace a timm model's classifier with Identity, in place, so it outputs pooled features.

    timm models apply the classifier last in ``forward_head``, so this turns ``model(x)`` into
    ``forward_head(..., pre_logits=True)`` for every architecture without touching its code.
    """
    clf = classifier_of(model)
    if clf is None or isinstance(clf, nn.Identity):
        return model
    for name, mod in model.named_modules():
        if mod is clf:
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, nn.Identity())
            return model
    return model


def feature_channels(groups: Sequence[ChannelGroup], kept: Mapping[str, Sequence[int]], width: int) -> list[int]:
    """Which of the parent's ``width`` pooled features a module with ``kept`` channels still has.

    Features that no prunable group carries are always kept; those a group carries are kept with
    its channels.
    """
    owned: dict[int, tuple[str, int]] = {}
    for g in groups:
        if g.feeds_classifier:
            if len(g.feature_positions) != g.size or max(g.feature_positions, default=0) >= width:
                raise InvalidRepoError(f"cannot map the classifier's {width} inputs to channel group {g.name!r}; "
                                       "split with head_input=logits")
            owned.update({pos: (g.name, c) for c, pos in enumerate(g.feature_positions)})
    keep = {(name, int(c)) for name, chans in kept.items() for c in chans}
    return [i for i in range(width) if i not in owned or owned[i] in keep]


def count_kernels(model: nn.Module) -> int:
    """Conv kernels (output channels of every Conv2d) — the unit the papers count."""
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_macs(model: nn.Module, example_input: torch.Tensor) -> dict[str, int]:
    """Multiply-accumulates of each convolution for one image, from the shapes a forward pass gives."""
    names = {m: n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    out: dict[str, int] = {}

    def hook(mod: nn.Conv2d, _inputs, y: torch.Tensor) -> None:
        kh, kw = mod.kernel_size
        out[names[mod]] = mod.out_channels * (mod.in_channels // mod.groups) * kh * kw * y.shape[-2] * y.shape[-1]

    _hooked_forward(model, example_input[:1], names, hook)
    return out


def _hooked_forward(model: nn.Module, example: torch.Tensor, modules: Iterable[nn.Module],
                    hook: Callable[[nn.Module, tuple, object], None]) -> None:
    """One eval-mode forward of ``example`` with ``hook`` on ``modules``; the model's mode is restored
    and the hooks removed, so measuring a model never changes it."""
    handles = [m.register_forward_hook(hook) for m in modules]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def count_macs(model: nn.Module, example_input: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of one image, counted by torch-pruning."""
    import torch_pruning as tp

    was_training = model.training
    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(model, example_input[:1])
    model.train(was_training)  # count_ops_and_params leaves the model in train mode
    return int(macs)


def extract(
    parent: nn.Module,
    groups: Sequence[ChannelGroup],
    kept: Mapping[str, Sequence[int]],
    example_input: torch.Tensor,
) -> tuple[nn.Module, dict[str, list[int]], list[str]]:
    """A physically smaller copy of ``parent`` keeping only ``kept`` channels of each group.

    A group with nothing kept cannot be emptied (layers need one channel), so its first unit is kept
    and its parameters zeroed, which gives the same outputs as removing it. Returns the model, the
    kept indices actually used, and the names of the groups kept as one zeroed unit.
    """
    model = copy.deepcopy(parent)
    for m in model.modules():  # hooks (e.g. active GroupMasks) must not follow the copy
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    for p in model.parameters():
        p.requires_grad_(True)
    final: dict[str, list[int]] = {}
    zeroed: list[str] = []
    for g in groups:
        idx = sorted({int(i) for i in kept.get(g.name, range(g.size))})
        if not idx:
            idx, zeroed = g.channels([0]), [*zeroed, g.name]
        final[g.name] = idx
    prune_to(model, groups, final, example_input)
    with torch.no_grad():
        for t in zeroed_tensors(model, groups, zeroed, final):
            t.zero_()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), final, zeroed


def extract_seeing(
    parent: nn.Module,
    groups: Sequence[ChannelGroup],
    kept: Mapping[str, Sequence[int]],
    example_input: torch.Tensor,
    outputs: Callable[[nn.Module], torch.Tensor],
) -> tuple[nn.Module, dict[str, list[int]], list[str], bool]:
    """``extract``, except that a module which could not see the image keeps one live unit per empty group.

    A group with nothing kept is kept as one zeroed unit. In a residual network that silences one
    branch; but when every path from the input to the head crosses such a group (any empty group of
    a plain chain), the module gives every image the same output. Within its split that can still
    compose (the other modules score their own classes above it); next to other parents' modules it
    takes every image they score lower. So when ``outputs(module)`` (its outputs on a batch of
    different images) does not vary, each empty group keeps its first unit, unzeroed, and the module
    is extracted again. Returns extract's three results and whether that happened.
    """
    net, final, zeroed = extract(parent, groups, kept, example_input)
    if not zeroed or not constant_outputs(outputs(net)):
        return net, final, zeroed, False
    given = {g.name: g.channels([0]) for g in groups if g.name in zeroed}
    net, final, zeroed = extract(parent, groups, {**final, **given}, example_input)
    return net, final, zeroed, True


def constant_outputs(out: torch.Tensor) -> bool:
    """Whether a batch of outputs ([images, ...]) is the same for every image."""
    if len(out) < 2:
        return False
    return negligible(float((out - out[:1]).abs().amax()), float(out.abs().amax()))


def zeroed_tensors(model: nn.Module, groups: Sequence[ChannelGroup], zeroed: Sequence[str],
                   kept: Mapping[str, Sequence[int]]) -> list[torch.Tensor]:
    """The weights and biases (or views of them) carrying the one zeroed unit of each group in ``zeroed``.

    Kept at zero they make the unit contribute nothing, exactly as if it were removed. ``kept`` are
    the channels extraction kept of every group: a layer that holds the channels of several groups
    (after a concatenation) has them at new positions once the others' removed channels are gone.
    """
    modules = dict(model.named_modules())
    removed: dict[str, set[int]] = {}
    for g in groups:
        keep = set(kept.get(g.name, range(g.size)))
        for mname, idxs in g.positions:
            removed.setdefault(mname, set()).update(idxs[c] for c in range(g.size) if c not in keep)
    out = []
    for g in groups:
        if g.name not in zeroed:
            continue
        shared = dict(g.positions)
        for mname in g.out_modules:
            tensors = [t for attr in ("weight", "bias") if isinstance(t := getattr(modules[mname], attr, None),
                                                                       torch.Tensor)]
            if mname not in shared:
                out += tensors
                continue
            for c in kept[g.name]:
                old = shared[mname][c]
                new = old - sum(1 for r in removed[mname] if r < old)
                out += [t[new : new + 1] for t in tensors]
    return out


def prune_to(
    model: nn.Module,
    groups: Sequence[ChannelGroup],
    kept: Mapping[str, Sequence[int]],
    example_input: torch.Tensor,
) -> nn.Module:
    """Remove, in place, every channel of every group that is not in ``kept`` (all kept if absent)."""
    import torch_pruning as tp

    dg = _dependency_graph(model, example_input)
    modules = dict(model.named_modules())
    for g in groups:
        if g.name not in kept:
            continue
        root = modules.get(g.name)
        if not isinstance(root, nn.Conv2d) or root.out_channels != g.size:
            raise InvalidRepoError(
                f"channel group {g.name!r} does not match the architecture (expected a conv with "
                f"{g.size} outputs); the module was made from a different parent"
            )
        keep = set(kept[g.name])
        if not keep or min(keep) < 0 or max(keep) >= g.size:
            raise InvalidRepoError(f"kept channels of {g.name!r} are outside 0..{g.size - 1}")
        if not g.whole_units(keep):
            raise InvalidRepoError(f"kept channels of {g.name!r} do not keep the same positions in each of the "
                                   f"{g.repeat} blocks of its grouped convolutions")
        removed = [i for i in range(g.size) if i not in keep]
        if removed:
            dg.get_pruning_group(root, tp.prune_conv_out_channels, idxs=removed).prune()
    return model


def rebuild(
    fresh: nn.Module,
    group_sizes: Mapping[str, int],
    kept: Mapping[str, Sequence[int]],
    example_input: torch.Tensor,
) -> nn.Module:
    """Re-create a module's architecture from a freshly built parent and its stored kept indices.

    The groups are re-derived from the graph and checked against the stored sizes, so a module made
    from a different architecture fails here with a clear message instead of inside torch.
    """
    groups = channel_groups(fresh, example_input)
    by_name = {g.name: g for g in groups}
    for name, size in group_sizes.items():
        if name not in by_name or by_name[name].size != size:
            raise InvalidRepoError(
                f"channel group {name!r} ({size} channels) is not in the parent architecture; "
                "config.json does not match its parent"
            )
    return prune_to(fresh, groups, kept, example_input)


def stem_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The convolution that reads the input, and the BatchNorm that reads its output (when there are such).

    Whatever a module drops further on, these see what they saw in the parent; a split leaves
    them as they are, so the modules of one parent share their first layer and a composed
    classifier can run it once for all of them (hubmod.fast_inference.SharedStems).
    """
    found: list[nn.Module] = []
    conv_out: list[torch.Tensor] = []

    def hook(mod: nn.Module, inputs: tuple, output: object) -> None:
        first = inputs[0] if inputs else None
        if not found and isinstance(mod, nn.Conv2d) and first is example:
            found.append(mod)
            conv_out.append(output)
        elif len(found) == 1 and isinstance(mod, nn.modules.batchnorm._BatchNorm) and conv_out and first is conv_out[0]:
            found.append(mod)

    _hooked_forward(model, example, [m for m in model.modules() if m is not model], hook)
    return found


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 256,
                          keep: tuple[nn.Module, ...] | list[nn.Module] = ()) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on ``x`` (weights untouched), in place.

    Removing channels shifts what the next layers see, so the parent's statistics no longer
    centre them; re-estimating them on a few thousand images (adaptive BN, as in EagleEye)
    recovers much of the lost accuracy without any training. BatchNorms in ``keep`` (the stem's,
    which sees what it saw in the parent) keep their statistics.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and not any(m is k for k in keep)]
    if not norms:
        return model
    momenta = [bn.momentum for bn in norms]
    model.eval()  # the kept ones stay in eval mode
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
        bn.train()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            if len(x[i : i + batch_size]) > 1:
                model(x[i : i + batch_size])
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    return model.eval()


class GroupMasks:
    """Forward hooks that multiply each group's channels by per-module masks.

    With ``n`` modules, the model is fed ``n`` copies of a batch stacked along the batch dimension
    and ``masks[g]`` has shape [n, units of g]: copy ``i`` runs as module ``i``, each unit's value
    applying to all its channels. Masking every output that carries a group's channels (conv, its
    norm, ...) makes a zeroed channel contribute exactly nothing downstream, which is what removing
    it does. A layer holding several groups' channels (after a concatenation) is masked at each
    group's positions only.
    """

    def __init__(self, model: nn.Module, groups: Sequence[ChannelGroup]):
        self.model = model
        self.groups = list(groups)
        self.masks: dict[str, torch.Tensor] = {}
        self._per_output: dict[tuple[str, str], torch.Tensor] = {}
        self._handles = []
        self._modules = dict(model.named_modules())

    def set(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Unit masks [n, units] per group (differentiable: gradients flow back to them)."""
        self.masks = dict(masks)
        self._per_output = {}
        for g in self.groups:
            m = self.masks.get(g.name)
            if m is None:
                continue
            full = g.expand(m)
            for mname, idxs in g.positions:
                width = self._width(mname)
                index = torch.tensor(idxs, device=full.device)
                self._per_output[g.name, mname] = torch.ones(full.shape[0], width, dtype=full.dtype,
                                                             device=full.device).index_copy(1, index, full)
            self._per_output[g.name, ""] = full

    def _width(self, name: str) -> int:
        mod = self._modules[name]
        return mod.out_channels if isinstance(mod, nn.Conv2d) else mod.num_features

    def _hook(self, group: ChannelGroup, module_name: str):
        key = (group.name, module_name if module_name in dict(group.positions) else "")

        def hook(_module, _inputs, out):
            m = self._per_output.get(key)
            if m is None:
                return out
            n, c = m.shape
            shape = (n, 1, c) + (1,) * (out.ndim - 2)
            return (out.reshape(n, out.shape[0] // n, *out.shape[1:]) * m.reshape(shape)).reshape(out.shape)

        return hook

    @contextlib.contextmanager
    def active(self) -> Iterator[GroupMasks]:
        for g in self.groups:
            for name in g.out_modules:
                self._handles.append(self._modules[name].register_forward_hook(self._hook(g, name)))
        try:
            yield self
        finally:
            for h in self._handles:
                h.remove()
            self._handles.clear()


def group_activations(model: nn.Module, groups: list[ChannelGroup], x: torch.Tensor,
                      per_image: bool) -> dict[str, torch.Tensor]:
    """Each group's mean post-ReLU activation per unit, averaged over the group's coupled outputs.

    [units] over all of ``x`` or (``per_image``) [len(x), units]. A layer holding several groups'
    channels (after a concatenation) contributes to each group at its positions.
    """
    modules = dict(model.named_modules())
    sums: dict[str, torch.Tensor] = {}

    def hook(g: ChannelGroup, positions: tuple[int, ...] | None):
        def fn(_m, _i, out):
            a = torch.relu(out)
            v = a.mean(dim=tuple(range(2, a.ndim))) if per_image else a.mean(dim=tuple(d for d in range(a.ndim)
                                                                                     if d != 1))
            if positions is not None:
                v = v[..., list(positions)]
            sums[g.name] = sums.get(g.name, 0) + g.pool(v) / len(g.out_modules)
        return fn

    handles = [modules[m].register_forward_hook(hook(g, dict(g.positions).get(m))) for g in groups
               for m in g.out_modules]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return sums


def unit_channels(groups: Sequence[ChannelGroup], unit_masks: Mapping[str, torch.Tensor]) -> dict[str, list[int]]:
    """The channels each group keeps, from one module's unit masks (a [units] row per group)."""
    return {g.name: g.channels(torch.nonzero(unit_masks[g.name]).flatten().tolist()) for g in groups}
