"""``hubmod eval``: accuracy and per-class precision / recall / F1 of any model hubmod loads, by its kind.

Classifiers (a parent, a composed or a patched classifier) are scored on the images of their classes;
a module, as a one-vs-rest detector on every image of the split.
"""

from __future__ import annotations

import torch

from .composed import ComposedClassifier
from .data import LabeledImages, load_images
from .devices import AUTO, resolve_device
from .errors import HubmodError
from .hub import Hub
from .loading import COMPOSED, INDEX, MODULE, PARENT, PATCHED, Loaded, load
from .metrics import EvalReport, model_logits, report
from .module import ClassModule
from .parents import Parent
from .patching import PatchedClassifier
from .preprocess import largest_input_size


def evaluate(source: str | Loaded, dataset: str, split: str = "test", hub: str | Hub | None = None,
             device: str | torch.device | None = AUTO) -> EvalReport:
    """Accuracy and per-class precision/recall/F1 of a parent, module, composed or patched classifier.

    A module is evaluated as a one-vs-rest detector (its calibrated probability >= 0.5) on every
    image of the split; the others are evaluated as classifiers on the images of their classes.
    The model runs on ``device`` (``auto``: a GPU when there is one); images are decoded on the CPU.
    """
    target = resolve_device(device)
    loaded = source if isinstance(source, Loaded) else load(source, hub)
    name = loaded.snapshot.name
    if loaded.kind == INDEX:
        raise HubmodError(f"{name} is a split index: evaluate a module or compose a classifier from it")
    if isinstance(loaded.obj, torch.nn.Module):
        loaded.obj.to(target)
    else:
        loaded.obj.model.to(target)
    return _EVALUATE[loaded.kind](loaded.obj, name, dataset, split)


def _parent(parent: Parent, name: str, dataset: str, split: str) -> EvalReport:
    data = load_images(dataset, split, tuple(parent.data_config.input_size[1:]))
    data = data.for_classes(parent.class_names, name)
    pred = model_logits(parent.model, data.images, parent.data_config).argmax(1)
    return report(pred, data.labels, data.class_names, model=name, dataset=dataset, split=split)


def _composed(model: ComposedClassifier, name: str, dataset: str, split: str) -> EvalReport:
    data = load_images(dataset, split, largest_input_size(m.data_config for m in model.class_modules))
    data = data.for_classes(model.class_names, name)
    pred = model(data.images).argmax(1)
    return report(pred, data.labels, data.class_names, model=name, dataset=dataset, split=split,
                  extra={"calibration": model.calibration})


def _patched(patched: PatchedClassifier, name: str, dataset: str, split: str) -> EvalReport:
    data = load_images(dataset, split, largest_input_size([patched.weak_spec.data_config, patched.module.data_config]))
    data = data.for_classes(patched.class_names, name)
    pred = patched(data.images).argmax(1)
    return report(pred, data.labels, data.class_names, model=name, dataset=dataset, split=split,
                  extra={"patched_class": patched.class_names[patched.target], "strategy": patched.strategy})


def _module(module: ClassModule, name: str, dataset: str, split: str) -> EvalReport:
    data = load_images(dataset, split, tuple(module.data_config.input_size[1:]))
    own = _own_class_labels(data, module.class_name, name)
    pred = (module.probability(data.images) >= 0.5).long()
    return report(pred, own, ["rest", module.class_name], model=name, dataset=dataset, split=split,
                  extra={"mode": "one-vs-rest, Platt probability >= 0.5"})


_EVALUATE = {PARENT: _parent, MODULE: _module, COMPOSED: _composed, PATCHED: _patched}


def _own_class_labels(data: LabeledImages, class_name: str, where: str) -> torch.Tensor:
    folded = [c.casefold() for c in data.class_names]
    if class_name.casefold() not in folded:
        raise HubmodError(f"dataset {data.name} has no class {class_name!r} that {where} needs "
                          f"(dataset classes: {', '.join(data.class_names)})")
    return (data.labels == folded.index(class_name.casefold())).long()
