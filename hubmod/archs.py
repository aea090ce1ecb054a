"""A small VGG-style CNN, registered in timm's model registry as ``hubmod_vgg``.

Why hubmod ships an architecture at all: timm's own ``vgg*`` fix their layer widths per variant
(64..512 channels, ~150 M MACs even at 32 px) and end in a 4096-wide convolutional MLP that would
dominate every kernel count, so they are neither laptop-sized nor a fair plain-CNN test case. This
model is built from timm's parts and created through ``timm.create_model`` like any timm model, so
hubmod's parents, config.json format and data config work unchanged. ``import hubmod.archs`` registers it
(hubmod does so whenever it builds or trains a parent);
after that ``timm.create_model('hf-hub:...')`` loads a ``hubmod_vgg`` parent too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.layers import ClassifierHead
from timm.models import build_model_with_cfg, register_model
from timm.models._registry import generate_default_cfgs, is_model

DEFAULT_CFG: list[int | str] = [32, 32, "M", 64, 64, "M", 128, 128, "M"]


class PlainVGG(nn.Module):
    """conv3x3-BN-ReLU stacks with max-pools ("M"), global average pool, one linear classifier."""

    def __init__(
        self,
        cfg: list[int | str] | None = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        cfg = list(cfg or DEFAULT_CFG)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        layers: list[nn.Module] = []
        chs = in_chans
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(chs, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v)), nn.ReLU()]
                chs = int(v)
        self.features = nn.Sequential(*layers)
        self.num_features = self.head_hidden_size = chs
        self.head = ClassifierHead(chs, num_classes, pool_type=global_pool, drop_rate=drop_rate)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": 10,
        "input_size": (1, 28, 28),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5,),
        "std": (0.5,),
        "first_conv": "features.0",
        "classifier": "head.fc",
        **kwargs,
    }


if not is_model("hubmod_vgg"):
    default_cfgs = generate_default_cfgs({"hubmod_vgg.untrained": _cfg()})

    @register_model
    def hubmod_vgg(pretrained: bool = False, **kwargs: Any) -> PlainVGG:
        """Plain VGG-style CNN; ``cfg`` (list of widths and "M") sets the layers."""
        return build_model_with_cfg(PlainVGG, "hubmod_vgg", pretrained, **kwargs)
