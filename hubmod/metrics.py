"""Accuracy and per-class precision / recall / F1 of parents, modules and composed classifiers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from .data import LabeledImages
from .devices import device_of
from .preprocess import DataConfig, preprocess


@dataclass
class EvalReport:
    accuracy: float
    n: int
    per_class: dict[str, dict[str, float]]
    model: str = ""
    dataset: str = ""
    split: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def per_class_metrics(pred: torch.Tensor, y: torch.Tensor, class_names: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for c, name in enumerate(class_names):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int((y == c).sum())}
    return out


def report(pred: torch.Tensor, y: torch.Tensor, class_names: list[str], **info) -> EvalReport:
    return EvalReport(accuracy=float((pred == y).float().mean()) if len(y) else 0.0, n=len(y),
                      per_class=per_class_metrics(pred, y, class_names), **info)


@torch.no_grad()
def model_logits(model: nn.Module, images: torch.Tensor, cfg: DataConfig, batch_size: int = 512) -> torch.Tensor:
    """Logits of a plain classifier over uint8 images, preprocessing one batch at a time."""
    model.eval()
    device = device_of(model)
    return torch.cat([model(preprocess(images[i : i + batch_size], cfg).to(device)).cpu()
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def pre_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Features entering a timm model's classifier (on the CPU)."""
    device = device_of(model)
    parts = [model.forward_head(model.forward_features(x[i : i + batch_size].to(device)), pre_logits=True)
             for i in range(0, len(x), batch_size)]
    return torch.cat([p.cpu() for p in parts])


def parent_report(model: nn.Module, data: LabeledImages, cfg: DataConfig, name: str = "") -> EvalReport:
    pred = model_logits(model, data.images, cfg).argmax(1)
    return report(pred, data.labels, data.class_names, model=name, dataset=data.name, split=data.split)
