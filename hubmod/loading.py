"""Opening any SOURCE — a parent, a module, a composed or patched classifier, or a split index — by what it is.

The kind is read from the repo's own files (``hubmod_kind`` in config.json, or a
``hubmod_split.json`` index), never guessed from its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .artifact import CONFIG, artifact_class
from .composed import ComposedClassifier
from .errors import HubmodError
from .hub import Hub, Snapshot, open_ref
from .module import ClassModule
from .parents import parent_from_snapshot
from .patching import PatchedClassifier
from .refs import RepoRef, parse_source
from .split_index import SPLIT_INDEX, SPLIT_INDEX_KIND, SplitIndex, has_index
from .untrusted import printable

# What `Loaded.kind` holds: a registered artifact's own kind, or one of the two kinds that are not artifacts.
PARENT, INDEX = "parent", SPLIT_INDEX_KIND
MODULE, COMPOSED, PATCHED = ClassModule.kind, ComposedClassifier.kind, PatchedClassifier.kind


@dataclass
class Loaded:
    kind: str
    obj: Any  # Parent | ClassModule | ComposedClassifier | PatchedClassifier | SplitIndex
    snapshot: Snapshot


def open_source(source: str, hub: str | Hub | None = None, revision: str | None = None) -> Snapshot:
    ref = parse_source(source)
    if revision:
        ref = RepoRef(ref.kind, ref.repo_id, revision, ref.path)
    return open_ref(ref, hub)


def load(source: str, hub: str | Hub | None = None, revision: str | None = None) -> Loaded:
    """Load whatever ``source`` is. A parent whose repo also holds a split index loads as the parent."""
    snap = open_source(source, hub, revision)
    config = snap.read_json(CONFIG) if snap.file(CONFIG, required=False) else None
    artifact = artifact_class(config) if config is not None else None
    if artifact is not None:
        return Loaded(artifact.kind, artifact.from_snapshot(snap, hub), snap)
    if config is not None:
        return Loaded(PARENT, parent_from_snapshot(snap), snap)
    if has_index(snap):
        return Loaded(INDEX, SplitIndex.from_snapshot(snap), snap)
    raise HubmodError(f"{printable(snap.name)} has neither config.json nor {SPLIT_INDEX}: it is not a model hubmod "
                      "can read")


def class_names_of(loaded: Loaded) -> list[str]:
    """The classes a loaded repo covers (a module's one class, a classifier's or a split's all)."""
    return loaded.obj.class_names
