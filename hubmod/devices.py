"""Which torch device hubmod computes on.

``auto`` takes the best device this machine has (CUDA, then Apple MPS, then the CPU), so nothing
assumes a GPU and one is used when present. A device that was asked for by name but is missing is
a one-line error, not a crash inside torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import HubmodError, option

if TYPE_CHECKING:  # torch is imported when a device is needed, so `hubmod --help` stays fast
    import torch
    import torch.nn as nn

AUTO = "auto"
DEVICE_HELP = "Device to compute on: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str | torch.device | None = AUTO) -> torch.device:
    """A torch device from a user's choice, checked against what this machine has."""
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    name = (name or AUTO).strip().lower()
    if name == AUTO:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HubmodError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HubmodError(f"{option('device', name)}: this machine has no CUDA device that torch can use; "
                              f"use {option('device', 'cpu')} (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HubmodError(f"{option('device', name)}: there are only {torch.cuda.device_count()} CUDA device(s)")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise HubmodError(f"{option('device', name)}: Apple MPS is not available here; "
                              f"use {option('device', 'cpu')} (or auto)")
        return device
    raise HubmodError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def device_of(module: nn.Module) -> torch.device:
    """Where a model's parameters live (the CPU for a model without any)."""
    import torch

    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
