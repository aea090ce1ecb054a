"""Distilling the parent into its extracted modules, so a module can drop more of the parent.

A mask search keeps the parent's weights: the channels a module keeps still compute what they
computed for all N classes, with the rest of the network gone. Once half the kernels are off, the
kept ones can be retrained to do the job alone. The modules learn to reproduce the parent's N-way
softmax, composed: module c's raw score stands in for the parent's logit c (classes not being split
keep the parent's own logit), and the KL divergence to the parent's softmax at a temperature is
minimised (Hinton et al. 2015). The targets are the parent's outputs, so the images can be augmented
freely (random flips and shifts): the parent is asked about each augmented image itself, which keeps
teacher and students consistent (Beyer et al. 2022). With a label weight, the loss also takes that
share of cross-entropy against the images' true labels, Hinton et al.'s second objective: the
composition is then taught what the parent got wrong, not only what it got right. On the 26 %-kernel
masks of a resnet18 Fashion-MNIST split, two epochs at weight 0.5 came to 88.22-88.40 % on the test
set over three seeds, against 88.07-88.21 % from the parent's outputs alone (parent 89.04 %;
BENCHMARKS.md, distill-repeat): a gain of 0.16 points, about the spread between seeds.

Two phases: the heads alone first, on features computed once, which moves the heads from the
search's scale onto the parent's logit scale cheaply; then backbones and heads together, with
BatchNorm in training mode (its statistics are re-estimated on the plain images at the end); a
student's frozen layers (its stem, shared with the other modules of the parent) stay as they are. Groups
that a module keeps as one zeroed channel are zeroed again after every step, so they stay exactly
equivalent to removed channels.

The students are independent networks that meet only in the loss, so their forward and backward
passes run on several threads at once (``workers``): the loss's gradient with respect to each
student's output is computed first, then each student back-propagates its own share. A module's
layers are too narrow to keep two cores busy inside one convolution; two at a time, a distillation
step of ten resnet18 modules took 27 % less time on 2 cores (BENCHMARKS.md, distill-repeat). The
result is the same as one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
    label_weight: float = 0.0  # share of the loss that is cross-entropy against the true labels


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


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter], par: DataParallel) -> None:
    opt.zero_grad()
    loss.backward()
    par.sum_grads(params)
    opt.step()


def default_workers() -> int:
    """Students run at once: one per intra-op thread torch would use, so the cores stay busy."""
    return max(1, torch.get_num_threads())


@contextmanager
def _threads_each(workers: int) -> Iterator[ThreadPoolExecutor | None]:
    """A pool of ``workers`` threads, with torch's intra-op threads shared out among them meanwhile."""
    if workers <= 1:
        yield None
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, before // workers))
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="hubmod-distil") as pool:
            yield pool
    finally:
        torch.set_num_threads(before)


def _students_step(students: list[Student], xb: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor],
                   opt: torch.optim.Optimizer, params: list[nn.Parameter], par: DataParallel,
                   pool: ThreadPoolExecutor | None) -> None:
    """One optimiser step of all students on ``xb``; ``loss_of`` maps their stacked raw scores [k, B] to the loss."""
    if pool is None:
        _step(opt, loss_of(torch.stack([s(xb) for s in students])), params, par)
        return
    outs = list(pool.map(lambda s: s(xb), students))
    raw = torch.stack([o.detach() for o in outs]).requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_of(raw), raw)
    opt.zero_grad()
    list(pool.map(lambda i: outs[i].backward(grad[i]), range(len(outs))))
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
    labels: torch.Tensor | None = None,
    workers: int | None = None,
) -> None:
    """Train ``students`` (modules of ``targets``) in place to reproduce ``parent`` on ``x``, composed.

    ``labels`` (the classes of ``x``) are used when ``settings.label_weight`` asks for them.
    ``workers`` students run at once (default: torch's intra-op thread count).

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
            ys = labels[mine] if labels is not None else None
            _step(opt, _loss(raw, teacher[mine], targets, ys, settings, len(idx)), heads, par)
    del feats

    params = [p for s in students for p in s.parameters()]
    for p in params:
        p.requires_grad_(True)
    steps = settings.epochs * -(-len(x) // settings.batch_size)
    opt = torch.optim.Adam(params, lr=settings.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    bar = progress_bar(progress, steps, "distil", "step")
    workers = min(len(students), default_workers() if workers is None else workers)
    try:
        with _threads_each(workers) as pool:
            for s in students:
                s.train(True)
            for _ in range(settings.epochs):
                for idx in torch.randperm(len(x), generator=generator).split(settings.batch_size):
                    mine = par.shard(idx)
                    flip, shift = draw_augment(len(idx), generator)  # drawn for the whole batch on every process
                    xb = apply_augment(x[mine], par.shard(flip), shift)
                    with torch.no_grad():
                        soft = parent(xb)
                    ys = labels[mine] if labels is not None else None
                    _students_step(students, xb, lambda raw, soft=soft, ys=ys, n=len(idx):
                                   _loss(raw, soft, targets, ys, settings, n), opt, params, par, pool)
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
