"""The embedded hub: repos in a directory under ``$HUBMOD_HOME``, with commits, shas and atomic pushes."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import HubmodError, InvalidRepoError, NotFoundError, option
from ..refs import is_commit_sha, validate_repo_id, validate_revision
from ..untrusted import parse_json
from .base import (
    LOCAL,
    MAX_CARD_BYTES,
    MAX_FRONT_MATTER_BYTES,
    Hub,
    ListedRepo,
    Snapshot,
    front_matter,
    hubmod_home,
    tree_digest,
)


class LocalHub(Hub):
    """A hub in a directory: ``models/<ns>/<name>/`` holds the files of each repo's main branch.

    Commits are immutable directories under ``.hubmod/repos/<ns>/<name>/commits/<sha>/``; the branch
    pointer is ``refs.json`` beside them. A push builds its commit in a temporary directory, renames
    it into place, then swaps the pointer (``os.replace``), all under an exclusive lock, so readers
    and concurrent writers only ever see whole commits.
    """

    name = LOCAL

    def __init__(self, root: Path | None = None):
        self.root = (root or hubmod_home() / "hub").expanduser().resolve()

    def url(self, repo_id: str) -> str:
        return str(self._tree(repo_id))

    def _tree(self, repo_id: str) -> Path:
        ns, name = validate_repo_id(repo_id).split("/")
        return self._inside(self.root / "models" / ns / name)

    def _meta(self, repo_id: str) -> Path:
        ns, name = validate_repo_id(repo_id).split("/")
        return self._inside(self.root / ".hubmod" / "repos" / ns / name)

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise HubmodError(f"refusing a path outside the hub directory: {path}")
        return resolved

    def _refs(self, repo_id: str) -> dict[str, str]:
        """The repo's branch pointers, each checked to be the sha of a commit stored under the repo."""
        refs_file = self._meta(repo_id) / "refs.json"
        if not refs_file.is_file():
            return {}
        where = f"the embedded hub's refs.json of {repo_id}"
        refs = parse_json(refs_file.read_bytes(), where)
        commits = self._meta(repo_id) / "commits"
        if not isinstance(refs, dict) or not all(
            isinstance(k, str) and is_commit_sha(v) and (commits / v).is_dir() and not (commits / v).is_symlink()
            for k, v in refs.items()
        ):
            raise InvalidRepoError(f"{where} ({refs_file}) does not point at commits of the repo; it is damaged: "
                                   "push the repo again, or delete its folder under .hubmod/repos")
        return refs

    def repo_exists(self, repo_id: str) -> bool:
        return "main" in self._refs(repo_id)

    def snapshot(self, repo_id: str, revision: str | None = None) -> Snapshot:
        refs = self._refs(repo_id)
        if "main" not in refs:
            raise NotFoundError(
                f"repo {repo_id} not found on the embedded hub ({self.root}); "
                f"check the name, or pass {option('hub', 'hf')} for the Hugging Face Hub"
            )
        commits = self._meta(repo_id) / "commits"
        if revision is None or revision == "main":
            sha = refs["main"]
        else:
            validate_revision(revision)
            matches = [p.name for p in commits.iterdir() if p.name.startswith(revision) and is_commit_sha(p.name)] if (
                len(revision) >= 7 and all(c in "0123456789abcdef" for c in revision)
            ) else []
            if len(matches) != 1:
                raise NotFoundError(
                    f"revision {revision!r} not found in {repo_id}; its main branch is at {refs['main']}"
                )
            sha = matches[0]
        path = commits / sha
        self._verify(repo_id, path)
        return Snapshot(path=path, sha=sha, hub=LOCAL, repo_id=repo_id, origin=self, confine=path)

    def list_models(self, tags: list[str], sort: str | None = None, limit: int = 100) -> Iterator[ListedRepo]:
        """Repos whose main commit's card carries every tag; only the cards' metadata is read.

        The embedded hub counts no downloads, so ``downloads`` order is any order; ``recent`` is the
        main commit's time.
        """
        models = self.root / "models"
        found: list[tuple[float, ListedRepo]] = []
        wanted = set(tags)
        for ns_dir in sorted(models.iterdir()) if models.is_dir() else []:
            for repo_dir in sorted(ns_dir.iterdir()) if ns_dir.is_dir() else []:
                repo_id = f"{ns_dir.name}/{repo_dir.name}"
                meta = self.root / ".hubmod" / "repos" / ns_dir.name / repo_dir.name
                try:  # a light read of the branch pointer: snapshot() checks a commit fully when it is used
                    refs = parse_json((meta / "refs.json").read_bytes(), "refs.json")
                    sha = refs.get("main") if isinstance(refs, dict) else None
                    if not is_commit_sha(sha):
                        continue
                    card = Path(os.path.realpath(meta / "commits" / sha / "README.md"))
                    stat = card.stat()
                    if not card.is_relative_to(self.root) or stat.st_size > MAX_CARD_BYTES:
                        continue
                    with card.open("r", encoding="utf-8", errors="replace") as f:
                        text = f.read(MAX_FRONT_MATTER_BYTES + 8)
                except (OSError, HubmodError):
                    continue  # a damaged or foreign folder is not a repo to list
                data = front_matter(text, must_contain=tuple(tags))
                card_tags = data.get("tags")
                if not isinstance(card_tags, list) or not wanted <= {t for t in card_tags if isinstance(t, str)}:
                    continue
                stamp = stat.st_mtime
                found.append((stamp, ListedRepo(repo_id, sha, data, None,
                                                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)))))
                if sort is None and len(found) >= limit:
                    return iter([r for _, r in found])
        if sort == "recent":
            found.sort(key=lambda pair: -pair[0])
        return iter([r for _, r in found[:limit]])

    def _verify(self, repo_id: str, commit_dir: Path) -> None:
        """A commit's sha is a hash of its content and history: check the folder still holds what was committed."""
        sha = commit_dir.name
        try:
            info = parse_json((self._meta(repo_id) / "log" / f"{sha}.json").read_bytes(), "commit log")
            expected = _commit_sha(info["tree"], info["parent"], info["time_ns"], info["message"])
        except (OSError, HubmodError, KeyError, TypeError):
            expected = None
        if commit_dir.is_symlink() or expected != sha or tree_digest(commit_dir) != info["tree"]:
            raise InvalidRepoError(f"commit {sha[:12]} of {repo_id} on the embedded hub does not hold what was "
                                   f"committed (its files or log changed since); push the repo again")

    @contextlib.contextmanager
    def _lock(self, repo_id: str) -> Iterator[None]:
        meta = self._meta(repo_id)
        meta.mkdir(parents=True, exist_ok=True)
        with open(meta / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def push_folder(self, repo_id: str, folder: Path, message: str, private: bool = False) -> str:
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())
        if not files:
            raise HubmodError(f"nothing to push to {repo_id}: {folder} holds no files")
        meta = self._meta(repo_id)
        with self._lock(repo_id):
            refs = self._refs(repo_id)
            parent = refs.get("main")
            commits = meta / "commits"
            commits.mkdir(parents=True, exist_ok=True)
            for stale in meta.glob(".push-*"):  # left by a push that was killed (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=".push-", dir=meta))
            try:
                if parent:  # like upload_folder: files not in this push stay as they were
                    _link_tree(commits / parent, staging)
                for src in files:
                    dst = staging / src.relative_to(folder)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.unlink(missing_ok=True)  # never write through a hard link into an old commit
                    shutil.copyfile(src, dst)
                digest = tree_digest(staging)
                if parent and _logged_tree(meta, parent) == digest:
                    shutil.rmtree(staging)
                    return parent  # nothing changed: no empty commit
                stamp = time.time_ns()
                sha = _commit_sha(digest, parent, stamp, message)
                os.rename(staging, commits / sha)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            log = meta / "log"
            log.mkdir(exist_ok=True)
            info = {"sha": sha, "parent": parent, "tree": digest, "message": message, "time_ns": stamp}
            _atomic_write(log / f"{sha}.json", json.dumps(info, indent=1))
            _atomic_write(meta / "refs.json", json.dumps({**refs, "main": sha}))
            self._refresh_view(repo_id, commits / sha)
        return sha

    def _refresh_view(self, repo_id: str, commit_dir: Path) -> None:
        """Mirror a commit into models/<ns>/<name> (hard links; the view is for people, not reads)."""
        tree = self._tree(repo_id)
        tree.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{tree.name}-", dir=tree.parent))
        _link_tree(commit_dir, staging)
        old = None
        if tree.exists():
            old = tree.parent / f".{tree.name}-old-{time.time_ns()}"
            os.rename(tree, old)
        os.rename(staging, tree)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _logged_tree(meta: Path, sha: str) -> str | None:
    try:
        info = parse_json((meta / "log" / f"{sha}.json").read_bytes(), "commit log")
    except (OSError, HubmodError):
        return None
    return info.get("tree") if isinstance(info, dict) else None


def _commit_sha(tree: str, parent: str | None, stamp: int, message: str) -> str:
    return hashlib.sha1(f"tree {tree}\nparent {parent}\ntime {stamp}\n\n{message}".encode()).hexdigest()


def _link_tree(src_dir: Path, dst_dir: Path) -> None:
    """Hard-link every file of src_dir into dst_dir (copy where links are not possible)."""
    for src in src_dir.rglob("*"):
        if src.is_file():
            dst = dst_dir / src.relative_to(src_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
