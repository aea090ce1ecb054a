"""What every hub is: a `Snapshot` (one commit of a repo, in a local directory) and the `Hub` interface,
with the size limits on what hubmod reads from any repo."""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidRepoError, NotFoundError
from ..refs import source_path
from ..untrusted import parse_json, printable

LOCAL = "local"
HF = "hf"
MAX_JSON_BYTES = 64 * 2**20  # a composed config of hundreds of modules is a few MB
MAX_WEIGHTS_BYTES = 16 * 2**30  # 2e9 parameters (hubmod's model limit) in float64
MAX_CARD_BYTES = 4 * 2**20
# The only files hubmod ever downloads or reads from a repo, with the most bytes each may have:
# safetensors and JSON (never pickles), and the card for its license.
READ_FILES = {"config.json": MAX_JSON_BYTES, "hubmod_split.json": MAX_JSON_BYTES,
              "model.safetensors": MAX_WEIGHTS_BYTES, "README.md": MAX_CARD_BYTES}


def hubmod_home() -> Path:
    return Path(os.environ.get("HUBMOD_HOME") or Path.home() / ".cache" / "hubmod").expanduser()


@dataclass(frozen=True)
class Snapshot:
    """One commit of one repo, readable on the local disk."""

    path: Path
    sha: str
    hub: str  # "local", an endpoint URL, or "dir"
    repo_id: str | None = None
    # The hub this snapshot was read from (None for a local directory): whatever the repo's files
    # point to (modules of a composed repo or a split index) is read from there, never from a hub
    # named in a file.
    origin: Hub | None = field(default=None, compare=False, repr=False)
    # Where the snapshot's files may resolve to (a cache keeps them as symlinks into its blobs).
    confine: Path | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.repo_id or self.path.name

    def file(self, filename: str, required: bool = True) -> Path | None:
        """The path of one file hubmod reads from the repo (see READ_FILES), or None / NotFoundError."""
        if filename not in READ_FILES:
            raise ValueError(f"hubmod does not read {filename!r} from repos")
        path = self.path / filename
        if path.is_file():
            real = path.resolve()
            if not real.is_relative_to((self.confine or self.path).resolve()):
                raise InvalidRepoError(f"{printable(self.name)}: {filename} is a link to a file outside the repo "
                                       f"({printable(real)}); hubmod does not follow it")
            if real.stat().st_size > READ_FILES[filename]:
                raise InvalidRepoError(f"{filename} in {printable(self.name)} is {real.stat().st_size:,} bytes, over "
                                       f"hubmod's limit of {READ_FILES[filename]:,}; it is not a hubmod or timm file")
            return path
        if required:
            raise NotFoundError(f"{printable(self.name)} has no {filename}: is it a hubmod or timm model repo?")
        return None

    def read_json(self, filename: str = "config.json") -> dict:
        path = self.file(filename)
        data = parse_json(path.read_bytes(), f"{filename} in {printable(self.name)}")
        if not isinstance(data, dict):
            raise InvalidRepoError(f"{filename} in {printable(self.name)} must hold a JSON object")
        return data


def tree_digest(folder: Path, names: list[str] | None = None) -> str:
    """Content hash of a folder (or of the files ``names`` in it): identical files, identical digests."""
    h = hashlib.sha1()
    paths = (sorted(p for p in folder.rglob("*") if p.is_file()) if names is None
             else [folder / n for n in sorted(names) if (folder / n).is_file()])
    for path in paths:
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def existing_dir(path: Path) -> Path:
    """``path`` with ``~`` expanded, or one line saying the directory does not exist."""
    expanded = path.expanduser()
    if not expanded.is_dir():
        raise NotFoundError(f"directory {printable(source_path(path))} does not exist")
    return expanded


def dir_snapshot(path: Path) -> Snapshot:
    """A local directory as a snapshot; its "sha" is a digest of the files hubmod reads from it."""
    root = existing_dir(path).resolve()
    snap = Snapshot(path=root, sha="", hub="dir", confine=root)
    readable = [n for n in READ_FILES if snap.file(n, required=False) is not None]  # refuses escaping links
    return Snapshot(path=root, sha=tree_digest(root, readable), hub="dir", confine=root)


LISTING_SORTS = ("downloads", "recent")  # orders a hub listing itself can give (hubmod.discovery sorts the rest)
MAX_FRONT_MATTER_BYTES = 256 * 2**10  # a card's YAML metadata beyond this is not read by listings


@dataclass
class ListedRepo:
    """One model repo of a hub listing: its id, commit and card metadata (untrusted, unchecked)."""

    repo_id: str
    sha: str | None
    card_data: dict
    downloads: int | None = None
    last_modified: str | None = None


_ANCHOR_OR_ALIAS = re.compile(r"(?:^|[\s\[{,:-])[&*][^\s]")  # where YAML may hold an anchor or an alias


def front_matter(text: str, must_contain: tuple[str, ...] = ()) -> dict:
    """The YAML metadata of a model card, or {} when it has none, it cannot be read safely, or its
    text lacks one of ``must_contain`` (a cheap test that spares parsing cards a listing will drop).

    Only YAML's safe subset is read, with the C parser where there is one, and documents that use
    anchors or aliases (a way to make a small file expand enormously) are treated as having none.
    """
    import yaml

    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0 or end > MAX_FRONT_MATTER_BYTES:
        return {}
    block = text[3:end]
    if not all(re.search(re.escape(needle) + r"(?![\w-])", block) for needle in must_contain):
        return {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        if _ANCHOR_OR_ALIAS.search(block):  # the text test is loose; the parser's events decide
            events = yaml.parse(block, Loader=loader)
            if any(isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None) for ev in events):
                return {}
        data = yaml.load(block, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


class Hub(ABC):
    """A place repos can be read from and pushed to."""

    name: str

    @abstractmethod
    def snapshot(self, repo_id: str, revision: str | None = None) -> Snapshot: ...

    @abstractmethod
    def push_folder(self, repo_id: str, folder: Path, message: str, private: bool = False) -> str:
        """Commit the folder's files as the new state of ``repo_id``; return the commit sha.

        ``private`` applies when the push creates the repo, on hubs that have visibility."""

    @abstractmethod
    def repo_exists(self, repo_id: str) -> bool: ...

    @abstractmethod
    def url(self, repo_id: str) -> str: ...

    @abstractmethod
    def list_models(self, tags: list[str], sort: str | None = None, limit: int = 100) -> Iterator[ListedRepo]:
        """Model repos carrying every one of ``tags``, with their card metadata, at most ``limit`` of them,
        in the order ``sort`` (one of LISTING_SORTS) asks for, or any order."""
