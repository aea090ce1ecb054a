"""Finishing a split that was stopped, without redoing what was done.

A split has two costly stages that can be cut short: the search, and publishing one repo per
class. After the search, the extracted modules are kept on disk under ``HUBMOD_HOME/splits/<split
id>/`` until the split's index is published; ``outcome.json`` is written last, so a checkpoint
without it is incomplete and ignored. A class counts as done when its repo's newest commit holds a
module with the same split id (same parent commit, method, options, seed and dataset): each push
is one atomic commit, so such a repo is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import HubmodError, option
from .hub import Hub, hubmod_home
from .module import ClassModule
from .untrusted import parse_json

OUTCOME = "outcome.json"
LOCK = ".lock"
logger = logging.getLogger(__name__)


def checkpoint_dir(split_id: str) -> Path:
    return hubmod_home() / "splits" / split_id


@contextlib.contextmanager
def split_lock(split_id: str) -> Iterator[None]:
    """Held while a split runs: a second identical split (same parent commit, method, options, seed and
    dataset) would share and delete this one's checkpoint, so it stops at once instead."""
    root = checkpoint_dir(split_id)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HubmodError(f"an identical split (same parent commit, method, options, seed and dataset) is "
                              f"running on this machine ({root}); wait for it to finish, or change "
                              f"{option('seed')}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    if [p.name for p in root.iterdir()] == [LOCK]:  # nothing left to resume: no trace of the split stays
        shutil.rmtree(root, ignore_errors=True)


def _locked(root: Path) -> bool:
    try:
        with open(root / LOCK, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def drop_stale_checkpoints(repo_prefix: str, keep: str) -> None:
    """Remove checkpoints of earlier splits into the same repos (another parent commit, other options):
    a new split replaces them, so they would never be resumed and would stay on disk for good."""
    splits = hubmod_home() / "splits"
    if not splits.is_dir():
        return
    for root in splits.iterdir():
        if root.name == keep or not root.is_dir():
            continue
        try:
            saved = parse_json((root / OUTCOME).read_bytes(), "checkpoint")
        except (OSError, HubmodError):
            continue
        if isinstance(saved, dict) and saved.get("repo_prefix") == repo_prefix and not _locked(root):
            logger.info("removing the checkpoint of an earlier split into %s (%s)", repo_prefix, root)
            shutil.rmtree(root, ignore_errors=True)


def save_checkpoint(split_id: str, modules: list[ClassModule], method_metrics: dict, repo_prefix: str) -> None:
    root = checkpoint_dir(split_id)
    _empty(root)
    for m in modules:
        m.save_pretrained(root / str(m.config.class_index), card=False)
    tmp = root / f".{OUTCOME}.tmp"
    tmp.write_text(json.dumps({"classes": [m.config.class_index for m in modules], "method_metrics": method_metrics,
                               "repo_prefix": repo_prefix}))
    os.replace(tmp, root / OUTCOME)  # the checkpoint exists only once this file does


def load_checkpoint(split_id: str, targets: list[int]) -> tuple[list[ClassModule], dict] | None:
    """The modules of ``targets`` and the method's metrics, if a complete checkpoint holds them all."""
    root = checkpoint_dir(split_id)
    try:
        saved = parse_json((root / OUTCOME).read_bytes(), "checkpoint")
    except (OSError, HubmodError):
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("classes"), list) or not set(targets) <= {
            c for c in saved["classes"] if type(c) is int}:
        return None
    try:
        modules = [ClassModule.from_pretrained(root / str(c)) for c in targets]
    except HubmodError:
        return None  # a damaged checkpoint is redone, never trusted
    metrics = saved.get("method_metrics")
    return modules, metrics if isinstance(metrics, dict) else {}


def clear_checkpoint(split_id: str) -> None:
    """Remove a finished split's checkpoint (its lock file stays until the split releases it)."""
    _empty(checkpoint_dir(split_id))


def _empty(root: Path) -> None:
    """Everything in a checkpoint folder but its lock file."""
    for old in root.iterdir() if root.is_dir() else ():
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        elif old.name != LOCK:
            old.unlink(missing_ok=True)


def published_revision(hub: Hub, repo_id: str, split_id: str) -> str | None:
    """The commit of ``repo_id`` if its newest state is this split's module, else None."""
    if not hub.repo_exists(repo_id):
        return None
    snap = hub.snapshot(repo_id)
    try:
        cfg = snap.read_json("config.json")
    except HubmodError:
        return None
    if cfg.get("hubmod_kind") == ClassModule.kind and cfg.get("split_id") == split_id:
        return snap.sha
    return None
