"""Splitting methods, by name. Each lives in its own file behind the interface in ``base``."""

from __future__ import annotations

from ..errors import HubmodError
from .activation import ActivationConfig, ActivationSplitter
from .base import ClassSlice, MethodConfig, SplitContext, SplitOutcome, Splitter
from .cnnsplitter import CNNSplitter, CNNSplitterConfig
from .gradsplitter import GradSplitter, GradSplitterConfig

METHODS: dict[str, type[Splitter]] = {cls.name: cls for cls in (GradSplitter, CNNSplitter, ActivationSplitter)}


def get_splitter(name: str, options: dict | None = None) -> Splitter:
    cls = METHODS.get(name)
    if cls is None:
        raise HubmodError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return cls(cls.config_class.from_options(options, name))


__all__ = [
    "METHODS", "ActivationConfig", "ActivationSplitter",
    "CNNSplitter", "CNNSplitterConfig", "ClassSlice", "GradSplitter", "GradSplitterConfig",
    "MethodConfig", "SplitContext", "SplitOutcome", "Splitter", "get_splitter",
]
