"""``hubmod inspect``: a plain description of any repo hubmod can read."""

from __future__ import annotations

from dataclasses import asdict

import torch

from .channels import count_kernels, count_macs, count_params
from .hub import Hub
from .loading import COMPOSED, INDEX, MODULE, PARENT, PATCHED, load
from .split_index import SplitIndex, has_index


def describe(source: str, hub: str | Hub | None = None) -> dict:
    loaded = load(source, hub)
    snap = loaded.snapshot
    info: dict = {"repo": snap.name, "revision": snap.sha, "hub": snap.hub, "kind": loaded.kind.replace("_", " ")}
    if loaded.kind == PARENT:
        parent = loaded.obj
        example = torch.zeros(1, *parent.data_config.input_size)
        info.update({
            "architecture": parent.spec.architecture,
            "classes": parent.class_names,
            "input": parent.data_config.to_dict(),
            "kernels": count_kernels(parent.model),
            "params": count_params(parent.model),
            "macs": count_macs(parent.model, example),
            "license": parent.license,
        })
        if has_index(snap):
            info["split_index"] = [asdict(e) for e in SplitIndex.from_snapshot(snap).modules]
    elif loaded.kind == MODULE:
        cfg = loaded.obj.config
        parent = cfg.parent
        info.update({
            "class": f"{cfg.class_name} (index {cfg.class_index} of {len(parent['label_names'])})",
            "parent": f"{parent.get('repo_id') or 'local dir'}@{parent.get('revision')} ({parent['architecture']})",
            "method": cfg.method,
            "input": cfg.data_config,
            "head": cfg.head,
            "metrics": {k: v for k, v in cfg.metrics.items()},
            "calibration": cfg.calibration,
            "split_id": cfg.split_id,
            "command": cfg.command,
        })
        if cfg.channels.get("fixed"):  # couplings the split could not prune: kept whole, and why
            info["kept_whole"] = {f["name"]: f["reason"] for f in cfg.channels["fixed"]}
    elif loaded.kind == COMPOSED:
        model = loaded.obj
        info.update({
            "classes": model.class_names,
            "calibration": model.calibration,
            "modules": [{"class": m.class_name, "repo": p.get("repo_id"), "revision": (p.get("revision") or "")[:12],
                         "parent": m.config.parent.get("repo_id"), "method": m.config.method.get("name"),
                         "kept_kernels": m.config.metrics.get("kept_kernels")}
                        for m, p in zip(model.class_modules, model.provenance, strict=True)],
        })
    elif loaded.kind == PATCHED:
        model = loaded.obj
        prov = model.provenance
        info.update({
            "classes": model.class_names,
            "patched_class": model.class_names[model.target],
            "strategy": model.strategy,
            "weak_model": f"{prov.get('weak_repo_id') or 'local dir'}@{prov.get('weak_revision')} "
                          f"({model.weak_spec.architecture})",
            "module": f"{prov.get('module_repo_id') or 'local dir'}@{prov.get('module_revision')} "
                      f"({model.module.config.method.get('name')}, parent "
                      f"{model.module.config.parent.get('repo_id')})",
        })
    elif loaded.kind == INDEX:
        index = loaded.obj
        info.update({"parent": index.parent, "method": index.method, "metrics": index.metrics,
                     "modules": [asdict(e) for e in index.modules]})
    return info
