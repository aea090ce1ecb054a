"""The interface every splitting method implements, and the registry that names them.

A method gets a frozen parent, its channel groups and preprocessed training / validation data, and
returns, for each requested class, which channels of each group to keep and the head to put on
top. Everything else — extraction, calibration, metrics, cards, publishing — is shared, which is
what keeps modules of every method in one repo format.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..channels import ChannelGroup
from ..errors import HubmodError
from ..parallel import DataParallel


@dataclass
class SplitContext:
    """What a method works from. ``model`` is the parent in eval mode with frozen parameters."""

    model: nn.Module
    groups: list[ChannelGroup]
    num_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    targets: list[int]
    example_input: torch.Tensor | None = None  # one zero image, for tracing the graph
    seed: int = 0
    progress: bool = True
    parent_val_accuracy: float = 0.0
    parallel: DataParallel = field(default_factory=DataParallel)  # this process among a launched group
    distill_x: torch.Tensor | None = None  # images to distil the parent into the modules on
    distill_y: torch.Tensor | None = None  # their labels (used only with a label weight)


@dataclass
class ClassSlice:
    """One class's module as a method decided it: kept channels per group and its head."""

    class_index: int
    kept: dict[str, list[int]]
    head: dict
    head_state: dict[str, torch.Tensor] = field(default_factory=dict)
    # A method that already extracted (and adapted) the module hands it over with the groups it
    # kept as one zeroed channel; otherwise the shared pipeline extracts it from ``kept``.
    backbone: nn.Module | None = None
    zeroed: list[str] = field(default_factory=list)


@dataclass
class SplitOutcome:
    slices: list[ClassSlice]
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """The values an option allows: a test, and the words that say it (``"at least 1"``)."""

    holds: Callable[[Any], bool]
    allowed: str


def at_least(bound: float) -> Rule:
    return Rule(lambda v: v >= bound, f"at least {bound}")


def greater_than(bound: float) -> Rule:
    return Rule(lambda v: v > bound, f"greater than {bound}")


def between(low: float, high: float) -> Rule:
    return Rule(lambda v: low <= v <= high, f"between {low} and {high}")


def one_of(*values: str) -> Rule:
    return Rule(lambda v: v in values, f"one of: {', '.join(values)}")


def method_option(default: Any, help: str, rule: Rule | None = None) -> Any:
    """A method option, declared once: its default, one line of help (``hubmod methods``, the docs)
    and the values it allows, which ``MethodConfig.validate`` checks (as PEFT's configs keep help in
    field metadata)."""
    return field(default=default, metadata={"help": help, "rule": rule})


@dataclass
class MethodConfig:
    """Base for method configs: every field is a documented, validated, JSON-able option
    (``method_option``); a subclass names its method in ``method_name`` for error messages."""

    method_name: ClassVar[str] = "this method"
    train_per_class: int = method_option(400, "training images per class", at_least(1))
    val_per_class: int = method_option(200, "held-out images per class", at_least(1))
    max_auc_loss: float = method_option(
        1.0, "most ROC AUC a module may lose against the parent's own logit for its class (its class against the "
        "parent's others, on validation images, each scored alone) before its class gets the whole parent instead, "
        "so every published module recognises its class on its own; 1 = no limit (a module that scores every image "
        "alike is always replaced); a split with --negatives uses 0.05 unless this is given", between(0, 1))
    # Named sets of options (``-p preset=NAME``): what a benchmark showed to work together, with
    # the reason; options given beside a preset override its values.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    preset_docs: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_options(cls, options: dict[str, Any] | None, method: str) -> MethodConfig:
        options = dict(options or {})
        if "preset" in options:
            name = options.pop("preset")
            if name not in cls.presets:
                known = ", ".join(cls.presets) or "none"
                raise HubmodError(f"unknown preset {name!r} for method {method}; its presets are: {known}")
            options = {**cls.presets[name], **options}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise HubmodError(
                f"unknown option(s) {', '.join(unknown)} for method {method}; "
                f"its options are: {', '.join(fields)}"
            )
        values = {}
        for name, value in options.items():
            default = fields[name].default
            try:
                values[name] = _coerce(value, type(default))
            except (TypeError, ValueError):
                raise HubmodError(f"option {name}={value!r} for {method} must be {type(default).__name__}") from None
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def distill_per_class_needed(self) -> int:
        """Images per class the method distils on (0: none), which the split loads beside the others."""
        return 0

    def validate(self) -> None:
        """Check every option against its declared rule; a subclass adds rules that tie options together."""
        self.check_rules(self.method_name, {
            f.name: (rule.holds(getattr(self, f.name)), rule.allowed)
            for f in dataclasses.fields(self) if (rule := f.metadata.get("rule")) is not None})

    def check_rules(self, method: str, rules: dict[str, tuple[bool, str]]) -> None:
        """Raise one line per broken rule ``{option: (holds, what is allowed)}``: the option, its value,
        what is allowed and its default, and nothing about the options that are fine."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        bad = [f"{name}={getattr(self, name)!r} must be {allowed} (default {defaults[name]!r})"
               for name, (holds, allowed) in rules.items() if not holds]
        if bad:
            raise HubmodError(f"{method} option {'; '.join(bad)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def option_help(cls) -> dict[str, str]:
        """``{option: its line of help}``, in declaration order."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    @classmethod
    def option_lines(cls) -> list[str]:
        """``name=default (what it does)`` for every option, in declaration order."""
        return [f"{f.name}={f.default!r}" + (f" ({f.metadata['help']})" if f.metadata.get("help") else "")
                for f in dataclasses.fields(cls)]

    @classmethod
    def preset_lines(cls) -> list[str]:
        """``preset=name (what it is for): its options`` for every preset."""
        return [f"preset={name} ({cls.preset_docs.get(name, '')}): "
                + " ".join(f"{k}={v}" for k, v in options.items()) for name, options in cls.presets.items()]

    @classmethod
    def describe(cls) -> str:
        return "; ".join(cls.option_lines())


def _coerce(value: Any, typ: type) -> Any:
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    if typ is bool:
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ValueError(value)
    if typ is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return typ(value)


class Splitter(ABC):
    """A splitting method: a name, a paper, a config class, and ``split``."""

    name: ClassVar[str]
    pretty_name: ClassVar[str]
    paper: ClassVar[str]
    paper_url: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]]
    data_parallel: ClassVar[bool] = False  # can run as several launched processes sharing each batch
    any_device: ClassVar[bool] = False  # searches on a GPU when given one (otherwise on the CPU)
    # Needs images of the requested classes only, plus a sample of the others (see
    # split_pipeline.class_plan), so splitting k classes of a many-class parent costs what k do.
    samples_other_classes: ClassVar[bool] = False

    def __init__(self, config: MethodConfig):
        self.config = config

    def search_groups(self, targets: list[int]) -> list[list[int]]:
        """The requested classes in the groups searched one after another, each on its own draw of
        images (split_pipeline._search_groups). By default one search makes every module."""
        return [list(targets)]

    @abstractmethod
    def split(self, ctx: SplitContext) -> SplitOutcome: ...
