"""hubmod: split trained CNN classifiers into per-class modules, publish them, compose new classifiers.

The API (each name is imported on first use, so ``import hubmod`` and ``hubmod --help`` stay fast):

* ``split(source, dataset, method="gradsplitter", ...)`` -> ``SplitReport``: one module per class,
  published to the hub;
* ``compose(refs, output=None, fit=None, shots=10, ...)`` -> ``ComposedClassifier``: a classifier
  from modules named by ``REPO:CLASS``, optionally fitted on a few labelled images;
* ``compose_from_hub(classes, fit=None, candidates=5, ...)`` -> ``ComposedClassifier``: the same, by
  class name, from the modules on a hub that compose best (chosen on ``fit`` images when given);
* ``patch(weak_source, module_ref, output=...)`` -> ``PatchedClassifier``;
  ``replace(model_source, class_name, with_ref, output=...)`` -> ``ComposedClassifier``;
* ``find(classes, hub=None, ...)`` -> ``{class: [FoundModule, ...]}``: module repos of each class on a hub;
* ``evaluate(source, dataset)``, ``load(source)``, ``load_parent(source)``, ``export(source, path)`` (ONNX);
* the artifacts ``ClassModule``, ``ComposedClassifier``, ``PatchedClassifier`` (each has
  ``from_pretrained`` / ``save_pretrained`` / ``push_to_hub``);
* hubs: ``get_hub(name)``, ``LocalHub`` (embedded, the default), ``HfHub``; errors: ``HubmodError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "ClassModule": "hubmod.module",
    "ComposedClassifier": "hubmod.composed",
    "compose": "hubmod.composed",
    "compose_from_hub": "hubmod.from_hub",
    "split": "hubmod.split_pipeline",
    "PatchedClassifier": "hubmod.patching",
    "patch": "hubmod.patching",
    "replace": "hubmod.replacing",
    "SplitReport": "hubmod.split_pipeline",
    "evaluate": "hubmod.evaluation",
    "find": "hubmod.discovery",
    "FoundModule": "hubmod.discovery",
    "export": "hubmod.onnx_export",
    "load": "hubmod.loading",
    "load_parent": "hubmod.parents",
    "HubmodError": "hubmod.errors",
    "get_hub": "hubmod.hub",
    "LocalHub": "hubmod.hub",
    "HfHub": "hubmod.hub",
}

__all__ = [
    "ClassModule", "ComposedClassifier", "FoundModule", "HfHub", "HubmodError", "LocalHub", "PatchedClassifier",
    "SplitReport", "__version__", "compose", "compose_from_hub", "evaluate", "export", "find", "get_hub", "load",
    "load_parent", "patch", "replace", "split",
]

if TYPE_CHECKING:
    from .composed import ComposedClassifier, compose
    from .discovery import FoundModule, find
    from .errors import HubmodError
    from .evaluation import evaluate
    from .from_hub import compose_from_hub
    from .hub import HfHub, LocalHub, get_hub
    from .loading import load
    from .module import ClassModule
    from .onnx_export import export
    from .parents import load_parent
    from .patching import PatchedClassifier, patch
    from .replacing import replace
    from .split_pipeline import SplitReport, split


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hubmod' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
