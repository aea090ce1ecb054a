"""Turning raw images into a model's input, from the model's own data config.

Each parent, and so each module, carries its preprocessing (input size and channels, mean, std,
interpolation, crop) resolved by timm from its pretrained_cfg. That is what lets modules from a
1-channel 28x28 parent and a 3-channel 32x32 parent be composed on the same raw images: each
applies its own config. The transform runs on uint8 tensors in batches, so a whole dataset is
preprocessed without PIL in the loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import HubmodError
from .untrusted import printable

MAX_SIDE = 2048  # pixels per side a model's input may have (bounds what loading a config may trace)
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class DataConfig:
    """What a model expects as input; hashable so equal configs share one preprocessing pass."""

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    @classmethod
    def from_dict(cls, cfg: dict) -> DataConfig:
        try:
            size = tuple(int(v) for v in cfg["input_size"])
            mean = tuple(float(v) for v in cfg["mean"])
            std = tuple(float(v) for v in cfg["std"])
            interp = str(cfg.get("interpolation") or "bilinear")
            crop = float(cfg.get("crop_pct") or 1.0)
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise HubmodError(f"data config is incomplete or malformed ({printable(e)[:200]})") from None
        if len(size) != 3 or min(size) < 1 or max(size[1:]) > MAX_SIDE or size[0] > 4:
            raise HubmodError(f"data config input_size {size} is not (channels<=4, height<={MAX_SIDE}, "
                              f"width<={MAX_SIDE})")
        if (len(mean) != size[0] or len(std) != size[0] or not all(math.isfinite(v) for v in mean + std)
                or min(std) < 1e-4 or max(map(abs, mean + std)) > 1e4):
            raise HubmodError(f"data config mean/std {mean}/{std} do not fit {size[0]} channel(s)")
        if interp not in ("bilinear", "bicubic", "nearest", "area"):
            interp = "bilinear"
        if not 0.1 <= crop <= 1.0:
            raise HubmodError(f"data config crop_pct {crop} is outside 0.1..1.0")
        return cls(size, mean, std, interp, crop)

    @classmethod
    def from_pretrained_cfg(cls, pretrained_cfg: dict) -> DataConfig:
        from timm.data import resolve_data_config

        return cls.from_dict(resolve_data_config(pretrained_cfg=dict(pretrained_cfg)))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def channels(self) -> int:
        return self.input_size[0]


def largest_input_size(configs: Iterable[DataConfig]) -> tuple[int, int]:
    """The largest (height, width) among models that each resize the images themselves: decode once at that size."""
    return tuple(max((tuple(c.input_size[1:]) for c in configs), key=lambda hw: hw[0] * hw[1]))


def to_uint8_batch(images) -> torch.Tensor:
    """Raw images as one uint8 tensor [B, C, H, W].

    Accepts a PIL image or a list of them (all the same size), a uint8 numpy array or tensor shaped
    [H, W], [H, W, C] / [B, H, W, C] (numpy, channels last), or [C, H, W] (C = 1 or 3) / [B, H, W] /
    [B, C, H, W] (tensor, channels first).
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None  # noqa: N806
    if Image is not None and isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, Sequence) and not isinstance(images, torch.Tensor | np.ndarray):
        if not images:
            raise HubmodError("no images given")
        arrays = [_pil_to_chw(im) if Image is not None and isinstance(im, Image.Image) else to_uint8_batch(im)[0]
                  for im in images]
        shapes = {tuple(a.shape) for a in arrays}
        if len(shapes) > 1:
            raise HubmodError(f"images differ in size {sorted(shapes)}: resize them to one size first")
        return torch.stack(arrays)
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8:
            raise HubmodError(f"numpy images must be uint8 (got {images.dtype})")
        t = torch.from_numpy(np.ascontiguousarray(images))
        if t.ndim == 2:
            return t[None, None]
        if t.ndim == 3:  # HWC for one image, unless the last dim is not a channel count
            return t.permute(2, 0, 1)[None] if t.shape[-1] in (1, 3, 4) else t[:, None]
        if t.ndim == 4:
            return t.permute(0, 3, 1, 2) if t.shape[-1] in (1, 3, 4) else t
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8:
            raise HubmodError("raw image tensors must be uint8; float tensors are taken as preprocessed input")
        t = images
        if t.ndim == 2:
            return t[None, None]
        if t.ndim == 3:  # [C, H, W] for one gray or RGB image, else a batch [B, H, W]
            return t[None] if t.shape[0] in (1, 3) else t[:, None]
        if t.ndim == 4:
            return t
    raise HubmodError(f"cannot read images of type {type(images).__name__}: pass PIL images or uint8 arrays")


def _pil_to_chw(im) -> torch.Tensor:
    if im.mode not in ("L", "RGB", "RGBA"):
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def preprocess(batch: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """uint8 [B, C, H, W] -> normalised float [B, *cfg.input_size]."""
    x = batch.float().div_(255.0)
    x = _match_channels(x, cfg.channels)
    x = _resize_crop(x, cfg)
    mean = torch.tensor(cfg.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def _match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    c = x.shape[1]
    if c == 4:  # drop alpha
        x, c = x[:, :3], 3
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    if c == 3 and channels == 1:
        w = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    raise HubmodError(f"cannot turn {c}-channel images into the {channels} channels this model expects")


def _resize_crop(x: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """timm's eval transform: resize the shorter side to size / crop_pct, then centre-crop."""
    _, h_out, w_out = cfg.input_size
    h, w = x.shape[-2:]
    if (h, w) == (h_out, w_out) and cfg.crop_pct == 1.0:
        return x
    scale = max(h_out, w_out) / cfg.crop_pct
    if h <= w:
        new_h, new_w = int(math.floor(scale)), int(math.floor(scale * w / h))
    else:
        new_h, new_w = int(math.floor(scale * h / w)), int(math.floor(scale))
    new_h, new_w = max(new_h, h_out), max(new_w, w_out)
    if (new_h, new_w) != (h, w):
        mode = cfg.interpolation
        # antialiasing only matters when shrinking (bilinear upsampling is identical without it, and
        # then exports to ONNX); timm's bicubic differs without it, so it always keeps it
        shrink = new_h < h or new_w < w
        kwargs = ({"align_corners": False, "antialias": shrink or mode == "bicubic"}
                  if mode in ("bilinear", "bicubic") else {})
        x = F.interpolate(x, size=(new_h, new_w), mode=mode, **kwargs)
        if mode == "bicubic":
            x = x.clamp_(0.0, 1.0)
    top, left = (new_h - h_out) // 2, (new_w - w_out) // 2
    return x[..., top : top + h_out, left : left + w_out]


def prepare_input(images, cfg: DataConfig) -> torch.Tensor:
    """Raw images -> preprocessed batch; a float tensor already shaped for ``cfg`` passes through."""
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        expected = tuple(cfg.input_size)
        if images.ndim == 3:
            images = images[None]
        if tuple(images.shape[1:]) != expected:
            raise HubmodError(
                f"preprocessed input has shape {tuple(images.shape[1:])} but this model expects {expected}; "
                "pass raw uint8 images to let it preprocess them"
            )
        return images
    return preprocess(to_uint8_batch(images), cfg)


def batches_by_config(images, configs: Iterable[DataConfig], batch_size: int,
                      who: str = "these models") -> Iterator[dict[DataConfig, torch.Tensor]]:
    """Batches of ``images``, each preprocessed once per distinct data config among ``configs``.

    Models that share a data config share one preprocessed tensor. A float tensor is taken as
    already preprocessed, which only makes sense when there is one data config.
    """
    distinct = list(dict.fromkeys(configs))
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        if len(distinct) > 1:
            raise HubmodError(f"{who} expect different preprocessing: pass raw uint8 or PIL images")
        x = prepare_input(images, distinct[0])
        for start in range(0, len(x), batch_size):
            yield {distinct[0]: x[start : start + batch_size]}
        return
    raw = to_uint8_batch(images)
    for start in range(0, len(raw), batch_size):
        yield {cfg: preprocess(raw[start : start + batch_size], cfg) for cfg in distinct}
