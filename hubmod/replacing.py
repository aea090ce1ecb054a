"""Replace one class of a modular classifier with a better module of the same class (Pan & Rajan's
"replace" scenario): the rest of the model is untouched, pinned to the same module commits."""

from __future__ import annotations

from . import calibration
from .artifact import CONFIG, artifact_class
from .composed import DEFAULT_COMBINER, ComposedClassifier, compose_modules, modules_of, resolve_ref
from .errors import HubmodError
from .fitting import ADAPTED, HELD_OUT
from .hub import Hub, open_ref
from .refs import match_class


def replace(model_source: str, class_name: str, with_ref: str, output: str | None = None,
            calibration_method: str = calibration.AUTO, hub: str | Hub | None = None,
            private: bool = False, fit: str | None = None, shots: int | None = None,
            seed: int | None = None, adapt: str | None = None) -> ComposedClassifier:
    """``model_source`` (a composed classifier or split parent), ``class_name``'s module swapped for ``with_ref``.

    A fitted composition is fitted again with its combiner when ``fit`` names the labelled data
    (its shots, seed and split unless given), an adapted one adapted again when ``adapt`` names the
    unlabelled images (its split and seed as before); otherwise it is refused, since the old
    combiner was fitted to the old module's scores.
    """
    fitted = _fit_record(model_source, hub)
    adapted = fitted is not None and fitted.get("method") == ADAPTED
    if adapted and adapt is None:
        raise HubmodError(f"{model_source} was adapted to unlabelled images of {fitted.get('dataset')}; its offsets do "
                          f"not fit a new module: name those images again (--adapt {fitted.get('dataset')}) to adapt "
                          "it again")
    if fitted is not None and not adapted and fit is None:
        raise HubmodError(f"{model_source} was fitted on {fitted.get('shots')} images per class of "
                          f"{fitted.get('dataset')}; its combiner does not fit a new module: name the fit data again "
                          f"(--fit {fitted.get('dataset')}) to refit it")
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
    if adapt is not None:
        before = fitted if adapted else {}
        return compose_modules(pairs, output, calibration_method, hub, private,
                               seed=seed if seed is not None else int(before.get("seed", 0)),
                               adapt=adapt, adapt_split=str(before.get("split", "train")))
    if fitted is None and fit is None:
        return compose_modules(pairs, output, calibration_method, hub, private)
    fitted = fitted or {}
    return compose_modules(pairs, output, calibration_method, hub, private, fit,
                           shots if shots is not None else int(fitted.get("shots", 10)),
                           str(fitted.get("combiner", DEFAULT_COMBINER)),
                           seed if seed is not None else int(fitted.get("seed", 0)),
                           fitted.get("split") if fitted.get("source") != HELD_OUT else None)


def _fit_record(model_source: str, hub: str | Hub | None) -> dict | None:
    """How a composed classifier was fitted (None for an unfitted one or a split parent)."""
    from .refs import parse_ref

    ref, _ = parse_ref(model_source)
    snap = open_ref(ref, hub)
    if snap.file(CONFIG, required=False) is None:
        return None
    config = snap.read_json(CONFIG)
    if artifact_class(config) is not ComposedClassifier or "combiner" not in config:
        return None
    fit = config.get("fit")
    return fit if isinstance(fit, dict) else {}
