"""PatchedClassifier: a weak classifier whose output for one class comes from a stronger module.

CNNSplitter's patching scenario (Qi et al., ASE 2022): the weak model keeps deciding among its
other classes, through its softmax over them, and the module answers for the patched class with
its score rescaled by statistics of its own class (min-max by default, as the authors did, so
"looks like my class" lands near 1 like a confident softmax). The prediction is the argmax of the
two. The patched model is a repo like any composed one: the weak model's spec and commit, the
module's config and commit, all weights in one safetensors file, and a card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import cards
from .artifact import HubArtifact, PredictsClassNames
from .composed import resolve_ref
from .devices import device_of
from .errors import HubmodError, InvalidRepoError, option
from .hub import Hub, Snapshot
from .module import ClassModule
from .parents import ParentSpec, load_parent
from .preprocess import batches_by_config
from .refs import match_class
from .untrusted import Fields, printable
from .weights import WEIGHTS, load_parts

STRATEGIES = ("minmax", "platt")


class PatchedClassifier(PredictsClassNames, HubArtifact, nn.Module):
    """The weak model's classes, with ``target`` scored by ``module`` instead of the weak model."""

    kind = "patched_classifier"
    format_version = 1
    title = "patched classifier"
    card_template = "patched.md.j2"

    def __init__(self, weak: nn.Module, weak_spec: ParentSpec, module: ClassModule, target: int,
                 strategy: str = "minmax", provenance: dict | None = None):
        super().__init__()
        if strategy not in STRATEGIES:
            raise HubmodError(f"unknown patch strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        if not 0 <= target < weak_spec.num_classes:
            raise HubmodError(f"target class index {target} is outside the weak model's {weak_spec.num_classes}")
        self.weak = weak.eval()
        self.module = module
        self.weak_spec = weak_spec
        self.target = target
        self.strategy = strategy
        self.provenance = provenance or {}
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @property
    def class_names(self) -> list[str]:
        return list(self.weak_spec.label_names)

    @torch.no_grad()
    def forward(self, images: Any, batch_size: int = 256) -> torch.Tensor:
        """[B, N] scores: the weak model's softmax over its other classes, the module's for the target."""
        weak_cfg, module_cfg = self.weak_spec.data_config, self.module.data_config
        others = [c for c in range(self.weak_spec.num_classes) if c != self.target]
        out = []
        for inputs in batches_by_config(images, (weak_cfg, module_cfg), batch_size, "the weak model and the module"):
            logits = self.weak(inputs[weak_cfg].to(device_of(self.weak))).cpu()
            scores = torch.empty_like(logits)
            scores[:, others] = logits[:, others].softmax(1)
            scores[:, self.target] = self.module.calibrated(self.module(inputs[module_cfg]), self.strategy).cpu()
            out.append(scores)
        return torch.cat(out) if out else torch.empty(0, self.weak_spec.num_classes)

    # ------------------------------------------------------------------ repo files

    def config_dict(self) -> dict:
        return {
            **self.config_header(),
            "class_names": self.class_names,
            "target_class": self.class_names[self.target],
            "target_index": self.target,
            "strategy": self.strategy,
            "weak": {**{k: self.provenance.get(f"weak_{k}") for k in ("repo_id", "revision", "hub")},
                     "spec": self.weak_spec.to_dict()},
            "module": {**{k: self.provenance.get(f"module_{k}") for k in ("repo_id", "revision", "hub")},
                       "config": self.module.config.to_dict()},
        }

    def weights(self) -> dict[str, torch.Tensor]:
        state = {f"weak.{k}": v for k, v in self.weak.state_dict().items()}
        state.update({f"module.{k}": v for k, v in self.module.state_dict().items()})
        return state

    def card_values(self, name: str, hub_name: str | None, directory: Path | None) -> tuple[Any, dict]:
        """The patched card: the weak model, the module that answers its class, the rule."""
        from huggingface_hub import ModelCardData

        from . import __version__

        prov, cfg = self.provenance, self.module.config
        bases = [r for r, h in ((prov.get("weak_repo_id"), prov.get("weak_hub")),
                                (prov.get("module_repo_id"), prov.get("module_hub"))) if r and h not in (None, "dir")]
        card_data = ModelCardData(
            library_name="hubmod", tags=["hubmod", "patched-classifier", "image-classification"],
            base_model=bases or None, base_model_relation="merge" if bases else None,
            datasets=[cfg.dataset["hub_id"]] if cfg.dataset.get("hub_id") else None,
            pipeline_tag="image-classification", model_name=name,
        )
        target = self.class_names[self.target]
        weak_repo = prov.get("weak_repo_id") or "local weak model"
        module_repo = prov.get("module_repo_id") or "local module"
        hub_arg, hub_flag = cards.usage(hub_name)
        return card_data, dict(
            title=f"{name}: {weak_repo} with {target} patched", weak_repo=weak_repo,
            weak_revision=(prov.get("weak_revision") or "")[:12], weak_arch=self.weak_spec.architecture,
            num_others=len(self.class_names) - 1, target=target, module_repo=module_repo,
            module_revision=(prov.get("module_revision") or "")[:12], method=cards.method_info(cfg.method)[0],
            module_parent=cfg.parent.get("repo_id") or "a local parent", strategy=self.strategy, repo_id=name,
            hub_arg=hub_arg, hub_flag=hub_flag, hubmod_version=__version__,
            command=(f"hubmod patch {weak_repo} --module {module_repo} --strategy {self.strategy} "
                     f"--output {name}{hub_flag}"),
        )

    def commit_message(self) -> str:
        return f"hubmod: patch class {self.class_names[self.target]}"

    @classmethod
    def _from_config(cls, data: dict, snap: Snapshot, hub: str | Hub | None) -> PatchedClassifier:
        name = printable(snap.name)
        fields = Fields(data, f"{name}: config.json")
        weak_entry, module_entry = fields.obj("weak"), fields.obj("module")
        strategy = fields.str("strategy", max_len=20)
        if strategy not in STRATEGIES:
            raise fields.error(f"strategy {printable(strategy)!r} is not one of {', '.join(STRATEGIES)}")
        if snap.file(WEIGHTS, required=False) is None:
            raise InvalidRepoError(f"{name} has no {WEIGHTS}; hubmod only loads safetensors weights")
        spec = ParentSpec.from_config(weak_entry.obj("spec").data, f"{name} weak model")
        target = fields.int("target_index", lo=0, hi=spec.num_classes - 1)
        weak = spec.build(lazy=True)
        module = ClassModule.from_config(module_entry.obj("config").data, f"{name} module")
        load_parts(snap.file(WEIGHTS), {"weak.": weak, "module.": module}, name)
        provenance = {f"{part}_{k}": v if isinstance(v := entry.data.get(k), str) else None
                      for part, entry in (("weak", weak_entry), ("module", module_entry))
                      for k in ("repo_id", "revision", "hub")}
        return cls(weak, spec, module, target, strategy, provenance)


def patch(weak_source: str, module_ref: str, class_name: str | None = None, strategy: str = "minmax",
          output: str | None = None, hub: str | Hub | None = None, private: bool = False) -> PatchedClassifier:
    """Patch ``weak_source``'s class (the module's, or ``class_name``) with the module ``module_ref`` names.

    The class is matched by name, so the module may come from a parent with other classes, another
    architecture or another input format.
    """
    if strategy not in STRATEGIES:
        raise HubmodError(f"unknown patch strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    weak = load_parent(weak_source, hub)
    pairs = resolve_ref(module_ref, hub)
    if len(pairs) != 1:
        raise HubmodError(f"{module_ref} names {len(pairs)} modules; name one, e.g. {module_ref}:CLASS")
    module, prov = pairs[0]
    wanted = class_name or module.class_name
    target = match_class(wanted, weak.class_names, f"weak model {weak.display_name}")
    if class_name is not None:
        try:
            match_class(class_name, [module.class_name], module_ref)
        except HubmodError:
            raise HubmodError(f"{option('class_name', class_name, flag='--class')} is not the module's class "
                              f"{module.class_name!r}: a module only patches its own class") from None
    snap = weak.snapshot
    provenance = {"weak_repo_id": snap.repo_id, "weak_revision": snap.sha, "weak_hub": snap.hub,
                  **{f"module_{k}": v for k, v in prov.items()}}
    model = PatchedClassifier(weak.model, weak.spec, module, target, strategy, provenance)
    if output:
        model.push_to_hub(output, hub, private=private)
    return model

