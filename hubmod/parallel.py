"""Data-parallel splitting over several processes, through Hugging Face Accelerate.

A split of a big parent is dominated by GradSplitter's mask training: every step runs the batch
once per module. Launched under ``accelerate launch`` (or ``torchrun``), each process runs its
share of every batch and the gradients are summed across processes before the optimiser step, so
every process holds the same masks and heads, as one process would on the whole batch. Work that
is per module (extracting and re-measuring modules between epochs) is dealt out by module.

Single-process runs never import Accelerate or touch ``torch.distributed``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from .errors import HubmodError


@dataclass(frozen=True)
class DataParallel:
    """Where this process stands among the processes of one split."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This process's part of a batch (every process draws the same batch from the same seed)."""
        return idx[self.rank :: self.world] if self.enabled else idx

    def owner(self, item: int) -> int:
        """The process that computes per-module work ``item``."""
        return item % self.world

    def sum_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum gradients over processes, in place; a missing gradient counts as zero."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def share(self, tensor: torch.Tensor, owner: int) -> torch.Tensor:
        """``tensor`` as computed by process ``owner`` (others pass a buffer of the same shape)."""
        if self.enabled:
            import torch.distributed as dist

            dist.broadcast(tensor, src=owner)
        return tensor

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def launched_processes() -> int:
    """How many processes the launcher (accelerate launch, torchrun) started; 1 without one."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def data_parallel() -> DataParallel:
    """This process's place in a launched group, setting up the process group on first use (gloo on CPU)."""
    if launched_processes() <= 1:
        return DataParallel()
    try:
        from accelerate import PartialState
    except ImportError as err:  # pragma: no cover - accelerate is a dependency
        raise HubmodError("a multi-process split needs Hugging Face Accelerate: pip install accelerate") from err
    state = PartialState(cpu=not torch.cuda.is_available())
    return DataParallel(rank=state.process_index, world=state.num_processes)


def close() -> None:
    """Tear the process group down at the end of a launched split, so processes exit cleanly."""
    if launched_processes() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
