"""Distilling the parent into its extracted modules, so a module can drop more of the parent.

A mask search keeps the parent's weights: the channels a module keeps still compute what they
computed for all N classes, with the rest of the network gone. Once half the kernels are off, the
kept ones can be retrained to do the job alone. The modules learn to reproduce the parent's N-way
softmax, composed: module c's raw score stands in for the parent's logit c (classes not being split
keep the parent's own logit), and the KL divergence to the parent's softmax at a temperature is
minimised (Hinton et al. 2015). With a label weight, the loss also takes that share of cross-entropy
against the images' true labels, Hinton et al.'s second objective: the composition is then taught
what the parent got wrong, not only what it got right (measured against the parent's outputs alone in
BENCHMARKS.md, distill-repeat and distill-repeat-labels-b256-ho).

Three phases: the heads alone first, on features computed once, which moves the heads from the
search's scale onto the parent's logit scale cheaply; then backbones and heads together, with
BatchNorm in training mode (its statistics are re-estimated on the images at the end); a student's
frozen layers (its stem, shared with the other modules of the parent) stay as they are. Last, the
heads alone once more (``refit_heads``), on the final backbones' features: the joint phase leaves
heads fit to batch statistics, which the composition never sees (BENCHMARKS.md,
distill-repeat-labels-b256-ho, measures what the last fit gains).

The joint phase trains on the images as they are, as the composition will see them. Because the
targets are the parent's outputs, the images could be augmented freely (random flips and shifts,
the parent asked about each augmented image itself: Beyer et al. 2022), and ``augment_epochs``
does that for the first epochs. It is off by default: at the budgets hubmod distils with (a few
epochs), every augmented epoch was measured to cost accuracy (BENCHMARKS.md,
distill-repeat-labels-b256-ho); function matching pays off over hundreds of epochs. Without
augmentation the parent's outputs are computed once, not at each step.

Groups that a module keeps as one zeroed channel are zeroed again after every step, so they stay
exactly equivalent to removed channels.

The students train one after the other within each step, each on torch's intra-op threads. Running
their backward passes on several Python threads at once was faster, but corrupted the heap in real
splits (glibc aborted in the autograd engine; never once the students ran in turn), so hubmod does
not. The students train channels-last (NHWC), which oneDNN's CPU convolutions and BatchNorm run
without reordering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .augment import apply_augment, draw_augment
from .batching import in_chunks, progress_bar
from .channels import recalibrate_batchnorm
from .parallel import DataParallel

T = TypeVar("T")


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
    label_weight: float = 0.0  # share of the loss that is cross-entropy against the true labels
    refit_heads: bool = True  # the heads alone once more, on the final backbones' plain-image features
    augment_epochs: int = 0  # first epochs of the joint phase on augmented images (the rest: the plain ones)


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


def _loss(raw: torch.Tensor, teacher: torch.Tensor, targets: list[int], labels: torch.Tensor | None,
          settings: DistillSettings, denominator: int) -> torch.Tensor:
    """The distillation loss of a (shard of a) batch of ``denominator`` images, composed as the modules will be."""
    logits = composite(raw, teacher, targets)
    loss = _kl(logits, teacher, settings.temperature, denominator)
    if labels is None or not settings.label_weight:
        return loss
    hard = F.cross_entropy(logits, labels, reduction="sum") / denominator
    return (1 - settings.label_weight) * loss + settings.label_weight * hard


def _step(opt: torch.optim.Optimizer, backward: Callable[[], None], params: list[nn.Parameter],
          par: DataParallel) -> None:
    """One optimiser step: ``backward`` fills the gradients, which are summed over the processes first."""
    opt.zero_grad()
    backward()
    par.sum_grads(params)
    opt.step()


def _students_step(students: list[Student], xb: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor],
                   opt: torch.optim.Optimizer, params: list[nn.Parameter], par: DataParallel) -> float:
    """One optimiser step of all students on ``xb``; ``loss_of`` maps their stacked raw scores [k, B] to the loss.

    Returns the loss (this process's share of the batch) before the step."""
    loss = loss_of(torch.stack([s(xb) for s in students]))
    _step(opt, loss.backward, params, par)
    return float(loss.detach())


def _batches(x: torch.Tensor, labels: torch.Tensor | None, settings: DistillSettings, generator: torch.Generator,
             par: DataParallel) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, int, torch.Tensor | None]]:
    """This process's share of each batch of the joint phase, its labels, the batch's full size, and which of
    ``x`` the share holds (None when its images are augmented, so they are new to the parent)."""
    for epoch in range(settings.epochs):
        for idx in torch.randperm(len(x), generator=generator).split(settings.batch_size):
            mine = par.shard(idx)
            # drawn for the whole batch on every process, and in plain epochs too: the same seed, the same batches
            flip, shift = draw_augment(len(idx), generator)
            ys = labels[mine] if labels is not None else None
            if epoch < settings.augment_epochs:
                yield apply_augment(x[mine], par.shard(flip), shift), ys, len(idx), None
            else:
                yield x[mine], ys, len(idx), mine


def _each(fn: Callable[[Student], T], students: list[Student]) -> list[T]:
    """``fn`` of every student, gradients off (per-student work outside the training steps)."""
    with torch.no_grad():
        return [fn(s) for s in students]


def _adam(params: list[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam, fused into one kernel where torch has one: for ten modules' parameters on one CPU thread
    the per-tensor loop took 35 ms a step, the fused kernel 8 ms."""
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def _fit_heads(students: list[Student], teacher: torch.Tensor, targets: list[int], x: torch.Tensor,
               labels: torch.Tensor | None, settings: DistillSettings, generator: torch.Generator,
               par: DataParallel) -> None:
    """The heads alone, on the backbones' features computed once (the first phase, and the last)."""
    for s in students:
        s.train(False)
    feats = _each(lambda s: in_chunks(lambda b: s.reads(s.backbone, b), x), students)
    heads = [p for s in students for p in s.head.parameters()]
    before = [p.requires_grad for p in heads]
    for p in heads:
        p.requires_grad_(True)
    opt = _adam(heads, settings.head_lr)
    for _ in range(settings.head_epochs):
        for idx in torch.randperm(len(x), generator=generator).split(settings.head_batch_size):
            mine = par.shard(idx)
            raw = torch.stack([s.head(f[mine]) for s, f in zip(students, feats, strict=True)])
            ys = labels[mine] if labels is not None else None
            _step(opt, _loss(raw, teacher[mine], targets, ys, settings, len(idx)).backward, heads, par)
    for p, flag in zip(heads, before, strict=True):
        p.requires_grad_(flag)


@contextmanager
def _channels_last(students: list[Student]) -> Iterator[None]:
    """The students' backbones in channels-last (NHWC) meanwhile, then back in the standard layout.

    oneDNN's CPU convolutions and BatchNorm run on NHWC without reordering; the standard layout
    afterwards is what the extraction and safetensors expect.
    """
    for s in students:
        s.backbone.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for s in students:
            s.backbone.to(memory_format=torch.contiguous_format)


@contextmanager
def _training(students: list[Student]) -> Iterator[list[nn.Parameter]]:
    """The students in training mode, their trainable parameters requiring gradients meanwhile."""
    params = [p for s in students for p in s.parameters()]
    for s in students:
        s.train(True)
    for p in params:
        p.requires_grad_(True)
    try:
        yield params
    finally:
        for p in params:
            p.requires_grad_(False)
        for s in students:
            s.train(False)


def _joint_phase(parent: nn.Module, students: list[Student], targets: list[int], x: torch.Tensor,
                 teacher: torch.Tensor, labels: torch.Tensor | None, settings: DistillSettings,
                 generator: torch.Generator, par: DataParallel, progress: bool) -> list[float]:
    """The second phase: backbones and heads together; the parent is asked about augmented images as they
    come, and its answers on the plain ones (``teacher``) are looked up. Returns each epoch's mean loss
    (this process's share of it)."""
    per_epoch = -(-len(x) // settings.batch_size)
    steps = settings.epochs * per_epoch
    losses: list[float] = []
    with _training(students) as params, progress_bar(progress, steps, "distil", "step") as bar:
        opt = _adam(params, settings.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
        for xb, ys, n, which in _batches(x, labels, settings, generator, par):
            if which is None:
                with torch.no_grad():
                    soft = parent(xb)
            else:
                soft = teacher[which]
            losses.append(_students_step(students, xb.contiguous(memory_format=torch.channels_last),
                                         lambda raw, soft=soft, ys=ys, n=n: _loss(raw, soft, targets, ys, settings, n),
                                         opt, params, par))
            sched.step()
            with torch.no_grad():
                for s in students:
                    for t in s.frozen_zero:
                        t.zero_()
            bar.update(1)
    return [sum(losses[e : e + per_epoch]) / per_epoch for e in range(0, len(losses), per_epoch)]


def distill(
    parent: nn.Module,
    students: list[Student],
    targets: list[int],
    x: torch.Tensor,
    settings: DistillSettings,
    generator: torch.Generator,
    par: DataParallel,
    progress: bool = False,
    labels: torch.Tensor | None = None,
) -> list[float]:
    """Train ``students`` (modules of ``targets``) in place to reproduce ``parent`` on ``x``, composed.

    Returns the mean training loss of each epoch of the joint phase (what the optimiser lowers).

    ``labels`` (the classes of ``x``) are used when ``settings.label_weight`` asks for them.

    Every process of a data-parallel group runs its share of each batch; gradients are summed
    before each step, so the result does not depend on how many processes ran it.
    """
    with torch.no_grad():
        teacher = in_chunks(parent, x)
    with _channels_last(students):
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        _fit_heads(students, teacher, targets, x_nhwc, labels, settings, generator, par)
        losses = _joint_phase(parent, students, targets, x, teacher, labels, settings, generator, par, progress)
        # running statistics of the final weights on the un-augmented images
        _each(lambda s: recalibrate_batchnorm(s.backbone, x_nhwc, keep=s.frozen), students)
        if settings.refit_heads:
            _fit_heads(students, teacher, targets, x_nhwc, labels, settings, generator, par)
    return losses
