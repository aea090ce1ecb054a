"""``hubmod inspect``: a plain description of any repo hubmod can read."""

from __future__ import annotations

from dataclasses import asdict

import torch

from .channels import count_kernels, count_macs, count_params
from .hub import Hub
from .loading import COMPOSED, INDEX, MODULE, PARENT, PATCHED, load
from .split_index import SplitIndex, has_index


def describe(source: str, hub: str | Hub | None = None) -> dict:
    """What ``hubmod inspect`` shows: where the repo is, what kind it is, and that kind's own facts."""
    loaded = load(source, hub)
    snap = loaded.snapshot
    info: dict = {"repo": snap.name, "revision": snap.sha, "hub": snap.hub, "kind": loaded.kind.replace("_", " ")}
    info.update(_DESCRIBE[loaded.kind](loaded.obj, snap))
    return info


def _parent(parent, snap) -> dict:
    example = torch.zeros(1, *parent.data_config.input_size)
    info = {
        "architecture": parent.spec.architecture,
        "classes": parent.class_names,
        "input": parent.data_config.to_dict(),
        "kernels": count_kernels(parent.model),
        "params": count_params(parent.model),
        "macs": count_macs(parent.model, example),
        "license": parent.license,
    }
    if has_index(snap):
        info["split_index"] = [asdict(e) for e in SplitIndex.from_snapshot(snap).modules]
    return info


def _module(module, snap) -> dict:
    cfg = module.config
    parent = cfg.parent
    info = {
        "class": f"{cfg.class_name} (index {cfg.class_index} of {len(parent['label_names'])})",
        "parent": f"{parent.get('repo_id') or 'local dir'}@{parent.get('revision')} ({parent['architecture']})",
        "method": cfg.method,
        "input": cfg.data_config,
        "head": cfg.head,
        "metrics": dict(cfg.metrics),
        "calibration": cfg.calibration,
        "split_id": cfg.split_id,
        "command": cfg.command,
    }
    if cfg.channels.get("fixed"):  # couplings the split could not prune: kept whole, and why
        info["kept_whole"] = {f["name"]: f["reason"] for f in cfg.channels["fixed"]}
    return info


def _composed(model, snap) -> dict:
    return {
        "classes": model.class_names,
        "calibration": model.calibration,
        "modules": [{"class": m.class_name, "repo": p.get("repo_id"), "revision": (p.get("revision") or "")[:12],
                     "parent": m.config.parent.get("repo_id"), "method": m.config.method.get("name"),
                     "kept_kernels": m.config.metrics.get("kept_kernels")}
                    for m, p in zip(model.class_modules, model.provenance, strict=True)],
    }


def _patched(model, snap) -> dict:
    prov = model.provenance
    return {
        "classes": model.class_names,
        "patched_class": model.class_names[model.target],
        "strategy": model.strategy,
        "weak_model": f"{prov.get('weak_repo_id') or 'local dir'}@{prov.get('weak_revision')} "
                      f"({model.weak_spec.architecture})",
        "module": f"{prov.get('module_repo_id') or 'local dir'}@{prov.get('module_revision')} "
                  f"({model.module.config.method.get('name')}, parent "
                  f"{model.module.config.parent.get('repo_id')})",
    }


def _index(index, snap) -> dict:
    return {"parent": index.parent, "method": index.method, "metrics": index.metrics,
            "modules": [asdict(e) for e in index.modules]}


_DESCRIBE = {PARENT: _parent, MODULE: _module, COMPOSED: _composed, PATCHED: _patched, INDEX: _index}
