"""The split index (``hubmod_split.json``): which module repo, at which commit, holds each class of a split.

One schema for the writer (hubmod.split_pipeline) and every reader (compose, inspect, eval, load), so an
index from a stranger is checked field by field once, where it is read.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from .hub import Snapshot
from .refs import validate_repo_id
from .untrusted import Fields, check_format_version, printable

SPLIT_INDEX = "hubmod_split.json"
SPLIT_INDEX_KIND = "split_index"
FORMAT_VERSION = 1
MAX_ENTRIES = 100_000  # hubmod's limit on a parent's classes
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass
class IndexEntry:
    """One class's module: its repo and the commit the split published."""

    class_name: str
    class_index: int
    repo_id: str
    revision: str
    kept_kernels: float | None = None
    macs_ratio: float | None = None


@dataclass
class SplitIndex:
    index_repo: str
    parent: dict[str, Any]  # repo_id, revision, hub
    method: dict[str, Any]  # name, params
    split_id: str
    command: str | None
    metrics: dict[str, Any]
    modules: list[IndexEntry] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        return [e.class_name for e in self.modules]

    def to_dict(self) -> dict[str, Any]:
        return {"hubmod_kind": SPLIT_INDEX_KIND, "format_version": FORMAT_VERSION, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SplitIndex:
        f = Fields(data, f"{where} {SPLIT_INDEX}", "split the parent again")
        if data.get("hubmod_kind") != SPLIT_INDEX_KIND:
            raise f.error(f"hubmod_kind is {printable(data.get('hubmod_kind'))!r}, not {SPLIT_INDEX_KIND!r}")
        check_format_version(data, FORMAT_VERSION, "split index", f"{where} {SPLIT_INDEX}")
        entries = f.list("modules", max_len=MAX_ENTRIES)
        if not entries:
            raise f.error("lists no modules")
        modules = []
        for i, raw in enumerate(entries):
            e = Fields(raw, f"{where} {SPLIT_INDEX} module {i}", "split the parent again")
            repo_id = e.str("repo_id")
            try:
                validate_repo_id(repo_id)
            except Exception:
                raise e.error(f"repo_id {printable(repo_id)!r} is not a valid repo id") from None
            modules.append(IndexEntry(
                class_name=e.str("class_name", max_len=1000), class_index=e.int("class_index", lo=0),
                repo_id=repo_id, revision=e.str("revision", pattern=_SHA),
                kept_kernels=e.number("kept_kernels", optional=True, lo=0, hi=1),
                macs_ratio=e.number("macs_ratio", optional=True, lo=0, hi=1)))
        names = [m.class_name for m in modules]
        if len(set(names)) != len(names):
            raise f.error("names a class twice")
        method = f.obj("method")
        parent = f.obj("parent", optional=True)
        metrics = f.obj("metrics", optional=True)
        return cls(index_repo=f.str("index_repo", max_len=200), parent=parent.data if parent else {},
                   method={"name": method.str("name", max_len=100), "params": method.obj("params").data},
                   split_id=f.str("split_id", max_len=100), command=f.str("command", optional=True),
                   metrics=metrics.data if metrics else {}, modules=modules)

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> SplitIndex:
        return cls.from_dict(snap.read_json(SPLIT_INDEX), printable(snap.name))


def has_index(snap: Snapshot) -> bool:
    return snap.file(SPLIT_INDEX, required=False) is not None

