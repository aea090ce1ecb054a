"""ClassModule: one class's slice of a parent CNN, as a standalone model and a Hub repo.

A module is the parent architecture with most channels removed, plus a small head that turns the
pruned network's logits into one score for its class. Its repo holds ``model.safetensors``,
``config.json`` and a model card; loading it rebuilds the parent architecture from timm, replays
the channel removal from the kept indices in config.json and loads the weights — no code from the
repo is run and nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import calibration, cards, exposure, formatting
from .artifact import HubArtifact
from .blind import CANNOT_SEE
from .channels import drop_classifier, rebuild
from .devices import device_of
from .errors import HubmodError, InvalidRepoError, first_line
from .fast_inference import FastBackbone, use_fast_path
from .heads import build_head, describe_head, reads_features
from .hub import Hub, Snapshot
from .parents import ParentSpec
from .preprocess import MAX_SIDE, DataConfig, prepare_input
from .refs import class_tag
from .untrusted import Fields, check_format_version, printable
from .weights import WEIGHTS, load_parts


@dataclass
class ModuleConfig:
    """Everything config.json records to rebuild a module and say where it came from."""

    class_name: str
    class_index: int
    parent: dict  # ParentSpec fields + repo_id, revision (commit sha), hub, license
    data_config: dict
    channels: dict  # example_input, groups [{name, size, kept}], zeroed
    head: dict
    calibration: dict
    method: dict  # name, params
    metrics: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    split_id: str = ""
    command: str | None = None
    exposure: dict = field(default_factory=dict)  # what the outlier-exposure gate saw (hubmod.exposure); {} if none

    def to_dict(self) -> dict:
        data = {**ClassModule.config_header(), **asdict(self)}
        if not data["exposure"]:  # modules split without negatives keep the config.json they always had
            del data["exposure"]
        return data

    @classmethod
    def from_dict(cls, data: dict, where: str) -> ModuleConfig:
        """Checked field by field; also for the module configs a composed or patched config.json embeds."""
        if data.get("hubmod_kind") != ClassModule.kind:
            raise InvalidRepoError(f"{where} is not a hubmod class module (config.json hubmod_kind is "
                                   f"{printable(data.get('hubmod_kind'))[:60]!r})")
        check_format_version(data, ClassModule.format_version, ClassModule.title, where)
        try:
            cfg = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as e:
            raise InvalidRepoError(f"{where}: config.json misses fields ({printable(e)})") from None
        cfg._check(where)
        return cfg

    def _check(self, where: str) -> None:
        def bad(msg: str) -> InvalidRepoError:
            return InvalidRepoError(f"{where}: config.json {msg}; the repo is damaged, re-publish it")

        types = {"class_name": str, "class_index": int, "parent": dict, "data_config": dict, "channels": dict,
                 "head": dict, "calibration": dict, "method": dict, "metrics": dict, "dataset": dict,
                 "split_id": str, "command": (str, type(None)), "exposure": dict}
        for name, typ in types.items():
            if not isinstance(getattr(self, name), typ) or isinstance(getattr(self, name), bool):
                raise bad(f"field {name!r} must be {getattr(typ, '__name__', 'a string or null')}")
        labels = self.parent.get("label_names")
        if not isinstance(labels, list) or not 0 <= self.class_index < len(labels):
            raise bad(f"class_index {self.class_index} is outside the parent's {len(labels or [])} classes")
        if labels[self.class_index] != self.class_name:
            raise bad(f"class_name {printable(self.class_name)[:100]!r} is not the parent's class {self.class_index}")
        groups = self.channels.get("groups")
        if not isinstance(groups, list) or not groups:
            raise bad("has no channel groups")
        for g in groups:
            if not (isinstance(g, dict) and isinstance(g.get("name"), str) and isinstance(g.get("size"), int)
                    and isinstance(g.get("kept"), list) and g["kept"]
                    and all(isinstance(i, int) and 0 <= i < g["size"] for i in g["kept"])):
                label = printable(g.get("name") if isinstance(g, dict) else g)[:100]
                raise bad(f"channel group {label!r} is malformed")
        fixed = self.channels.get("fixed", [])
        if not isinstance(fixed, list) or not all(isinstance(f, dict) and isinstance(f.get("name"), str)
                                                  and isinstance(f.get("reason"), str) for f in fixed):
            raise bad("channels.fixed must list {name, size, reason} objects")
        ex = self.channels.get("example_input")
        if not (isinstance(ex, list) and len(ex) == 4 and ex[0] == 1
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIDE for v in ex)):
            raise bad("channels.example_input must be [1, C, H, W]")
        data = DataConfig.from_dict(self.data_config)
        if tuple(ex[1:]) != tuple(data.input_size):
            raise bad(f"channels.example_input {ex} is not one image of data_config input_size "
                      f"{list(data.input_size)}")
        cal = Fields(self.calibration, f"{where}: config.json calibration")
        for part, keys in (("own", ("min", "max")), ("other", ("min", "max")), ("platt", ("a", "b"))):
            stats = cal.obj(part)
            for key in keys:
                stats.number(key)
            for key in ("mean", "std", "q05", "q50", "q95"):
                stats.number(key, optional=True)
        self.exposure = exposure.checked_record(self.exposure, where)
        name = Fields(self.method, f"{where}: config.json method").str("name", optional=True, max_len=100)
        if name is not None:
            known = _known_methods()
            if name not in known:
                raise bad(f"method name {printable(name)!r} is not a method this hubmod knows")
            for key, value in known[name].items():  # the card links these: only the method's own are kept
                if self.method.setdefault(key, value) != value:
                    raise bad(f"method {key} is not {name}'s")

    @property
    def parent_spec(self) -> ParentSpec:
        return ParentSpec.from_config(self.parent, "module parent")

    @property
    def kept(self) -> dict[str, list[int]]:
        return {g["name"]: g["kept"] for g in self.channels["groups"]}


def _known_methods() -> dict[str, dict[str, str]]:
    """Each method's name -> the title and paper URL a module config records (configs written before
    they were recorded get them on load)."""
    from .splitters import METHODS  # the methods' code is only needed for their names, when a config is read

    return {name: method_record(cls) for name, cls in METHODS.items()}


def method_record(cls: Any) -> dict[str, str]:
    """What a module's config.json says about the method that split it, beside its name and options."""
    return {"title": cls.pretty_name, "paper_url": cls.paper_url}


class ClassModule(HubArtifact, nn.Module):
    """A standalone model that scores how much an image looks like one class."""

    kind = "class_module"
    format_version = 1
    title = "class module"
    card_template = "module.md.j2"

    def __init__(self, backbone: nn.Module, head: nn.Module, config: ModuleConfig):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = config
        self.data_config = DataConfig.from_dict(config.data_config)
        self.fast_backbone = FastBackbone()
        # the outlier-exposure gate (hubmod.exposure): P(own class) from the head's input, or None
        self.exposure = nn.Linear(self.head_width, 1) if config.exposure else None
        self.eval()

    # ------------------------------------------------------------------ inference

    @property
    def class_name(self) -> str:
        return self.config.class_name

    @property
    def class_names(self) -> list[str]:
        """The one class the module scores (every loadable kind says which classes it covers)."""
        return [self.config.class_name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw scores [B] for preprocessed input [B, C, H, W] (moved to the module's device)."""
        return self.head(self.head_input(x))

    def head_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the head reads [B, width]: the pruned backbone's pooled features, or its parent's logits.

        Without gradients, in eval mode, the backbone runs as its inference copy (see
        hubmod.fast_inference): same values up to float rounding, several times faster on a CPU.
        """
        x = x.to(device_of(self))
        return self.fast_backbone(self.backbone, x) if use_fast_path(self) else self.backbone(x)

    @property
    def head_width(self) -> int:
        """How many values the head reads (the module's features, for a fitted composition)."""
        return int(self.config.head["in_features"])

    def score(self, images: Any, batch_size: int = 256) -> torch.Tensor:
        """Raw scores (on the CPU) for raw images (PIL, uint8) or preprocessed float tensors."""
        return self.head_inputs_and_scores(images, batch_size)[1]

    @torch.no_grad()
    def head_inputs_and_scores(self, images: Any, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """What the head reads [B, head_width] and the raw scores [B] (both on the CPU), in one pass over
        raw images (PIL, uint8) or preprocessed float tensors: a split calibrates a module and fits its
        gate on the same validation images."""
        x = prepare_input(images, self.data_config)
        feats, scores = [], []
        for i in range(0, len(x), batch_size):
            f = self.head_input(x[i : i + batch_size])
            feats.append(f.cpu())
            scores.append(self.head(f).cpu())
        return torch.cat(feats), torch.cat(scores)

    def probability(self, images: Any) -> torch.Tensor:
        """P(image is this module's class), Platt-calibrated on held-out data at split time."""
        return calibration.apply("platt", self.score(images), self.config.calibration)

    def calibrated(self, raw: torch.Tensor, method: str, features: torch.Tensor | None = None) -> torch.Tensor:
        """Raw scores [B] made comparable with other modules' by ``method`` (hubmod.calibration).

        ``features`` [B, head_width] are what the head read; the gated rules need them for the gate.
        """
        gate = None
        if method in calibration.NEEDS_GATE:
            if self.exposure is None or features is None:
                raise HubmodError(f"module {self.class_name!r} has no outlier-exposure gate (it was split without "
                                  f"--negatives); compose it with another calibration")
            gate = torch.sigmoid(self.exposure(features.to(self.exposure.weight.device)).squeeze(-1)).to(raw.device)
        return calibration.apply(method, raw, self.config.calibration, self.config.head.get("type"), gate)

    @property
    def exposed(self) -> bool:
        """Whether the module carries an outlier-exposure gate."""
        return self.exposure is not None

    def set_exposure(self, weight: torch.Tensor, bias: torch.Tensor, record: dict) -> None:
        """Attach a fitted gate ([1, head_width] weight, [1] bias) and the record of what it saw."""
        gate = nn.Linear(self.head_width, 1)
        with torch.no_grad():
            gate.weight.copy_(weight)
            gate.bias.copy_(bias)
        for p in gate.parameters():
            p.requires_grad_(False)
        self.exposure = gate
        self.config.exposure = dict(record)

    # ------------------------------------------------------------------ repo files

    def weights(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    def config_dict(self) -> dict:
        return self.config.to_dict()

    def card_values(self, name: str, hub_name: str | None, directory: Path | None) -> tuple[Any, dict]:
        """The module card: its class, parent and commit, method, size and measured F1 (and the kept-channels chart)."""
        from huggingface_hub import ModelCardData
        from huggingface_hub.repocard_data import EvalResult

        cfg = self.config
        parent, metrics, method = cfg.parent, cfg.metrics, cfg.method
        pretty, paper_url = cards.method_info(method)
        dataset_id = cfg.dataset.get("hub_id")
        results = []
        for key, metric in (("test_precision", "precision"), ("test_recall", "recall"), ("test_f1", "f1")):
            if key in metrics and dataset_id:
                results.append(EvalResult(task_type="image-classification", dataset_type=dataset_id,
                                          dataset_name=cfg.dataset.get("name", dataset_id),
                                          dataset_split=metrics.get("test_split", "test"), metric_type=metric,
                                          metric_value=round(float(metrics[key]), 4),
                                          metric_name=f"{metric} of {cfg.class_name} in the composed split"))
        base = parent.get("repo_id") if parent.get("hub") not in (None, "dir") else None
        card_data = ModelCardData(
            library_name="hubmod",
            license=parent.get("license") or None,
            tags=["hubmod", "class-module", class_tag(cfg.class_name), method.get("name", ""), "image-classification",
                  parent["architecture"]],
            base_model=base,
            # a pruned, possibly distilled part of the parent: of the Hub's relations, closest to a fine-tune
            base_model_relation="finetune" if base else None,
            hubmod=cards.module_metadata(cfg),
            datasets=[dataset_id] if dataset_id else None,
            pipeline_tag="image-classification",
            model_name=name,
            eval_results=results or None,
        )
        rows = []
        for key, label, fmt in (
            ("test_precision", "precision (test, in the composed split)", formatting.percent),
            ("test_recall", "recall (test, in the composed split)", formatting.percent),
            ("test_f1", "F1 (test, in the composed split)", formatting.percent),
            ("val_precision", "precision (validation, alone, P >= 0.5)", formatting.percent),
            ("val_recall", "recall (validation, alone, P >= 0.5)", formatting.percent),
            ("val_f1", "F1 (validation, alone, P >= 0.5)", formatting.percent),
            ("split_composed_accuracy", "accuracy of the whole split composed (test)", formatting.percent),
            ("parent_accuracy", "parent accuracy (test)", formatting.percent),
        ):
            if key in metrics:
                rows.append((label, fmt(metrics[key])))
        if directory is not None:
            cards.write_kept_chart(cfg.channels["groups"], directory / cards.CHART,
                                   f"{cfg.class_name}: kept channels per group")
        hub_arg, hub_flag = cards.usage(hub_name)
        data_cfg = cfg.data_config
        return card_data, dict(
            class_name=cfg.class_name, class_index=cfg.class_index, num_classes=len(parent["label_names"]),
            parent_name=parent.get("repo_id") or "a local parent", parent_sha=parent.get("revision", "?"),
            parent_url=cards.repo_url(parent), architecture=parent["architecture"], method_pretty=pretty,
            method_name=method.get("name"), paper_url=paper_url, method_params=json.dumps(method.get("params", {})),
            weights_desc=_weights_desc(method), whole_parent=bool(method.get("whole_parent")),
            kept_pct=100 * metrics.get("kept_kernels", 0.0), head_desc=describe_head(cfg.head),
            kernels=metrics.get("kernels", 0), parent_kernels=max(1, metrics.get("parent_kernels", 1)),
            params=metrics.get("params", 0), parent_params=max(1, metrics.get("parent_params", 1)),
            macs=metrics.get("macs", 0), parent_macs=max(1, metrics.get("parent_macs", 1)),
            metric_rows=rows, dataset_name=cfg.dataset.get("name", "?"), repo_id=name,
            hub_arg=hub_arg, hub_flag=hub_flag, command=cfg.command or "(made through the Python API)",
            input_size=data_cfg["input_size"], mean=data_cfg["mean"], std=data_cfg["std"],
            train_samples=cfg.dataset.get("train_samples", "?"), val_samples=cfg.dataset.get("val_samples", "?"),
            split_id=cfg.split_id, cal_own=cfg.calibration["own"], cal_other=cfg.calibration["other"],
            platt=cfg.calibration["platt"], exposure=cfg.exposure,
            hubmod_version=self.config.to_dict()["hubmod_version"], chart=directory is not None,
        )

    def commit_message(self) -> str:
        return f"hubmod: module {self.class_name}"

    # ------------------------------------------------------------------ loading

    @classmethod
    def _from_config(cls, config: dict, snap: Snapshot, hub: str | Hub | None) -> ClassModule:
        name = printable(snap.name)
        if snap.file(WEIGHTS, required=False) is None:
            raise InvalidRepoError(f"{name} has no {WEIGHTS}; hubmod only loads safetensors weights")
        module = cls.from_config(config, name)
        load_parts(snap.file(WEIGHTS), {"": module}, name)
        return module

    @classmethod
    def from_config(cls, data: dict, where: str) -> ClassModule:
        """The module config.json describes, without weights: the shapes its weights file must have.

        It is rebuilt on the meta device where the architecture allows (no memory is spent, and
        tracing the example input costs nothing), and allocated by `hubmod.weights.load_parts` only
        after the weights file's header matched it.
        """
        config = ModuleConfig.from_dict(data, where)
        spec = config.parent_spec
        groups = config.channels["groups"]
        fresh = spec.build(lazy=True)
        device = next(fresh.parameters()).device
        example = torch.zeros(config.channels["example_input"], device=device)
        try:
            with torch.device(device):
                backbone = rebuild(fresh, {g["name"]: g["size"] for g in groups}, config.kept, example)
                backbone, head = attach_head(backbone, config.head, spec.num_classes, example)
        except (RuntimeError, ValueError, IndexError) as e:
            # torch's own complaint (a conv that cannot take the example, a pool that shrinks it to
            # nothing) is the only way to learn that an untrusted config describes an unrunnable net
            detail = first_line(e)
            raise InvalidRepoError(f"{where}: config.json describes a network that does not run on its own "
                                   f"example input ({detail}); the repo is damaged, re-publish it") from None
        module = cls(backbone, head, config)
        for p in module.parameters():
            p.requires_grad_(False)
        return module


def _weights_desc(method: dict) -> str:
    """The card's phrase for where a module's weights come from."""
    why = method.get("whole_parent")
    if why:
        reason = printable(why)[:300] if isinstance(why, str) else CANNOT_SEE
        return (f"the parent's own, all of them: the split's module for this class {reason}, so the class kept the "
                "whole parent")
    if method.get("distilled"):
        return ("distilled from the parent: the kept channels and the head were retrained to reproduce the parent's "
                "predictions")
    return "the parent's own, for the kept channels"


def attach_head(backbone: nn.Module, spec: dict, num_classes: int,
                example: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """The backbone as the head expects it (classifier dropped for feature heads) and the head.

    The head is checked against what the pruned backbone really outputs, so a config.json whose
    head does not fit its channels fails here with one line rather than inside a matmul.
    """
    width = num_classes
    if reads_features(spec):
        drop_classifier(backbone)
        with torch.no_grad():
            width = int(backbone.eval()(example).shape[-1])
    return backbone, build_head(spec, width)
