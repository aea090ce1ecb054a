"""ComposedClassifier: a classifier assembled from class modules named by repo.

Modules may come from different parents, datasets, architectures and input formats. Each keeps its
own preprocessing (run once per distinct data config), and raw scores are made comparable with
the calibration statistics every module carries. The composed repo pins every module to the
commit sha it was built from and, by default, carries all weights consolidated in one
safetensors file so loading it needs one download.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import __version__, calibration
from .artifact import HubArtifact
from .devices import device_of
from .errors import HubmodError, InvalidRepoError
from .fast_inference import SharedStems, use_fast_path
from .hub import Hub, Snapshot, get_hub, hub_named, open_ref
from .module import MODULE_KIND, ClassModule
from .parents import WEIGHTS
from .preprocess import batches_by_config
from .refs import match_class, parse_ref
from .weights import load_parts

COMPOSED_KIND = "composed_classifier"
SPLIT_INDEX = "hubmod_split.json"
SPLIT_INDEX_KIND = "split_index"
FORMAT_VERSION = 1


class ComposedClassifier(HubArtifact, nn.Module):
    """argmax over calibrated module scores; one output per module, in the order given."""

    kind = COMPOSED_KIND

    def __init__(self, modules: Sequence[ClassModule], calibration_method: str = "none",
                 provenance: Sequence[dict] | None = None):
        super().__init__()
        if not modules:
            raise HubmodError("a composed classifier needs at least one module")
        names = [m.class_name for m in modules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise HubmodError(
                f"two modules claim the class {', '.join(map(repr, dupes))}: a composed classifier "
                "needs one module per class (drop one REF)"
            )
        if calibration_method not in calibration.METHODS:
            raise HubmodError(f"unknown calibration {calibration_method!r}; use one of "
                              f"{', '.join((calibration.AUTO, *calibration.METHODS))}")
        self.class_modules = nn.ModuleList(modules)
        self.calibration = calibration_method
        self.provenance = list(provenance or [{} for _ in modules])
        self._shared_stems = SharedStems()
        self.share_stems = True  # False: every module runs its own stem (to measure what sharing buys)
        self.eval()

    @property
    def class_names(self) -> list[str]:
        return [m.class_name for m in self.class_modules]

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def forward(self, images: Any, batch_size: int = 256) -> torch.Tensor:
        """Calibrated scores [B, k] (on the CPU) for raw images (or preprocessed input, if every module shares it).

        Each module runs on the device its parameters are on (``.to(device)`` moves them all). For
        inference, modules of one parent run their shared stem once (hubmod.fast_inference.SharedStems).
        """
        mods = list(self.class_modules)
        configs = [m.data_config for m in mods]
        out = []
        for inputs in batches_by_config(images, configs, batch_size, "these modules"):
            if use_fast_path(self) and self.share_stems:
                features = self._shared_stems([m.fast_backbone for m in mods], [m.backbone for m in mods],
                                              [inputs[m.data_config].to(device_of(m)) for m in mods], configs)
                raw = [m.head(f) for m, f in zip(mods, features, strict=True)]
            else:
                raw = [m(inputs[m.data_config]) for m in mods]
            scores = [m.calibrated(r, self.calibration).cpu() for m, r in zip(mods, raw, strict=True)]
            out.append(torch.stack(scores, dim=1))
        return torch.cat(out) if out else torch.empty(0, len(self.class_modules))

    def predict(self, images: Any) -> list[str]:
        """Class names, one per image."""
        names = self.class_names
        return [names[i] for i in self(images).argmax(1).tolist()]

    # ------------------------------------------------------------------ repo files

    def config_dict(self) -> dict:
        return {
            "hubmod_kind": COMPOSED_KIND,
            "format_version": FORMAT_VERSION,
            "hubmod_version": __version__,
            "class_names": self.class_names,
            "calibration": self.calibration,
            "modules": [{**prov, "class_name": m.class_name, "config": m.config.to_dict()}
                        for m, prov in zip(self.class_modules, self.provenance, strict=True)],
            "consolidated_weights": True,
        }

    def weights(self) -> dict[str, torch.Tensor]:
        return {f"modules.{i}.{k}": v for i, m in enumerate(self.class_modules) for k, v in m.state_dict().items()}

    def write_card(self, directory: Path, repo_id: str | None, hub_name: str | None) -> None:
        from .cards import write_composed_card

        write_composed_card(self, directory, repo_id=repo_id, hub_name=hub_name)

    def commit_message(self) -> str:
        return f"hubmod: compose {', '.join(self.class_names)}"

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_snapshot(cls, snap: Snapshot, hub: str | Hub | None = None) -> ComposedClassifier:
        data = snap.read_json("config.json")
        if data.get("hubmod_kind") != COMPOSED_KIND:
            raise HubmodError(f"{snap.name} is not a composed classifier (config.json hubmod_kind is "
                              f"{data.get('hubmod_kind')!r})")
        entries = data.get("modules")
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise InvalidRepoError(f"{snap.name}: config.json lists no modules")
        if snap.file(WEIGHTS, required=False) is not None:
            modules = [ClassModule.from_config(entry.get("config") or {}, f"{snap.name} module {i}")
                       for i, entry in enumerate(entries)]
            load_parts(snap.file(WEIGHTS), {f"modules.{i}.": m for i, m in enumerate(modules)}, snap.name)
        else:  # no consolidated weights: fetch each module at its pinned commit
            modules = [_pinned_module(e, hub) for e in entries]
        provenance = [{k: e.get(k) for k in ("repo_id", "revision", "hub")} for e in entries]
        model = cls(modules, data.get("calibration", "none"), provenance)
        model.source = snap
        return model


def _pinned_module(entry: dict, hub: str | Hub | None) -> ClassModule:
    repo_id, revision, where = entry.get("repo_id"), entry.get("revision"), entry.get("hub")
    if not repo_id or not revision:
        raise InvalidRepoError("a module entry has no repo_id/revision and the repo has no consolidated weights")
    target = hub_named(where) if where and where != "dir" else get_hub(hub)
    return ClassModule.from_snapshot(target.snapshot(repo_id, revision))


# --------------------------------------------------------------------------- REF resolution


def resolve_ref(text: str, hub: str | Hub | None = None) -> list[tuple[ClassModule, dict]]:
    """The module(s) a REF names, each with its provenance (repo, commit sha, hub).

    ``REPO:CLASS`` goes through REPO's split index when REPO is a split parent or index repo, and
    must match the module's class when REPO is a module repo; a bare module repo is that module;
    a composed repo contributes all its modules (or the one named by ``:CLASS``).
    """
    ref, class_name = parse_ref(text)
    snap = open_ref(ref, hub)
    if snap.file(SPLIT_INDEX, required=False) is not None:
        return [_from_index(snap, class_name, text, hub)]
    kind = snap.read_json("config.json").get("hubmod_kind")
    if kind == MODULE_KIND:
        module = ClassModule.from_snapshot(snap)
        if class_name is not None:
            try:
                match_class(class_name, [module.class_name], snap.name)
            except HubmodError:
                raise HubmodError(f"REF {text} names two different things: {snap.name} is the module of class "
                                  f"{module.class_name!r}, not {class_name!r}") from None
        return [(module, _provenance(snap))]
    if kind == COMPOSED_KIND:
        composed = ComposedClassifier.from_snapshot(snap, hub)
        pairs = list(zip(composed.class_modules, composed.provenance, strict=True))
        if class_name is None:
            return pairs
        return [pairs[match_class(class_name, composed.class_names, f"composed classifier {snap.name}")]]
    raise HubmodError(
        f"{snap.name} is neither a hubmod module nor a split parent (it has no {SPLIT_INDEX}): "
        f"split it first with `hubmod split {ref} --dataset ...`"
    )


def _provenance(snap: Snapshot) -> dict:
    return {"repo_id": snap.repo_id, "revision": snap.sha, "hub": snap.hub}


def _from_index(snap: Snapshot, class_name: str | None, text: str, hub: str | Hub | None):
    index = snap.read_json(SPLIT_INDEX)
    entries = index.get("modules")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidRepoError(f"{snap.name}: {SPLIT_INDEX} is malformed; split the parent again")
    names = [str(e.get("class_name")) for e in entries]
    if class_name is None:
        raise HubmodError(f"{snap.name} is a split parent: name a class, e.g. {snap.name}:{names[0]} "
                          f"(classes: {', '.join(names)})")
    entry = entries[match_class(class_name, names, f"the split of {snap.name}")]
    if not isinstance(entry.get("repo_id"), str) or not isinstance(entry.get("revision"), str):
        raise InvalidRepoError(f"{snap.name}: {SPLIT_INDEX} entry for {entry.get('class_name')!r} is malformed")
    # modules are published beside their index, so they are read from the hub the index came from
    target = hub_named(snap.hub) if snap.hub != "dir" else get_hub(hub)
    module_snap = target.snapshot(entry["repo_id"], entry["revision"])
    module = ClassModule.from_snapshot(module_snap)
    if module.class_name != entry.get("class_name"):
        raise InvalidRepoError(f"{entry['repo_id']} holds class {module.class_name!r}, but the split index of "
                               f"{snap.name} says {entry.get('class_name')!r}")
    return module, _provenance(module_snap)


def modules_of(source: str, hub: str | Hub | None = None) -> list[tuple[ClassModule, dict]]:
    """Every module a split parent (through its index) or a composed classifier holds, in class order."""
    ref, class_name = parse_ref(source)
    if class_name is not None:
        raise HubmodError(f"{source}: name the whole model (REPO), not one class")
    snap = open_ref(ref, hub)
    if snap.file(SPLIT_INDEX, required=False) is not None:
        names = [str(e.get("class_name")) for e in snap.read_json(SPLIT_INDEX).get("modules") or []
                 if isinstance(e, dict)]
        return [_from_index(snap, name, source, hub) for name in names]
    if snap.read_json("config.json").get("hubmod_kind") == COMPOSED_KIND:
        return resolve_ref(source, hub)
    raise HubmodError(f"{snap.name} is neither a composed classifier nor a split parent: compose or split it "
                      f"first (a plain classifier is patched with `hubmod patch`)")


def compose(refs: Sequence[str], output: str | None = None, calibration_method: str = calibration.AUTO,
            hub: str | Hub | None = None) -> ComposedClassifier:
    """Build a classifier from module REFs; publish it to ``output`` on the hub when given."""
    if not refs:
        raise HubmodError("name at least one module REF (REPO:CLASS or a module repo)")
    return compose_modules([pair for text in refs for pair in resolve_ref(text, hub)], output,
                           calibration_method, hub)


def compose_modules(pairs: Sequence[tuple[ClassModule, dict]], output: str | None = None,
                    calibration_method: str = calibration.AUTO, hub: str | Hub | None = None) -> ComposedClassifier:
    """A classifier from resolved (module, provenance) pairs; ``auto`` picks the calibration."""
    modules = [m for m, _ in pairs]
    method = calibration_method
    if method == calibration.AUTO:
        method = auto_calibration(modules)
    model = ComposedClassifier(modules, method, [p for _, p in pairs])
    if output:
        model.push_to_hub(output, hub)
    return model


def auto_calibration(modules: Sequence[ClassModule]) -> str:
    """Activation modules answer "mine or not": Pan & Rajan's vote. Modules of one split were trained
    to compete: raw scores. Otherwise min-max, which composed modules of two parents on disjoint
    classes best (61.1 % vs 46.5 % platt, BENCHMARKS.md)."""
    if {m.config.method.get("name") for m in modules} == {"activation"}:
        return "vote"
    split_ids = {m.config.split_id for m in modules}
    return "none" if len(split_ids) == 1 and "" not in split_ids else "minmax"
