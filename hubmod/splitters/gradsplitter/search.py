"""One GradSplitter search: the masks, the heads and the history of mask snapshots, as attributes.

`MaskSearch` runs the phases in order — heads alone on the parent's outputs (`warm_up`), mask
epochs that each end in a measured snapshot (`run`), a top-up to the size budget (`top_up`), and the
choice, distilled when the options ask for it (`choose`) — so each phase reads and writes the same
state instead of sharing it through closures.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...batching import in_chunks, progress_bar
from ...channels import (
    GroupMasks,
    extract_seeing,
    feature_channels,
    recalibrate_batchnorm,
    stem_layers,
    unit_channels,
    zeroed_tensors,
)
from ...distillation import DistillSettings, Student, composite, distill
from ...heads import build_head
from ...weights import substate
from ..base import ClassSlice, SplitContext, SplitOutcome
from .config import GradSplitterConfig
from .cost import Masks, as_extracted, kernel_share, mac_share, mean_share, top_up
from .layers import BinaryMask, start_heads
from .selection import choose, next_distill_try

logger = logging.getLogger(__name__)


@dataclass
class Part:
    """One extracted module while the final choice is made."""

    net: nn.Module
    kept: dict[str, list[int]]
    zeroed: list[str]
    spec: dict
    head: nn.Module


@dataclass
class Snapshot:
    """A measured mask epoch: its record in the history, its binary masks, its heads, each module's kept share."""

    record: dict
    masks: Masks
    head_state: dict[str, torch.Tensor]
    retention: torch.Tensor


class MaskSearch:
    """The state of one split's search and the steps that change it (see the module docstring)."""

    def __init__(self, cfg: GradSplitterConfig, ctx: SplitContext):
        self.cfg, self.ctx = cfg, ctx
        torch.manual_seed(ctx.seed)
        self.gen = torch.Generator().manual_seed(ctx.seed)
        self.par = ctx.parallel
        self.n, self.targets = ctx.num_classes, list(ctx.targets)
        self.k = len(self.targets)  # modules trained: only the requested classes
        self.model, self.groups = ctx.model, ctx.groups
        self.dev = ctx.train_x.device  # the search runs where the data and the parent were put
        self.example = (ctx.example_input if ctx.example_input is not None
                        else torch.zeros(1, *ctx.train_x.shape[1:], device=self.dev))
        self.masks = nn.ParameterDict({
            f"g{i}": nn.Parameter(torch.full((self.k, g.units), float(cfg.mask_init), device=self.dev))
            for i, g in enumerate(self.groups)})  # one value per unit (see ChannelGroup)
        self.on_features = cfg.head_input == "features"
        self.heads = start_heads(self.model, self.n, cfg.hidden, self.on_features, self.targets).to(self.dev)
        self.width = self.heads.w1.shape[-1]
        self.hooks = GroupMasks(self.model, self.groups)
        self.retention = kernel_share(self.groups)
        self.cost = self._cost(cfg.penalty)
        # The classes not being split answer with the parent's own (fixed) score, so a few modules
        # of a many-class parent train against the whole parent at the cost of those few.
        self.parent_train, self.parent_val = self.parent_outputs(ctx.train_x), self.parent_outputs(ctx.val_x)
        self.rest_train = self.rest_scores(self.parent_train)
        self.rest_val = self.rest_scores(self.parent_val)
        self.threshold = ctx.parent_val_accuracy - cfg.tolerance / 100
        self.distilling = cfg.distill_epochs > 0 and ctx.distill_x is not None
        # Masks the distillation will retrain may lose more before it than the result may after it.
        self.search_threshold = self.threshold - (cfg.distill_slack / 100 if self.distilling else 0.0)
        self.history: list[dict] = []
        self.snapshots: list[Snapshot] = []

    def _cost(self, penalty: str) -> Callable[[Masks], torch.Tensor]:
        """The share alpha presses down and the choice ranks by (the ``penalty`` option)."""
        if penalty == "kernels":
            return self.retention
        macs = mac_share(self.model, self.groups, self.example)
        return macs if penalty == "macs" else mean_share(self.retention, macs)

    # ------------------------------------------------------------------ what the heads read and score

    def stem(self, net: nn.Module) -> list[nn.Module]:
        """The layers a module keeps exactly as in the parent (none unless ``share_stem``)."""
        return stem_layers(net, self.example) if self.cfg.share_stem else []

    def outputs(self, net: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """What the heads read: pooled features or logits."""
        return net.forward_head(net.forward_features(inputs), pre_logits=True) if self.on_features else net(inputs)

    def sees(self, net: nn.Module) -> torch.Tensor:
        """A module's head inputs on a few training images (extract_seeing asks whether they vary)."""
        with torch.no_grad():
            return self.outputs(net.eval(), self.ctx.train_x[:32].to(self.dev))

    def binary(self) -> Masks:
        return {g.name: BinaryMask.apply(self.masks[f"g{i}"]) for i, g in enumerate(self.groups)}

    def parent_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """[len(x), width]: the head input while all masks are ones (the parent, run once)."""
        with torch.no_grad():
            return in_chunks(lambda b: self.outputs(self.model, b), x)

    def rest_scores(self, outs: torch.Tensor) -> torch.Tensor:
        """[B, n] the parent's score per class, on the scale a fresh head gives its class."""
        with torch.no_grad():
            logits = self.model.get_classifier()(outs) if self.on_features else outs
            raw = torch.relu(logits)
            return torch.sigmoid(raw) if self.cfg.sigmoid_scores else raw

    def competing(self, raw: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        """[k, B] raw head outputs -> [B, n] scores fed to the cross-entropy."""
        own = (torch.sigmoid(raw) if self.cfg.sigmoid_scores else raw).T
        if self.k == self.n:
            return own
        scores = rest.clone()
        scores[:, self.targets] = own
        return scores

    def accuracy(self, logits: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return float((self.competing(self.heads(logits), self.rest_val).argmax(1) == y).float().mean())

    def module_logits(self, xs: list[torch.Tensor], bin_masks: Masks) -> list[torch.Tensor]:
        """[k, len(x), width] head inputs of every module for each x, run on physically extracted modules.

        Identical to the masked forward up to float rounding (removed features read as zeros),
        and several times cheaper once most channels are off: extraction takes milliseconds, a
        pruned forward a fraction of one. On a CPU the modules run channels-last. Under data
        parallelism each process measures its share of the modules and the results are exchanged.
        """
        k, par = self.k, self.par
        outs = [torch.zeros(k, len(inputs), self.width, device=self.dev) for inputs in xs]
        for i in range(k):
            if par.owner(i) != par.rank:
                continue
            kept = unit_channels(self.groups, {name: m[i] for name, m in bin_masks.items()})
            # measured as parts() will ship it: a module that could not see the image keeps a live channel
            net, kept, _, _ = extract_seeing(self.model, self.groups, kept, self.example, self.sees)
            if self.dev.type == "cpu":  # oneDNN's convolutions and pooling run NHWC without reordering
                net.to(memory_format=torch.channels_last)
            if self.cfg.recalibrate_bn:
                recalibrate_batchnorm(net, self.ctx.train_x, keep=self.stem(net))
            columns = feature_channels(self.groups, kept, self.width) if self.on_features else list(range(self.width))
            with torch.no_grad():
                for out, inputs in zip(outs, xs, strict=True):
                    for j in range(0, len(inputs), 512):
                        out[i, j : j + 512, columns] = self.outputs(net, inputs[j : j + 512])
        for i in range(k):
            for out in outs:
                par.share(out[i], par.owner(i))
        return outs

    # ------------------------------------------------------------------ training steps

    def step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, clip_masks: bool) -> None:
        opt.zero_grad()
        loss.backward()
        params = [p for group in opt.param_groups for p in group["params"]]
        self.par.sum_grads(params)
        if clip_masks:  # the authors' straight-through gradient, clipped to [-1, 1]
            for m in self.masks.values():
                if m.grad is not None:
                    m.grad.clamp_(-1.0, 1.0)
        opt.step()

    def fit_heads(self, logits: torch.Tensor, y: torch.Tensor, rest: torch.Tensor, epochs: int, lr: float) -> None:
        opt = torch.optim.Adam(self.heads.parameters(), lr=lr)
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=self.gen).split(self.cfg.batch_size):
                mine = self.par.shard(idx)
                scores = self.competing(self.heads(logits[:, mine]), rest[mine])
                self.step(opt, F.cross_entropy(scores, y[mine], reduction="sum") / len(idx), clip_masks=False)

    def heads_state(self) -> dict[str, torch.Tensor]:
        return {name: v.detach().clone() for name, v in self.heads.state_dict().items()}

    def measure(self, fixed: Masks, record: dict) -> dict:
        """Extract the modules of ``fixed`` masks, refit their heads, and record them as a snapshot."""
        cfg, ctx = self.cfg, self.ctx
        with torch.no_grad():
            per_module, module_cost = self.retention(fixed), self.cost(fixed)
        train_logits, val_logits = self.module_logits([ctx.train_x, ctx.val_x], fixed)
        self.fit_heads(train_logits, ctx.train_y, self.rest_train, cfg.refit_epochs, cfg.joint_head_lr)
        record.update(val_accuracy=self.accuracy(val_logits, ctx.val_y), retention=float(per_module.mean()),
                      cost=float(module_cost.mean()))
        self.history.append(record)
        self.snapshots.append(Snapshot(record, {name: v.bool() for name, v in fixed.items()}, self.heads_state(),
                                       per_module))
        return record

    # ------------------------------------------------------------------ the phases

    def warm_up(self) -> None:
        """Heads only, on the unmasked parent's outputs (computed once); the parent is snapshot 0."""
        cfg, ctx, k = self.cfg, self.ctx, self.k
        self.fit_heads(self.parent_train.expand(k, -1, -1), ctx.train_y, self.rest_train, cfg.warmup_epochs,
                       cfg.head_lr)
        record = {"cycle": 0, "val_accuracy": self.accuracy(self.parent_val.expand(k, -1, -1), ctx.val_y),
                  "retention": 1.0, "cost": 1.0}
        self.history.append(record)
        self.snapshots.append(Snapshot(
            record, {g.name: torch.ones(k, g.units, dtype=torch.bool, device=self.dev) for g in self.groups},
            self.heads_state(), torch.ones(k)))

    def run(self) -> None:
        """Mask epochs until ``max_cycles``, or until the choice or the accuracy has stalled for ``patience``."""
        cfg, par, k = self.cfg, self.par, self.k
        x, y = self.ctx.train_x, self.ctx.train_y
        steps = math.ceil(len(y) / cfg.batch_size)
        best_cycle, since_best, below = 0, 0, 0
        alpha = cfg.alpha
        bar = progress_bar(self.ctx.progress and par.is_main, cfg.max_cycles * steps, "gradsplitter", "step")
        try:
            for cycle in range(1, cfg.max_cycles + 1):
                opt = torch.optim.Adam([{"params": self.masks.parameters(), "lr": cfg.mask_lr},
                                        {"params": self.heads.parameters(), "lr": cfg.joint_head_lr}])
                with self.hooks.active():
                    for idx in torch.randperm(len(y), generator=self.gen).split(cfg.batch_size):
                        mine = par.shard(idx)
                        bin_masks = self.binary()
                        self.hooks.set(bin_masks)
                        logits = self.outputs(self.model, x[mine].repeat(k, 1, 1, 1)).view(k, len(mine), -1)
                        # [B, n]: the modules compete per image, as argmax composition will make them
                        scores = self.competing(self.heads(logits), self.rest_train[mine])
                        loss = (F.cross_entropy(scores, y[mine], reduction="sum") / len(idx)
                                + alpha * self.cost(bin_masks).mean() / par.world)
                        self.step(opt, loss, clip_masks=True)
                        bar.update(1)
                with torch.no_grad():
                    fixed = {name: v.detach() for name, v in self.binary().items()}
                record = self.measure(fixed, {"cycle": cycle, "alpha": alpha})
                acc = record["val_accuracy"]
                bar.set_postfix(cycle=cycle, val_acc=f"{acc:.4f}", kept=f"{record['retention']:.3f}")
                chosen = choose(self.history, self.search_threshold, cfg.size_budget)
                if chosen != best_cycle:
                    best_cycle, since_best = chosen, 0
                else:
                    since_best += 1
                below = below + 1 if acc < self.search_threshold else 0
                if since_best >= cfg.patience or below >= cfg.patience:
                    break
                if cfg.adapt_alpha:  # steer along the accuracy boundary instead of running past it
                    alpha = alpha * 0.5 if acc < self.search_threshold else alpha * 1.25
        finally:
            bar.close()

    def top_up(self) -> None:
        """If the search ended below ``size_budget``, measure its last masks topped up to the budget.

        The channels nearest to being kept are the last ones the search dropped: readmitting them up
        to the budget gives the modules (and distillation) capacity the user has allowed for.
        """
        if 0 < self.history[-1]["cost"] < self.cfg.size_budget:
            topped = top_up({g.name: self.masks[f"g{i}"].detach() for i, g in enumerate(self.groups)},
                            lambda m: float(self.cost(as_extracted(m)).mean()), self.cfg.size_budget)
            self.measure(topped, {"cycle": self.history[-1]["cycle"], "topped_up": True})

    def parts(self, i: int) -> list[Part]:
        """The modules of snapshot ``i``, physically extracted, each with its head."""
        cfg, snap = self.cfg, self.snapshots[i]
        self.heads.load_state_dict(snap.head_state)
        out = []
        for j in range(self.k):
            kept = unit_channels(self.groups, {name: m[j] for name, m in snap.masks.items()})
            net, kept, zeroed, revived = extract_seeing(self.model, self.groups, kept, self.example, self.sees)
            if revived:
                logger.info("module %d: every path to its head crossed a group with no channel kept; each such "
                            "group keeps one channel", j)
            if cfg.recalibrate_bn and snap.record["cycle"] > 0:
                recalibrate_batchnorm(net, self.ctx.train_x, keep=self.stem(net))
            columns = feature_channels(self.groups, kept, self.width) if self.on_features else None
            spec = ({"type": "features_mlp", "in_features": len(columns), "hidden": cfg.hidden} if self.on_features
                    else {"type": "mlp", "in_features": self.n, "hidden": cfg.hidden})
            head = build_head(spec, spec["in_features"]).to(self.dev)
            head.load_state_dict(substate(self.heads.export(j, columns), "head."))
            out.append(Part(net, kept, zeroed, spec, head))
        return out

    def distilled_accuracy(self, found: list[Part]) -> float:
        """Distil the parent into ``found`` (in place); their composed accuracy on validation."""
        cfg, ctx = self.cfg, self.ctx
        students = [Student(p.net, p.head, self.outputs, zeroed_tensors(p.net, self.groups, p.zeroed, p.kept),
                            self.stem(p.net)) for p in found]
        settings = DistillSettings(cfg.distill_epochs, cfg.distill_lr, cfg.distill_temperature,
                                   cfg.distill_batch_size, label_weight=cfg.distill_label_weight,
                                   augment_epochs=cfg.distill_augment_epochs)
        distill(self.model, students, self.targets, ctx.distill_x, settings, self.gen, self.par,
                ctx.progress and self.par.is_main, ctx.distill_y)
        with torch.no_grad():
            raw = torch.stack([in_chunks(s, ctx.val_x) for s in students])
            pred = composite(raw, in_chunks(self.model, ctx.val_x), self.targets).argmax(1)
        return float((pred == ctx.val_y).float().mean())

    def choose(self) -> SplitOutcome:
        """The kept snapshot's modules and the search's metrics.

        With distillation, the cheapest masks the search was allowed to reach are distilled first,
        skipping those a failed try rules out; the first whose distilled modules are within
        tolerance wins. Otherwise the undistilled choice stands.
        """
        cfg, history = self.cfg, self.history
        chosen, final, distilled = choose(history, self.threshold, cfg.size_budget), None, False
        distill_start = time.perf_counter()
        if self.distilling:
            for _ in range(cfg.distill_tries):
                i = next_distill_try(history, self.search_threshold, self.threshold, cfg.size_budget)
                if i is None:
                    break
                found = self.parts(i)
                acc = self.distilled_accuracy(found)
                history[i]["distilled_val_accuracy"] = acc
                if acc >= self.threshold:
                    chosen, final, distilled = i, found, True
                    break
        distill_seconds = time.perf_counter() - distill_start
        record = self.snapshots[chosen].record
        slices = []
        for c, p in zip(self.targets, final or self.parts(chosen), strict=True):
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
            "parent_val_accuracy": self.ctx.parent_val_accuracy,
            "mean_retention": record["retention"],
            "history": history,
            "processes": self.par.world,
        }
        return SplitOutcome(slices=slices, metrics=metrics)
