"""GradSplitter (Qi et al., TOSEM 2024): kernel masks learned by gradient descent.

Each class gets a real-valued mask per channel of every channel group, binarised in the forward
pass (``mask > 0``) with a straight-through gradient clipped to [-1, 1], and a small head
``Linear(N, H) -> ReLU -> Linear(H, 1)`` on the masked parent's ReLU'd logits. All N modules are
trained at once — their sigmoid scores go through one cross-entropy so they compete as argmax
composition will make them — plus ``alpha`` times the mean fraction of conv kernels kept.

What hubmod changes to make it practical on a laptop CPU:

* the N masked forwards run as one batched forward (the batch is repeated N times and hooks apply
  module i's masks to copy i), not N passes;
* a stratified subsample of the training data (``train_per_class``), not the whole set;
* heads are refit after every mask epoch on cached logits of the physically extracted modules,
  which costs one cheap inference pass instead of extra training epochs;
* by default the head reads the pooled features entering the parent's classifier instead of its
  N logits (``head_input=features``; ``logits`` is the paper's head). The parent's classifier
  mixes every feature for every class, so once a module has dropped most channels its logits
  are a poor summary of what is left; a head on the features re-weighs them;
* ``--classes`` trains only the requested modules; the other classes compete with the parent's
  own fixed scores, so a few modules of a 1000-class parent cost a few forwards per image, not 1000;
* data parallel under ``accelerate launch`` / ``torchrun``: each process runs a share of every
  batch and gradients are summed before each step (see hubmod.parallel);
* the final masks are chosen automatically on held-out data — the fewest kernels whose composed
  accuracy is within ``tolerance`` points of the parent — and training stops once that choice has
  not improved for ``patience`` cycles. The authors picked the epoch by hand;
* with ``size_budget``, a size the user allows counts as free: a search that ends below it has its
  last masks topped up to it with the channels nearest to being kept (the last ones it dropped),
  and the choice takes the most accurate masks at or below it rather than the smallest;
* by default the parent is then distilled into the chosen modules (see hubmod.splitters.distill):
  frozen parent weights are what stops small modules from staying accurate, so the search may go
  ``distill_slack`` points further, and distilled masks are kept only if they are back within
  ``tolerance`` on validation (``distill_epochs=0`` is the paper's frozen-weight method).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..channels import (
    ChannelGroup,
    GroupMasks,
    conv_macs,
    extract,
    feature_channels,
    is_depthwise,
    recalibrate_batchnorm,
    stem_layers,
    unit_channels,
    zeroed_tensors,
)
from ..errors import HubmodError
from ..heads import build_head
from ..parents import substate
from .base import (
    ClassSlice,
    MethodConfig,
    SplitContext,
    SplitOutcome,
    Splitter,
    at_least,
    between,
    greater_than,
    in_chunks,
    method_option,
    one_of,
    progress_bar,
)
from .distill import DistillSettings, Student, composite, distill


@dataclass
class GradSplitterConfig(MethodConfig):
    # The defaults are the best setting measured (BENCHMARKS.md, split-cost-labels `labels-b256-ho`):
    # a short mask search on 100 images per class, won back by distillation that also learns from labels.
    method_name: ClassVar[str] = "gradsplitter"
    train_per_class: int = method_option(100, "training images per class (the data budget)", at_least(1))
    val_per_class: int = method_option(200, "held-out images per class for choosing masks and calibrating", at_least(1))
    alpha: float = method_option(1.0, "weight of the kept-kernel term; higher gives smaller modules", at_least(0))
    mask_init: float = method_option(0.5, "initial mask value (>0 = kept); 0.5 lets pruning start in the first epoch")
    mask_lr: float = method_option(0.05, "Adam learning rate of the masks", greater_than(0))
    head_lr: float = method_option(0.003, "learning rate of the head-only warm-up", greater_than(0))
    joint_head_lr: float = method_option(
        0.003, "learning rate of the heads while masks train, and of the refits", greater_than(0))
    hidden: int = method_option(10, "hidden width of each module's head", at_least(1))
    batch_size: int = method_option(64, "images per step (each is run once per module)", at_least(2))
    warmup_epochs: int = method_option(5, "head-only epochs before masks train", at_least(0))
    refit_epochs: int = method_option(20, "head-only epochs on cached logits after each mask epoch", at_least(0))
    max_cycles: int = method_option(3, "most mask epochs", at_least(1))
    patience: int = method_option(3, "stop after this many mask epochs without a better choice", at_least(1))
    tolerance: float = method_option(
        1.0, "accuracy points below the parent (validation) a choice may lose", at_least(0))
    recalibrate_bn: bool = method_option(
        True, "re-estimate BatchNorm statistics of each extracted module on the training images")
    adapt_alpha: bool = method_option(
        True, "halve alpha after a mask epoch below tolerance, raise it by a quarter after one within")
    sigmoid_scores: bool = method_option(
        True, "cross-entropy over the modules' sigmoid scores (the paper) rather than raw head outputs")
    head_input: str = method_option(
        "features", "what each head reads: 'features' (pooled features; the classifier is dropped) or 'logits' (the "
        "parent's N logits, as in the paper)", one_of("features", "logits"))
    distill_epochs: int = method_option(
        3, "epochs of distilling the parent into the chosen modules (backbones and heads); 0 keeps the parent's "
        "weights, as in the paper", at_least(0))
    distill_per_class: int = method_option(
        1000, "images per class to distil on (the training images, topped up)", at_least(1))
    distill_lr: float = method_option(
        0.001, "Adam learning rate of the distillation (cosine schedule)", greater_than(0))
    distill_temperature: float = method_option(2.0, "softmax temperature of the distillation", greater_than(0))
    distill_slack: float = method_option(
        4.0, "accuracy points the masks may lose beyond tolerance before distillation, which distillation must win "
        "back on validation", at_least(0))
    distill_tries: int = method_option(
        1, "most mask choices distilled (cheapest first; a failed try skips the masks it shows distillation cannot "
        "bring back) before keeping undistilled masks", at_least(1))
    distill_batch_size: int = method_option(
        256, "images per distillation step; larger runs faster per image on a CPU", at_least(2))
    distill_label_weight: float = method_option(
        0.5, "share of the distillation loss that is cross-entropy against the true labels (the rest: matching the "
        "parent's outputs); 0 uses no labels", between(0, 1))
    distill_augment_epochs: int = method_option(
        0, "first distillation epochs on randomly flipped and shifted images (the rest on the images as they are, as "
        "the composition sees them); 0, the default, was measured more accurate at a few epochs", at_least(0))
    penalty: str = method_option(
        "kernels", "what alpha penalises and the choice minimises: 'kernels' (kept conv kernels, the paper) or "
        "'macs' (the modules' multiply-accumulates, i.e. their inference cost)", one_of("kernels", "macs"))
    size_budget: float = method_option(
        0.0, "mean share of kernels (or MACs, with penalty=macs) the modules may keep at no extra cost: if the "
        "search ends below it, its last masks are topped up to it with the channels nearest to being kept, and "
        "among choices within tolerance at or below it the most accurate wins; 0 = the cheapest wins, as in the "
        "paper", between(0, 1))
    share_stem: bool = method_option(
        True, "keep the first convolution and its BatchNorm as in the parent (not distilled or recalibrated), so a "
        "composed classifier runs them once for all modules of the parent")

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "fast": {"train_per_class": 100, "val_per_class": 200, "mask_lr": 0.05, "max_cycles": 3,
                 "distill_epochs": 3, "distill_per_class": 1000, "distill_tries": 1, "distill_slack": 4.0,
                 "distill_batch_size": 256, "distill_lr": 1e-3, "distill_label_weight": 0.5,
                 "distill_temperature": 2.0},
        "paper": {"train_per_class": 400, "mask_lr": 0.01, "max_cycles": 8, "distill_epochs": 0},
        "thorough": {"train_per_class": 400, "mask_lr": 0.01, "max_cycles": 8, "distill_epochs": 2,
                     "distill_lr": 3e-4, "distill_slack": 3.0, "distill_tries": 2, "distill_batch_size": 64,
                     "distill_label_weight": 0.0},
    }
    preset_docs: ClassVar[dict[str, str]] = {
        "fast": "the default, spelled out: a short mask search on 100 images per class that may go 4 points "
                "below the parent, won back by three epochs of distillation that also learn from the labels "
                "(BENCHMARKS.md, labels-b256-ho)",
        "paper": "GradSplitter as published: a longer mask search on 400 images per class, and modules keep the "
                 "parent's weights (no distillation); larger modules for the same accuracy",
        "thorough": "the default before the fast setting was measured: a longer search on 400 images per class "
                    "and up to two distillation tries on the soft targets alone; several times slower (BENCHMARKS.md, "
                    "split-distill)",
    }

    def distill_per_class_needed(self) -> int:
        return self.distill_per_class if self.distill_epochs > 0 else 0



@dataclass
class _Part:
    """One extracted module while the final choice is made."""

    net: nn.Module
    kept: dict[str, list[int]]
    zeroed: list[str]
    spec: dict
    head: nn.Module


class _BinaryMask(torch.autograd.Function):
    """mask > 0 forward; straight-through backward.

    The authors clip this gradient to [-1, 1]; each mask is used once per step, so hubmod clips the
    mask's own gradient instead, after it has been summed over data-parallel processes, which makes
    a multi-process step the same as a single-process step on the whole batch.
    """

    @staticmethod
    def forward(ctx, x):
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class _Heads(nn.Module):
    """N independent MLP heads evaluated as one batched computation.

    Unlike the authors' random initialisation, head i starts by computing its own class's logit
    (hidden unit 0 holds ReLU(logit i), the output reads unit 0), so the composition starts at the
    parent's predictions and the short CPU budget is spent on masks, not on relearning them.
    ``start_weight`` [N, in] and ``start_bias`` [N] say how logit i is computed from the input:
    the identity for logit inputs, the parent's classifier for feature inputs.
    """

    def __init__(self, hidden: int, start_weight: torch.Tensor, start_bias: torch.Tensor, relu_input: bool):
        super().__init__()
        n, width = start_weight.shape
        b1, b2 = 0.1 / math.sqrt(width), 0.1 / math.sqrt(hidden)
        w1 = torch.empty(n, hidden, width).uniform_(-b1, b1)
        w2 = torch.empty(n, hidden).uniform_(-b2, b2)
        w1[:, 0] = start_weight
        b = torch.zeros(n, hidden)
        b[:, 0] = start_bias
        w2[:, 0] = 1.0
        self.relu_input = relu_input
        self.w1 = nn.Parameter(w1)
        self.b1 = nn.Parameter(b)
        self.w2 = nn.Parameter(w2)
        self.b2 = nn.Parameter(torch.zeros(n))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [n_modules, B, in] -> raw scores [n_modules, B]."""
        x = torch.relu(inputs) if self.relu_input else inputs
        h = torch.relu(torch.einsum("mbi,mhi->mbh", x, self.w1) + self.b1[:, None])
        return torch.einsum("mbh,mh->mb", h, self.w2) + self.b2[:, None]

    def export(self, i: int, columns: list[int] | None = None) -> dict[str, torch.Tensor]:
        """Module i's head as a ``heads`` state dict (prefixed for ClassModule), reading ``columns`` only."""
        w1 = self.w1[i] if columns is None else self.w1[i][:, columns]
        state = {"head.fc1.weight": w1, "head.fc1.bias": self.b1[i],
                 "head.fc2.weight": self.w2[i][None], "head.fc2.bias": self.b2[i : i + 1]}
        return {k: v.detach().clone() for k, v in state.items()}


def _start_heads(model: nn.Module, n: int, hidden: int, on_features: bool, targets: list[int]) -> _Heads:
    """Heads for the ``targets`` classes, each starting as its class's logit."""
    if not on_features:
        return _Heads(hidden, torch.eye(n)[targets], torch.zeros(len(targets)), relu_input=True)
    clf = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(clf, nn.Linear):
        raise HubmodError(f"{type(model).__name__}'s classifier is not a Linear layer, so heads cannot read its "
                          "features; split with --option head_input=logits")
    bias = clf.bias.detach().cpu() if clf.bias is not None else torch.zeros(n)
    return _Heads(hidden, clf.weight.detach().cpu()[targets].clone(), bias[targets].clone(), relu_input=False)


class GradSplitter(Splitter):
    name = "gradsplitter"
    pretty_name = "GradSplitter"
    paper = "Qi et al., Reusing Convolutional Neural Network Models through Modularization and Composition, TOSEM 2024"
    paper_url = "https://doi.org/10.1145/3632744"
    config_class = GradSplitterConfig
    data_parallel = True
    any_device = True

    def split(self, ctx: SplitContext) -> SplitOutcome:
        cfg: GradSplitterConfig = self.config  # type: ignore[assignment]
        torch.manual_seed(ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        par = ctx.parallel
        n, targets = ctx.num_classes, list(ctx.targets)
        k = len(targets)  # modules trained: only the requested classes
        model, groups = ctx.model, ctx.groups
        dev = ctx.train_x.device  # the search runs where the data and the parent were put
        example = (ctx.example_input if ctx.example_input is not None
                   else torch.zeros(1, *ctx.train_x.shape[1:], device=dev))
        masks = nn.ParameterDict({f"g{i}": nn.Parameter(torch.full((k, g.units), float(cfg.mask_init), device=dev))
                                  for i, g in enumerate(groups)})  # one value per unit (see ChannelGroup)
        kernels_per_unit = [g.kernels_per_unit for g in groups]
        total_kernels = float(sum(g.kernels for g in groups))
        on_features = cfg.head_input == "features"
        heads = _start_heads(model, n, cfg.hidden, on_features, targets).to(dev)
        width = heads.w1.shape[-1]
        hooks = GroupMasks(model, groups)

        def stem(net: nn.Module) -> list[nn.Module]:
            """The layers a module keeps exactly as in the parent (none unless ``share_stem``)."""
            return stem_layers(net, example) if cfg.share_stem else []

        def outputs(net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
            """What the heads read: pooled features or logits."""
            return net.forward_head(net.forward_features(inputs), pre_logits=True) if on_features else net(inputs)

        def binary() -> dict[str, torch.Tensor]:
            return {g.name: _BinaryMask.apply(masks[f"g{i}"]) for i, g in enumerate(groups)}

        def retention(bin_masks: dict[str, torch.Tensor]) -> torch.Tensor:
            kept = sum(bin_masks[g.name].sum(1) * per for g, per in zip(groups, kernels_per_unit, strict=True))
            return kept / total_kernels  # [k]

        cost = retention if cfg.penalty == "kernels" else _mac_share(model, groups, example)

        def parent_outputs(x: torch.Tensor) -> torch.Tensor:
            """[len(x), width]: the head input while all masks are ones (the parent, run once)."""
            with torch.no_grad():
                return in_chunks(lambda b: outputs(model, b), x)

        def module_logits(xs: list[torch.Tensor], bin_masks: dict[str, torch.Tensor]) -> list[torch.Tensor]:
            """[k, len(x), width] head inputs of every module for each x, run on physically extracted modules.

            Identical to the masked forward up to float rounding (removed features read as zeros),
            and several times cheaper once most channels are off: extraction takes milliseconds, a
            pruned forward a fraction of one. On a CPU the modules run channels-last, which took the
            whole search of benchmarks/split_cost.py's labels-b256-ho from 51 s to 45 s with the same
            masks. Under data parallelism each process measures its share of the modules and the
            results are exchanged.
            """
            outs = [torch.zeros(k, len(inputs), width, device=dev) for inputs in xs]
            for i in range(k):
                if par.owner(i) != par.rank:
                    continue
                kept = unit_channels(groups, {name: m[i] for name, m in bin_masks.items()})
                net, kept, _ = extract(model, groups, kept, example)
                if dev.type == "cpu":  # oneDNN's convolutions and pooling run NHWC without reordering
                    net.to(memory_format=torch.channels_last)
                if cfg.recalibrate_bn:
                    recalibrate_batchnorm(net, ctx.train_x, keep=stem(net))
                columns = feature_channels(groups, kept, width) if on_features else list(range(width))
                with torch.no_grad():
                    for out, inputs in zip(outs, xs, strict=True):
                        for j in range(0, len(inputs), 512):
                            out[i, j : j + 512, columns] = outputs(net, inputs[j : j + 512])
            for i in range(k):
                for out in outs:
                    par.share(out[i], par.owner(i))
            return outs

        # The classes not being split answer with the parent's own (fixed) score, so a few modules
        # of a many-class parent train against the whole parent at the cost of those few.
        parent_train, parent_val = parent_outputs(ctx.train_x), parent_outputs(ctx.val_x)
        rest_train = self._rest_scores(model, parent_train, on_features, cfg.sigmoid_scores)
        rest_val = self._rest_scores(model, parent_val, on_features, cfg.sigmoid_scores)

        def competing(raw: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
            """[k, B] raw head outputs -> [B, n] scores fed to the cross-entropy."""
            own = (torch.sigmoid(raw) if cfg.sigmoid_scores else raw).T
            if k == n:
                return own
            scores = rest.clone()
            scores[:, targets] = own
            return scores

        def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
            with torch.no_grad():
                return float((competing(heads(logits), rest_val).argmax(1) == y).float().mean())

        def step(opt: torch.optim.Optimizer, loss: torch.Tensor, clip_masks: bool) -> None:
            opt.zero_grad()
            loss.backward()
            params = [p for group in opt.param_groups for p in group["params"]]
            par.sum_grads(params)
            if clip_masks:  # the authors' straight-through gradient, clipped to [-1, 1]
                for m in masks.values():
                    if m.grad is not None:
                        m.grad.clamp_(-1.0, 1.0)
            opt.step()

        def fit_heads(logits: torch.Tensor, y: torch.Tensor, rest: torch.Tensor, epochs: int, lr: float) -> None:
            opt = torch.optim.Adam(heads.parameters(), lr=lr)
            for _ in range(epochs):
                for idx in torch.randperm(len(y), generator=gen).split(cfg.batch_size):
                    mine = par.shard(idx)
                    scores = competing(heads(logits[:, mine]), rest[mine])
                    step(opt, F.cross_entropy(scores, y[mine], reduction="sum") / len(idx), clip_masks=False)

        def measure(fixed: dict[str, torch.Tensor], record: dict) -> dict:
            """Extract the modules of ``fixed`` masks, refit their heads, and record them as a choice."""
            with torch.no_grad():
                per_module, module_cost = retention(fixed), cost(fixed)
            train_logits, val_logits = module_logits([x, ctx.val_x], fixed)
            fit_heads(train_logits, y, rest_train, cfg.refit_epochs, cfg.joint_head_lr)
            record.update(val_accuracy=accuracy(val_logits, ctx.val_y), retention=float(per_module.mean()),
                          cost=float(module_cost.mean()))
            history.append(record)
            snapshots.append((record, {name: v.bool() for name, v in fixed.items()},
                              {name: v.detach().clone() for name, v in heads.state_dict().items()}, per_module))
            return record

        x, y = ctx.train_x, ctx.train_y
        steps = math.ceil(len(y) / cfg.batch_size)
        threshold = ctx.parent_val_accuracy - cfg.tolerance / 100
        distilling = cfg.distill_epochs > 0 and ctx.distill_x is not None
        # Masks the distillation will retrain may lose more before it than the result may after it.
        search_threshold = threshold - (cfg.distill_slack / 100 if distilling else 0.0)

        # Warm-up: heads only, on the unmasked parent's outputs (computed once).
        fit_heads(parent_train.expand(k, -1, -1), y, rest_train, cfg.warmup_epochs, cfg.head_lr)
        history = [{"cycle": 0, "val_accuracy": accuracy(parent_val.expand(k, -1, -1), ctx.val_y), "retention": 1.0,
                    "cost": 1.0}]
        snapshots = [(history[0], {g.name: torch.ones(k, g.units, dtype=torch.bool, device=dev) for g in groups},
                      {name: v.detach().clone() for name, v in heads.state_dict().items()}, torch.ones(k))]
        best_cycle, since_best, below = 0, 0, 0
        alpha = cfg.alpha
        bar = progress_bar(ctx.progress and par.is_main, cfg.max_cycles * steps, "gradsplitter", "step")
        try:
            for cycle in range(1, cfg.max_cycles + 1):
                opt = torch.optim.Adam([{"params": masks.parameters(), "lr": cfg.mask_lr},
                                        {"params": heads.parameters(), "lr": cfg.joint_head_lr}])
                with hooks.active():
                    for idx in torch.randperm(len(y), generator=gen).split(cfg.batch_size):
                        mine = par.shard(idx)
                        bin_masks = binary()
                        hooks.set(bin_masks)
                        logits = outputs(model, x[mine].repeat(k, 1, 1, 1)).view(k, len(mine), -1)
                        scores = competing(heads(logits), rest_train[mine])  # [B, n]: modules compete per image
                        loss = (F.cross_entropy(scores, y[mine], reduction="sum") / len(idx)
                                + alpha * cost(bin_masks).mean() / par.world)
                        step(opt, loss, clip_masks=True)
                        bar.update(1)
                with torch.no_grad():
                    fixed = {name: v.detach() for name, v in binary().items()}
                record = measure(fixed, {"cycle": cycle, "alpha": alpha})
                acc = record["val_accuracy"]
                bar.set_postfix(cycle=cycle, val_acc=f"{acc:.4f}", kept=f"{record['retention']:.3f}")
                chosen = _choose(history, search_threshold, cfg.size_budget)
                if chosen != best_cycle:
                    best_cycle, since_best = chosen, 0
                else:
                    since_best += 1
                below = below + 1 if acc < search_threshold else 0
                if since_best >= cfg.patience or below >= cfg.patience:
                    break
                if cfg.adapt_alpha:  # steer along the accuracy boundary instead of running past it
                    alpha = alpha * 0.5 if acc < search_threshold else alpha * 1.25
        finally:
            bar.close()
        if 0 < history[-1]["cost"] < cfg.size_budget:
            # The channels nearest to being kept are the last ones the search dropped: readmitting them
            # up to the budget gives the modules (and distillation) capacity the user has allowed for.
            topped = _top_up({g.name: masks[f"g{i}"].detach() for i, g in enumerate(groups)},
                             lambda m: float(cost(_as_extracted(m)).mean()), cfg.size_budget)
            measure(topped, {"cycle": history[-1]["cycle"], "topped_up": True})

        def parts(i: int) -> list[_Part]:
            """The modules of snapshot ``i``, physically extracted, each with its head."""
            record, bin_masks, head_state, _ = snapshots[i]
            heads.load_state_dict(head_state)
            out = []
            for j in range(k):
                kept = unit_channels(groups, {name: m[j] for name, m in bin_masks.items()})
                net, kept, zeroed = extract(model, groups, kept, example)
                if cfg.recalibrate_bn and record["cycle"] > 0:
                    recalibrate_batchnorm(net, x, keep=stem(net))
                columns = feature_channels(groups, kept, width) if on_features else None
                spec = ({"type": "features_mlp", "in_features": len(columns), "hidden": cfg.hidden} if on_features
                        else {"type": "mlp", "in_features": n, "hidden": cfg.hidden})
                head = build_head(spec, spec["in_features"]).to(dev)
                head.load_state_dict(substate(heads.export(j, columns), "head."))
                out.append(_Part(net, kept, zeroed, spec, head))
            return out

        def distilled_accuracy(found: list[_Part]) -> float:
            """Distil the parent into ``found`` (in place); their composed accuracy on validation."""
            students = [Student(p.net, p.head, outputs, zeroed_tensors(p.net, groups, p.zeroed, p.kept), stem(p.net))
                        for p in found]
            settings = DistillSettings(cfg.distill_epochs, cfg.distill_lr, cfg.distill_temperature,
                                       cfg.distill_batch_size, label_weight=cfg.distill_label_weight,
                                       augment_epochs=cfg.distill_augment_epochs)
            distill(model, students, targets, ctx.distill_x, settings, gen, par, ctx.progress and par.is_main,
                    ctx.distill_y)
            with torch.no_grad():
                raw = torch.stack([in_chunks(s, ctx.val_x) for s in students])
                pred = composite(raw, in_chunks(model, ctx.val_x), targets).argmax(1)
            return float((pred == ctx.val_y).float().mean())

        chosen, final, distilled = _choose(history, threshold, cfg.size_budget), None, False
        distill_start = time.perf_counter()
        if distilling:
            # Cheapest first among the masks the search was allowed to reach, skipping those a failed
            # try rules out; the first whose distilled modules are within tolerance wins. Otherwise the
            # undistilled choice stands.
            for _ in range(cfg.distill_tries):
                i = _next_distill_try(history, search_threshold, threshold, cfg.size_budget)
                if i is None:
                    break
                found = parts(i)
                acc = distilled_accuracy(found)
                history[i]["distilled_val_accuracy"] = acc
                if acc >= threshold:
                    chosen, final, distilled = i, found, True
                    break
        distill_seconds = time.perf_counter() - distill_start
        record = snapshots[chosen][0]
        slices = []
        for c, p in zip(targets, final or parts(chosen), strict=True):
            head_state = {f"head.{name}": v.detach().cpu().clone() for name, v in p.head.state_dict().items()}
            slices.append(ClassSlice(class_index=c, kept=p.kept, head=p.spec, head_state=head_state,
                                     backbone=p.net, zeroed=p.zeroed))
        metrics = {
            "chosen_cycle": record["cycle"],
            "chosen_topped_up": bool(record.get("topped_up", False)),  # that cycle's masks, topped up to size_budget
            "distilled": distilled,
            "distill_seconds": distill_seconds,
            "cycles_run": len(history) - 1,
            "val_accuracy": record.get("distilled_val_accuracy", record["val_accuracy"]) if distilled
            else record["val_accuracy"],
            "parent_val_accuracy": ctx.parent_val_accuracy,
            "mean_retention": record["retention"],
            "history": history,
            "processes": par.world,
        }
        return SplitOutcome(slices=slices, metrics=metrics)

    @staticmethod
    def _rest_scores(model: nn.Module, outs: torch.Tensor, on_features: bool, sigmoid: bool) -> torch.Tensor:
        """[B, n] the parent's score per class, on the scale a fresh head gives its class."""
        with torch.no_grad():
            logits = model.get_classifier()(outs) if on_features else outs
            raw = torch.relu(logits)
            return torch.sigmoid(raw) if sigmoid else raw


def _next_distill_try(history: list[dict], search_threshold: float, threshold: float,
                      budget: float = 0.0) -> int | None:
    """The mask snapshot to distil next: the cheapest not yet ruled out (at or below ``budget``, the most
    accurate), or None.

    A failed try rules out every snapshot as cheap, and says how many points distillation
    wins back on this model (``recovery``); snapshots whose undistilled accuracy plus that gain
    would still miss ``threshold`` are skipped rather than paid for with another distillation.
    """
    tried = [r for r in history if "distilled_val_accuracy" in r]
    floor = max((r["cost"] for r in tried), default=-1.0)
    recovery = min((r["distilled_val_accuracy"] - r["val_accuracy"] for r in tried), default=None)
    pool = [i for i, r in enumerate(history)
            if i > 0 and r["val_accuracy"] >= search_threshold and r["cost"] > floor
            and (recovery is None or r["val_accuracy"] + recovery >= threshold)]
    return min(pool, key=lambda i: _price(history[i], budget)) if pool else None


def _mac_share(model: nn.Module, groups: list[ChannelGroup], example: torch.Tensor):
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

    def share(bin_masks: dict[str, torch.Tensor]) -> torch.Tensor:
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


def _price(record: dict, budget: float) -> tuple[float, float]:
    """What a choice costs, for ranking: its cost (no less than ``budget``), then its accuracy, higher first."""
    return round(max(record["cost"], budget), 4), -record["val_accuracy"]


def _choose(history: list[dict], threshold: float, budget: float = 0.0) -> int:
    """Index of the cheapest record (by the penalty's measure; at or below ``budget``, the most accurate)
    within tolerance; the most accurate if none is."""
    ok = [i for i, r in enumerate(history) if r["val_accuracy"] >= threshold]
    if ok:
        return min(ok, key=lambda i: _price(history[i], budget))
    return max(range(len(history)), key=lambda i: history[i]["val_accuracy"])


def _as_extracted(bin_masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The masks as extraction will count them: a group with no kept channel keeps one (zeroed) channel."""
    out = {}
    for name, m in bin_masks.items():
        m = m.clone()
        m[m.sum(1) == 0, 0] = 1.0
        out[name] = m
    return out


def _top_up(values: dict[str, torch.Tensor], cost_of: Callable[[dict[str, torch.Tensor]], float],
            budget: float) -> dict[str, torch.Tensor]:
    """Binary masks of real-valued ``values`` at the lowest threshold (<= 0) whose mean cost stays within ``budget``.

    Cost only grows as the threshold falls, so bisection finds it; at threshold 0 these are the masks
    the search itself binarises to.
    """
    def at(depth: float) -> dict[str, torch.Tensor]:
        return {name: (v > -depth).to(v.dtype) for name, v in values.items()}

    low, high = 0.0, max(float(-v.min()) for v in values.values()) + 1.0  # at ``high`` every channel is kept
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if cost_of(at(mid)) <= budget else (low, mid)
    return at(low)
