"""Training and publishing small timm parents — for the examples, tests and benchmarks.

hubmod splits models someone else trained; this exists so that every example and test can start
from a real trained parent made on this machine in seconds to minutes, published in timm's own
repo format (config.json + model.safetensors), which ``timm.create_model('hf-hub:...')`` reads.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .augment import augment
from .data import LabeledImages
from .hub import Hub, get_hub
from .parents import VALIDATION_KEY
from .preprocess import DataConfig, preprocess

FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530


@dataclass
class TrainedParent:
    model: nn.Module
    class_names: list[str]
    data_config: DataConfig
    train_seconds: float
    epochs: int
    train_samples: int
    validation: dict | None = None  # images held out of training: {"dataset", "split", "rows"}; see hold_out


def fashion_mnist_config(in_chans: int = 1, size: int = 28) -> DataConfig:
    return DataConfig((in_chans, size, size), (FASHION_MNIST_MEAN,) * in_chans, (FASHION_MNIST_STD,) * in_chans,
                      "bilinear", 1.0)


def hold_out(data: LabeledImages, per_class: int, seed: int, dataset: str) -> tuple[LabeledImages, dict]:
    """Keep ``per_class`` images of each class out of training, and say which, so a split can validate on them.

    A split compares its modules with the parent on validation images. Images the parent trained
    on flatter the parent (on Fashion-MNIST, resnet18 scored 1.6 points more on them than on test
    images), so masks that would do as well as the parent on new images look worse and are refused.
    The record names the rows of the dataset split, which the split reads back from config.json.
    """
    held = data.stratified(per_class, torch.Generator().manual_seed(seed + 7919))
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[held] = False
    record = {"dataset": dataset, "split": data.split, "rows": sorted(int(r) for r in data.rows[held])}
    return data.subset(torch.nonzero(keep).flatten()), record


def train_parent(
    arch: str,
    data: LabeledImages,
    data_config: DataConfig,
    epochs: float = 2,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    model_args: dict | None = None,
    progress: bool = True,
    validation: dict | None = None,
    label_smoothing: float = 0.1,
) -> TrainedParent:
    """Train ``arch`` from scratch on ``data`` (AdamW, one-cycle cosine, flips and 2-px shifts).

    ``epochs`` may be fractional: 0.2 trains on a fifth of an epoch's batches (an under-trained parent).
    ``validation`` is ``hold_out``'s record of the images kept out of ``data``; it is published with the parent.
    ``label_smoothing`` is the cross-entropy's; it is said to make penultimate features transfer worse to
    classes a model never saw (Kornblith et al., 2021), which BENCHMARKS.md (fit-alternatives) measures.
    """
    import timm
    from tqdm.auto import tqdm

    import hubmod.archs  # noqa: F401

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=len(data.class_names),
                              in_chans=data_config.channels, **(model_args or {}))
    x_all = preprocess(data.images, data_config)
    y_all = data.labels
    steps_per_epoch = math.ceil(len(y_all) / batch_size)
    total = max(1, int(round(epochs * steps_per_epoch)))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    model.train()
    start = time.perf_counter()
    step = 0
    with tqdm(total=total, desc=f"train {arch}", unit="step", disable=not progress, leave=False) as bar:
        while step < total:
            for idx in torch.randperm(len(y_all), generator=gen).split(batch_size):
                if step >= total:
                    break
                if len(idx) < 2:  # BatchNorm needs two samples in train mode
                    continue
                xb = augment(x_all[idx], gen)
                loss = F.cross_entropy(model(xb), y_all[idx], label_smoothing=label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    data_cfg = data_config
    model.pretrained_cfg = {**model.pretrained_cfg, **_pretrained_cfg(data_cfg, data.class_names)}
    return TrainedParent(model, list(data.class_names), data_cfg, time.perf_counter() - start, epochs, len(y_all),
                         validation)


def _pretrained_cfg(cfg: DataConfig, class_names: list[str]) -> dict:
    return {"input_size": tuple(cfg.input_size), "mean": tuple(cfg.mean), "std": tuple(cfg.std),
            "interpolation": cfg.interpolation, "crop_pct": cfg.crop_pct, "num_classes": len(class_names),
            "label_names": list(class_names)}


def save_parent(parent: TrainedParent, directory: str | Path, dataset_id: str | None = None,
                license: str = "mit", notes: str = "") -> Path:
    """Write a timm-format repo: timm's own ``save_for_hf`` plus a short model card."""
    from huggingface_hub import ModelCard, ModelCardData
    from timm.models import save_for_hf

    directory = Path(directory)
    extra = {VALIDATION_KEY: parent.validation} if parent.validation else {}
    save_for_hf(parent.model, str(directory), model_config={"label_names": parent.class_names, **extra},
                safe_serialization=True, data_config=parent.data_config.to_dict())
    config = json.loads((directory / "config.json").read_text())
    arch = config["architecture"]
    data = ModelCardData(library_name="timm", license=license, tags=["image-classification", "timm", "hubmod-parent"],
                         datasets=[dataset_id] if dataset_id else None)
    body = (
        f"# {arch} trained on {dataset_id or 'a local dataset'}\n\n"
        f"A {arch} classifier for {len(parent.class_names)} classes ({', '.join(parent.class_names)}), trained "
        f"from scratch for {parent.epochs} epoch(s) on {parent.train_samples} images in "
        f"{parent.train_seconds:.0f} s by hubmod's parent trainer. Input: {list(parent.data_config.input_size)}.\n"
        + (f"{len(parent.validation['rows'])} images of the {parent.validation['split']} split were held out of "
           f"training (their rows: `{VALIDATION_KEY}` in config.json); `hubmod split` validates on them.\n"
           if parent.validation else "") +
        f"{notes}\n\n"
        "```python\nimport timm\nmodel = timm.create_model('hf-hub:<this repo>', pretrained=True)\n```\n"
    )
    ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(directory / "README.md")
    return directory


def publish_parent(parent: TrainedParent, repo_id: str, hub: str | Hub | None = None,
                   dataset_id: str | None = None, notes: str = "") -> str:
    """Push a trained parent as a timm-format repo; returns the commit sha."""
    with tempfile.TemporaryDirectory(prefix="hubmod-parent-") as tmp:
        save_parent(parent, tmp, dataset_id=dataset_id, notes=notes)
        arch = parent.model.pretrained_cfg.get("architecture", "")
        return get_hub(hub).push_folder(repo_id, Path(tmp), f"parent {arch}")
