"""Finishing a split that was stopped, without redoing what was done.

A split has two costly stages that can be cut short: the search, and publishing one repo per
class. After the search, the extracted modules are kept on disk under ``HUBMOD_HOME/splits/<split
id>/`` until the split's index is published; ``outcome.json`` is written last, so a checkpoint
without it is incomplete and ignored. A class counts as done when its repo's newest commit holds a
module with the same split id (same parent commit, method, options, seed and dataset): each push
is one atomic commit, so such a repo is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .errors import HubmodError
from .hub import Hub, hubmod_home
from .module import MODULE_KIND, ClassModule

OUTCOME = "outcome.json"


def checkpoint_dir(split_id: str) -> Path:
    return hubmod_home() / "splits" / split_id


def save_checkpoint(split_id: str, modules: list[ClassModule], method_metrics: dict) -> None:
    root = checkpoint_dir(split_id)
    shutil.rmtree(root, ignore_errors=True)
    for m in modules:
        m.save_pretrained(root / str(m.config.class_index), card=False)
    tmp = root / f".{OUTCOME}.tmp"
    tmp.write_text(json.dumps({"classes": [m.config.class_index for m in modules], "method_metrics": method_metrics}))
    os.replace(tmp, root / OUTCOME)  # the checkpoint exists only once this file does


def load_checkpoint(split_id: str, targets: list[int]) -> tuple[list[ClassModule], dict] | None:
    """The modules of ``targets`` and the method's metrics, if a complete checkpoint holds them all."""
    root = checkpoint_dir(split_id)
    try:
        saved = json.loads((root / OUTCOME).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not set(targets) <= set(saved.get("classes", [])):
        return None
    try:
        modules = [ClassModule.from_pretrained(root / str(c)) for c in targets]
    except HubmodError:
        return None  # a damaged checkpoint is redone, never trusted
    return modules, saved.get("method_metrics", {})


def clear_checkpoint(split_id: str) -> None:
    shutil.rmtree(checkpoint_dir(split_id), ignore_errors=True)


def published_revision(hub: Hub, repo_id: str, split_id: str) -> str | None:
    """The commit of ``repo_id`` if its newest state is this split's module, else None."""
    if not hub.repo_exists(repo_id):
        return None
    snap = hub.snapshot(repo_id)
    try:
        cfg = snap.read_json("config.json")
    except HubmodError:
        return None
    if cfg.get("hubmod_kind") == MODULE_KIND and cfg.get("split_id") == split_id:
        return snap.sha
    return None
