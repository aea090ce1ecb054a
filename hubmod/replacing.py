"""Replace one class of a modular classifier with a better module of the same class (Pan & Rajan's
"replace" scenario): the rest of the model is untouched, pinned to the same module commits."""

from __future__ import annotations

from . import calibration
from .composed import ComposedClassifier, compose_modules, modules_of, resolve_ref
from .errors import HubmodError
from .hub import Hub
from .refs import match_class


def replace(model_source: str, class_name: str, with_ref: str, output: str | None = None,
            calibration_method: str = calibration.AUTO, hub: str | Hub | None = None,
            private: bool = False) -> ComposedClassifier:
    """``model_source`` (a composed classifier or split parent), ``class_name``'s module swapped for ``with_ref``."""
    pairs = modules_of(model_source, hub)
    index = match_class(class_name, [m.class_name for m, _ in pairs], f"model {model_source}")
    new = resolve_ref(with_ref, hub)
    if len(new) != 1:
        raise HubmodError(f"{with_ref} names {len(new)} modules; name one, e.g. {with_ref}:{class_name}")
    module = new[0][0]
    try:
        match_class(pairs[index][0].class_name, [module.class_name], with_ref)
    except HubmodError:
        raise HubmodError(f"{with_ref} is the module of {module.class_name!r}, not {pairs[index][0].class_name!r}: "
                          "a class is only replaced by a module of the same class") from None
    pairs[index] = new[0]
    return compose_modules(pairs, output, calibration_method, hub, private)
