"""Parent classifiers: timm-format repos (config.json + model.safetensors).

A parent is rebuilt the way timm does it — ``architecture`` + ``model_args`` from config.json,
weights from safetensors, preprocessing from ``pretrained_cfg`` — but hubmod downloads the files
itself so that only safetensors and JSON are ever read and the commit sha is known.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .errors import HubmodError, InvalidRepoError, first_line
from .hub import Hub, Snapshot, open_ref
from .preprocess import DataConfig
from .refs import parse_source
from .untrusted import printable
from .weights import WEIGHTS, load_parts

_MAX_CLASSES = 100_000
MAX_PARAMETERS = 2_000_000_000  # above any timm classifier; a config asking for more is refused
MAX_BUFFER_ELEMENTS = 500_000_000  # BatchNorm statistics and the like are a small share of a CNN

# model_args from a config.json reach timm.create_model only if they shape the network (widths, depths,
# input channels, ...). Anything else could name a file, device, dtype or pretrained config.
SHAPE_ARGS = frozenset({
    "in_chans", "cfg", "channels", "stem_width", "stem_chs", "stem_type", "layers", "depths", "dims", "widths",
    "w0", "wa", "wm", "depth", "group_size", "bottle_ratio", "se_ratio", "cardinality", "base_width",
    "output_stride", "global_pool", "growth_rate", "block_config", "num_init_features", "bn_size",
    "img_size", "patch_size", "embed_dim", "num_heads", "mlp_ratio", "multiplier", "channel_multiplier",
    "depth_multiplier", "head_hidden_size", "num_features", "conv_mlp", "kernel_sizes", "avg_down",
    "stem_kernel_size", "head_norm_first", "round_chs_fn", "fix_stem", "width_multiplier",
})
# Changes nothing in eval mode (dropout rates): accepted in a config and not passed on.
IGNORED_ARGS = frozenset({"num_classes", "pretrained", "drop_rate", "drop_path_rate", "drop_block_rate",
                          "proj_drop_rate", "attn_drop_rate"})
_ARG_TEXT = re.compile(r"[A-Za-z0-9_.-]{0,32}")


VALIDATION_KEY = "hubmod_validation"  # config.json: which images the parent was not trained on
_MAX_VALIDATION_ROWS = 1_000_000


def validation_record(record: object, where: str) -> dict | None:
    """The parent's held-out images, if its config.json names them: {"dataset", "split", "rows"}."""
    if record is None:
        return None
    rows = record.get("rows") if isinstance(record, dict) else None
    if not (isinstance(record, dict) and isinstance(record.get("dataset"), str) and isinstance(record.get("split"), str)
            and isinstance(rows, list) and 0 < len(rows) <= _MAX_VALIDATION_ROWS
            and all(type(r) is int and r >= 0 for r in rows)):
        raise InvalidRepoError(f"{where}: {VALIDATION_KEY} in config.json must be {{\"dataset\": str, \"split\": "
                               f"str, \"rows\": [non-negative row numbers]}}; fix or remove it")
    return {"dataset": record["dataset"], "split": record["split"], "rows": list(rows)}


@dataclass
class ParentSpec:
    """What a timm-format config.json says about a classifier."""

    architecture: str
    num_classes: int
    label_names: list[str]
    model_args: dict = field(default_factory=dict)
    pretrained_cfg: dict = field(default_factory=dict)
    validation: dict | None = None  # images held out of the parent's training (VALIDATION_KEY), checked

    @classmethod
    def from_config(cls, cfg: dict, where: str) -> ParentSpec:
        from timm import is_model

        import hubmod.archs  # noqa: F401  (registers hubmod_vgg with timm)

        arch = cfg.get("architecture")
        if not isinstance(arch, str) or not is_model(arch):
            raise InvalidRepoError(
                f"{where}: config.json names architecture {printable(arch)[:100]!r}, which is not a timm model "
                "(hubmod only builds architectures from timm's registry)"
            )
        pretrained_cfg = cfg.get("pretrained_cfg") or {}
        model_args = cfg.get("model_args") or {}
        if not isinstance(pretrained_cfg, dict) or not isinstance(model_args, dict):
            raise InvalidRepoError(f"{where}: pretrained_cfg and model_args in config.json must be objects")
        num_classes = cfg.get("num_classes", pretrained_cfg.get("num_classes"))
        if type(num_classes) is not int or not 2 <= num_classes <= _MAX_CLASSES:
            raise InvalidRepoError(f"{where}: config.json needs num_classes in 2..{_MAX_CLASSES:,} "
                                   f"(got {printable(num_classes)[:40]})")
        labels = cfg.get("label_names", pretrained_cfg.get("label_names"))
        if isinstance(labels, dict):
            try:
                labels = [labels[k] for k in sorted(labels, key=int)]
            except (ValueError, TypeError):
                labels = None
        if not isinstance(labels, list) or len(labels) != num_classes or not all(
            isinstance(n, str) and n.strip() and len(n) <= 1000 for n in labels
        ):
            raise InvalidRepoError(
                f"{where}: config.json needs label_names, one name per class ({num_classes}); "
                "hubmod matches classes to dataset labels by name"
            )
        if len(set(labels)) != len(labels):
            raise InvalidRepoError(f"{where}: label_names in config.json repeat a name")
        model_args = {k: v for k, v in model_args.items() if k not in IGNORED_ARGS}
        for key, value in model_args.items():
            if key not in SHAPE_ARGS:
                raise InvalidRepoError(
                    f"{where}: config.json passes model_args {printable(key)[:60]!r} to timm; hubmod passes only "
                    "arguments that shape the network (in_chans, channels, depths, widths and the like)")
            if not _plain_arg(value):
                raise InvalidRepoError(f"{where}: config.json model_args {key!r} is not a number, flag, short name "
                                       "or list of them")
        return cls(arch, num_classes, list(labels), model_args, dict(pretrained_cfg),
                   validation_record(cfg.get(VALIDATION_KEY), where))

    @property
    def data_config(self) -> DataConfig:
        cfg = dict(self.pretrained_cfg)
        if "in_chans" in self.model_args and "input_size" in cfg:
            cfg["input_size"] = (self.model_args["in_chans"], *cfg["input_size"][1:])
        return DataConfig.from_pretrained_cfg(cfg)

    def build(self, lazy: bool = False) -> nn.Module:
        """The architecture, in eval mode: with random weights, or (``lazy``) as a skeleton to load into.

        It is first built on the meta device (no memory) and its size checked, parameters and
        buffers, so a config.json asking for an absurd network fails in one line instead of
        exhausting memory. The lazy skeleton stays on the meta device: `hubmod.weights.load_parts`
        checks a weights file against its shapes before allocating anything, then fills it.
        (An architecture with buffers that are not saved in weights files is built for real.)
        """
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty layer warns while initialising; it is refused below
            probe = self._create()
        what = f"{self.architecture} with model_args {printable(self.model_args)}"
        empty = next((name for name, p in probe.named_parameters() if 0 in p.shape), None)
        if empty is not None:
            raise InvalidRepoError(f"{what} has a layer with no channels ({empty}); config.json is not a sane model")
        size = sum(p.numel() for p in probe.parameters())
        if size > MAX_PARAMETERS:
            raise InvalidRepoError(f"{what} has {size:,} parameters, over hubmod's limit of {MAX_PARAMETERS:,}; "
                                   "config.json is not a sane model")
        buffers = sum(b.numel() for b in probe.buffers())
        if buffers > MAX_BUFFER_ELEMENTS:
            raise InvalidRepoError(f"{what} holds {buffers:,} buffer values, over hubmod's limit of "
                                   f"{MAX_BUFFER_ELEMENTS:,}; config.json is not a sane model")
        if lazy and not has_unsaved_buffers(probe):
            return probe.eval()
        return self._create().eval()

    def _create(self) -> nn.Module:
        import timm

        from . import archs  # noqa: F401  (registers hubmod_vgg with timm)

        try:
            return timm.create_model(self.architecture, pretrained=False, num_classes=self.num_classes,
                                     **self.model_args)
        except Exception as e:  # any failure to build from an untrusted config is a damaged repo
            detail = printable(first_line(e))
            raise InvalidRepoError(
                f"cannot build {self.architecture} with model_args {printable(self.model_args)}: {detail}"
            ) from None

    def to_dict(self) -> dict:
        return {
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "label_names": self.label_names,
            "model_args": self.model_args,
            "pretrained_cfg": _jsonable(self.pretrained_cfg),
        }


@dataclass
class Parent:
    """A loaded parent classifier and where it came from."""

    spec: ParentSpec
    model: nn.Module
    snapshot: Snapshot
    license: str | None = None

    @property
    def class_names(self) -> list[str]:
        return self.spec.label_names

    @property
    def data_config(self) -> DataConfig:
        return self.spec.data_config

    @property
    def display_name(self) -> str:
        return self.snapshot.repo_id or self.snapshot.path.name


def _plain_arg(value: object, depth: int = 0) -> bool:
    """A model argument a config may hold: numbers, flags, short names, and short lists of them."""
    if value is None or isinstance(value, bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return bool(_ARG_TEXT.fullmatch(value))
    if isinstance(value, list) and depth < 2 and len(value) <= 256:
        return all(_plain_arg(v, depth + 1) for v in value)
    return False


def has_unsaved_buffers(model: nn.Module) -> bool:
    """Whether ``model`` keeps buffers that weights files do not hold (they must be computed by building it)."""
    return any(getattr(m, "_non_persistent_buffers_set", None) for m in model.modules())


def card_metadata(snapshot: Snapshot) -> dict:
    """The YAML metadata of the repo's model card, or ``{}`` when it has none or it does not parse.

    A malformed card must never stop loading the weights, so every failure reads as no metadata.
    """
    readme = snapshot.file("README.md", required=False)
    if readme is None:
        return {}
    try:
        from huggingface_hub import ModelCard

        data = ModelCard.load(readme).data.to_dict()
    except Exception:  # a malformed card names nothing
        return {}
    return data if isinstance(data, dict) else {}


def read_license(snapshot: Snapshot) -> str | None:
    """The card's license id, if it is a plain identifier (it is copied into module cards)."""
    value = card_metadata(snapshot).get("license")
    return value if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", value) else None


def parent_from_snapshot(snapshot: Snapshot) -> Parent:
    cfg = snapshot.read_json("config.json")
    if cfg.get("hubmod_kind"):
        raise HubmodError(f"{printable(snapshot.name)} is a hubmod {printable(cfg['hubmod_kind']).replace('_', ' ')}, "
                          "not a timm classifier to split")
    _refuse_pickles(snapshot)
    spec = ParentSpec.from_config(cfg, printable(snapshot.name))
    model = spec.build(lazy=True)
    load_parts(snapshot.file(WEIGHTS), {"": model}, printable(snapshot.name))
    return Parent(spec=spec, model=model, snapshot=snapshot, license=read_license(snapshot))


def _refuse_pickles(snapshot: Snapshot) -> None:
    if snapshot.file(WEIGHTS, required=False) is None:
        raise InvalidRepoError(
            f"{printable(snapshot.name)} has no {WEIGHTS}; hubmod only loads safetensors weights "
            "(it never unpickles .bin/.pt/.pth files): convert the weights to safetensors"
        )


def load_parent(source: str, hub: str | Hub | None = None) -> Parent:
    """Load a timm classifier from a SOURCE string (repo id, ``hf-hub:`` id or ``./dir``)."""
    return parent_from_snapshot(open_ref(parse_source(source), hub))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
