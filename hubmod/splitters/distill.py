"""Distilling the parent into its extracted modules, so a module can drop more of the parent.

A mask search keeps the parent's weights: the channels a module keeps still compute what they
computed for all N classes, with the rest of the network gone. Once half the kernels are off, the
kept ones can be retrained to do the job alone. The modules learn to reproduce the parent's N-way
softmax, composed: module c's raw score stands in for the parent's logit c (classes not being split
keep the parent's own logit), and the KL divergence to the parent's softmax at a temperature is
minimised (Hinton et al. 2015). The targets are the parent's outputs, not labels, so the images
need no labels and can be augmented freely (random flips and shifts): the parent is asked about
each augmented image itself, which keeps teacher and students consistent (Beyer et al. 2022).

Two phases: the heads alone first, on features computed once, which moves the heads from the
search's scale onto the parent's logit scale cheaply; then backbones and heads together, with
BatchNorm in training mode (its statistics are re-estimated on the plain images at the end); a
student's frozen layers (its stem, shared with the other modules of the parent) stay as they are. Groups
that a module keeps as one zeroed channel are zeroed again after every step, so they stay exactly
equivalent to removed channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..channels import recalibrate_batchnorm
from ..parallel import DataParallel
from ..training import apply_augment, draw_augment
from .base import in_chunks, progress_bar


@dataclass
class Student:
    """One module being distilled: its backbone, its head, and what the head reads."""

    backbone: nn.Module
    head: nn.Module
    reads: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    frozen_zero: list[torch.Tensor]  # parameters of groups kept as one zeroed channel
    frozen: list[nn.Module] = field(default_factory=list)  # layers kept exactly as in the parent (the stem)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.reads(self.backbone, x))

    def parameters(self) -> list[nn.Parameter]:
        """The trainable ones: all but the frozen layers'."""
        fixed = {id(p) for m in self.frozen for p in m.parameters()}
        return [p for p in [*self.backbone.parameters(), *self.head.parameters()] if id(p) not in fixed]

    def train(self, mode: bool) -> None:
        self.backbone.train(mode)
        self.head.train(mode)
        for m in self.frozen:  # a frozen BatchNorm keeps normalising with the parent's statistics
            m.eval()


@dataclass
class DistillSettings:
    epochs: int
    lr: float
    temperature: float
    batch_size: int
    head_epochs: int = 20
    head_lr: float = 3e-3
    head_batch_size: int = 256


def composite(raw: torch.Tensor, teacher: torch.Tensor, targets: list[int]) -> torch.Tensor:
    """[B, n] logits: the students' raw scores [k, B] in their classes' columns, the parent's elsewhere."""
    if len(targets) == teacher.shape[1]:
        return raw.T
    out = teacher.clone()
    out[:, targets] = raw.T
    return out


def _kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float, denominator: int) -> torch.Tensor:
    t = temperature
    return t * t * F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1),
                            log_target=True, reduction="sum") / denominator


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter], par: DataParallel) -> None:
    opt.zero_grad()
    loss.backward()
    par.sum_grads(params)
    opt.step()


def distill(
    parent: nn.Module,
    students: list[Student],
    targets: list[int],
    x: torch.Tensor,
    settings: DistillSettings,
    generator: torch.Generator,
    par: DataParallel,
    progress: bool = False,
) -> None:
    """Train ``students`` (modules of ``targets``) in place to reproduce ``parent`` on ``x``, composed.

    Every process of a data-parallel group runs its share of each batch; gradients are summed
    before each step, so the result does not depend on how many processes ran it.
    """
    with torch.no_grad():
        teacher = in_chunks(parent, x)
        for s in students:
            s.train(False)
        feats = [in_chunks(lambda b, s=s: s.reads(s.backbone, b), x) for s in students]

    heads = [p for s in students for p in s.head.parameters()]
    opt = torch.optim.Adam(heads, lr=settings.head_lr)
    for _ in range(settings.head_epochs):
        for idx in torch.randperm(len(x), generator=generator).split(settings.head_batch_size):
            mine = par.shard(idx)
            raw = torch.stack([s.head(f[mine]) for s, f in zip(students, feats, strict=True)])
            loss = _kl(composite(raw, teacher[mine], targets), teacher[mine], settings.temperature, len(idx))
            _step(opt, loss, heads, par)
    del feats

    params = [p for s in students for p in s.parameters()]
    for p in params:
        p.requires_grad_(True)
    steps = settings.epochs * -(-len(x) // settings.batch_size)
    opt = torch.optim.Adam(params, lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    bar = progress_bar(progress, steps, "distil", "step")
    try:
        for s in students:
            s.train(True)
        for _ in range(settings.epochs):
            for idx in torch.randperm(len(x), generator=generator).split(settings.batch_size):
                mine = par.shard(idx)
                flip, shift = draw_augment(len(idx), generator)  # drawn for the whole batch on every process
                xb = apply_augment(x[mine], par.shard(flip), shift)
                with torch.no_grad():
                    soft = parent(xb)
                raw = torch.stack([s(xb) for s in students])
                _step(opt, _kl(composite(raw, soft, targets), soft, settings.temperature, len(idx)), params, par)
                sched.step()
                with torch.no_grad():
                    for s in students:
                        for t in s.frozen_zero:
                            t.zero_()
                bar.update(1)
    finally:
        bar.close()
        for s in students:
            s.train(False)
        for p in params:
            p.requires_grad_(False)
    for s in students:  # running statistics of the final weights on the un-augmented images
        recalibrate_batchnorm(s.backbone, x, keep=s.frozen)
