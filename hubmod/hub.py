"""Where repos live: the embedded directory hub, the Hugging Face Hub, or a local directory.

Every read returns a `Snapshot`: a local directory holding exactly one commit of a repo, plus that
commit's sha. Every write is one atomic commit: a repo either has all the files of a push or none of
them. The hub is chosen when a call is made (never at import), by one rule (HUB_RULE): ``--hub``, else
``HUBMOD_HUB``, else the Hugging Face Hub when ``HF_ENDPOINT`` or ``HF_TOKEN`` is set, else the
embedded hub.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import HubAccessError, HubmodError, InvalidRepoError, NotFoundError, first_line, option
from .refs import RepoRef, is_commit_sha, source_path, validate_repo_id, validate_revision
from .untrusted import parse_json, printable

LOCAL = "local"
HF = "hf"
DEFAULT_ENDPOINT = "https://huggingface.co"
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


# --------------------------------------------------------------------------- embedded hub


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


# --------------------------------------------------------------------------- Hugging Face Hub


TIMEOUT_ENV = "HUBMOD_HUB_TIMEOUT"
DEFAULT_TIMEOUT = 60.0


def request_timeout() -> float:
    """Seconds a hub request may wait for the server to answer (``$HUBMOD_HUB_TIMEOUT``, default 60)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        raise HubmodError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise HubmodError(f"{TIMEOUT_ENV} must be positive, not {text}")
    return value


def limit_request_time() -> None:
    """Give huggingface_hub's shared HTTP client a timeout.

    Its default client waits forever (``timeout=None``), so a server that stalls on an API call
    would hang a split or compose for good. A factory the user installed is left alone.
    """
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    current = getattr(_http, "_GLOBAL_CLIENT_FACTORY", None)
    if current is not _http.default_client_factory and not hasattr(current, "hubmod_timeout"):
        return
    timeout = request_timeout()
    if getattr(current, "hubmod_timeout", None) == timeout:
        return

    def fill_in_timeout(request) -> None:
        # huggingface_hub passes timeout=None per request for API calls, which overrides a client default
        limits = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {k: limits.get(k) or timeout for k in ("connect", "read", "write", "pool")}

    def factory():
        client = _http.default_client_factory()
        client.event_hooks = {**client.event_hooks, "request": [*client.event_hooks["request"], fill_in_timeout],
                              "response": [*client.event_hooks.get("response", []), refuse_unsafe_file_headers]}
        return client

    factory.hubmod_timeout = timeout
    set_client_factory(factory)


_SAFE_ETAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def _unpinned(endpoint: str, repo_id: str, revision: str | None, sha: object) -> HubAccessError:
    return HubAccessError(f"{endpoint} answered commit {printable(sha)[:80]!r} for {repo_id}@{revision or 'main'}; "
                          "hubmod only reads a commit it can pin, so it stopped")


def refuse_unsafe_file_headers(response) -> None:
    """Stop a download whose headers would steer huggingface_hub's cache outside its folder.

    huggingface_hub names cache files after the server's ``ETag`` / ``X-Linked-Etag`` and commit
    folders after ``X-Repo-Commit``; a server answering ``../..`` there would make it write
    elsewhere. Every file response is checked before huggingface_hub reads those headers.
    """
    if "/resolve/" not in response.request.url.path:
        return
    headers = response.headers
    commit = headers.get("x-repo-commit")
    if commit is not None and not is_commit_sha(commit):
        raise HubAccessError(f"{response.request.url.host} answered a file with commit {printable(commit)!r}, "
                             "which is not a commit sha; hubmod stopped the download")
    for name in ("etag", "x-linked-etag"):
        value = headers.get(name)
        if value is not None and not _SAFE_ETAG.fullmatch(value.removeprefix("W/").strip('"')):
            raise HubAccessError(f"{response.request.url.host} answered a file with {name} {printable(value)!r}, "
                                 "which is not a content hash; hubmod stopped the download")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's connection / timeout errors (httpx2 or httpx, whichever huggingface_hub uses)."""
    return tuple(sys.modules[m].TransportError for m in ("httpx2", "httpx") if m in sys.modules)


class HfHub(Hub):
    """The Hugging Face Hub (or any server speaking its API) through ``huggingface_hub``."""

    def __init__(self, endpoint: str | None = None, token: str | None = None):
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.token = token
        self.name = self.endpoint
        limit_request_time()

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token)

    def url(self, repo_id: str) -> str:
        return f"{self.endpoint}/{repo_id}"

    def snapshot(self, repo_id: str, revision: str | None = None) -> Snapshot:
        """Download the files hubmod reads (READ_FILES, each within its size limit) of one commit.

        The commit is resolved first and must be a full sha (and the one asked for, when a sha was);
        the files are then fetched at that sha, so a server cannot steer the cache elsewhere.
        """
        validate_repo_id(repo_id)
        if revision is not None:
            validate_revision(revision)

        def download() -> Path:
            with hf_errors(repo_id, revision, self.endpoint):
                return self._download(repo_id, revision)

        path = retry_transient(download)
        sha = path.name  # the cache keeps each commit in snapshots/<sha>/
        if not is_commit_sha(sha) or (is_commit_sha(revision) and sha != revision):
            raise _unpinned(self.endpoint, repo_id, revision, sha)
        return Snapshot(path=path, sha=sha, hub=self.endpoint, repo_id=repo_id, origin=self,
                        confine=path.parent.parent)

    def _download(self, repo_id: str, revision: str | None) -> Path:
        from huggingface_hub import constants, hf_hub_download, snapshot_download

        if constants.HF_HUB_OFFLINE:  # the cache only: a branch resolves through its refs/ file
            return Path(snapshot_download(repo_id, revision=revision, endpoint=self.endpoint, token=self.token,
                                          allow_patterns=list(READ_FILES), local_files_only=True))
        api = self._api()
        sha = api.model_info(repo_id, revision=revision).sha
        if sha is None:
            raise NotFoundError(f"{repo_id} on {self.endpoint} has no commits yet: nothing to read")
        if not is_commit_sha(sha) or (is_commit_sha(revision) and sha != revision):
            raise _unpinned(self.endpoint, repo_id, revision, sha)
        sizes = {f.path: f.size for f in api.list_repo_tree(repo_id, revision=sha) if f.path in READ_FILES
                 and hasattr(f, "size")}
        for name, size in sizes.items():
            if not isinstance(size, int) or size > READ_FILES[name]:
                raise InvalidRepoError(f"{name} in {repo_id} is {size:,} bytes, over hubmod's limit of "
                                       f"{READ_FILES[name]:,}; it is not a hubmod or timm file")
        if not sizes:
            raise NotFoundError(f"{repo_id} on {self.endpoint} holds none of the files hubmod reads "
                                f"({', '.join(READ_FILES)}): is it a hubmod or timm model repo?")
        folders = {Path(hf_hub_download(repo_id, name, revision=sha, endpoint=self.endpoint, token=self.token)).parent
                   for name in sorted(sizes)}
        folder = folders.pop()
        if folders or folder.name != sha:
            raise HubAccessError(f"{self.endpoint} served {repo_id} from another commit than {sha}; try again")
        branch = revision or "main"
        if branch != sha:  # remembered for offline use, as snapshot_download does
            refs = folder.parent.parent / "refs" / branch
            refs.parent.mkdir(parents=True, exist_ok=True)
            refs.write_text(sha)
        return folder

    def repo_exists(self, repo_id: str) -> bool:
        with hf_errors(repo_id, None, self.endpoint):
            return self._api().repo_exists(repo_id)

    def push_folder(self, repo_id: str, folder: Path, message: str, private: bool = False) -> str:
        """One commit of the folder's files. A repo this push created stays if the upload fails (empty):
        deleting it could delete another writer's repo created under the same name meanwhile."""
        api = self._api()
        with hf_errors(repo_id, None, self.endpoint):
            api.create_repo(repo_id, exist_ok=True, private=True if private else None)  # None: the owner's default
            info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message)
        if not is_commit_sha(info.oid):
            raise HubAccessError(f"{self.endpoint} answered commit {printable(info.oid)!r} for the push to {repo_id}; "
                                 "check the repo on the hub")
        return info.oid


@contextlib.contextmanager
def hf_errors(repo_id: str, revision: str | None, endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one-line hubmod errors."""
    from huggingface_hub import errors as e

    try:
        yield
    except e.RevisionNotFoundError:
        raise NotFoundError(f"revision {revision!r} not found in {repo_id} on {endpoint}") from None
    except e.RepositoryNotFoundError:
        raise NotFoundError(
            f"repo {repo_id} not found on {endpoint} (or it is private and you lack access): "
            "check the id, or log in with `hf auth login`"
        ) from None
    except e.LocalEntryNotFoundError as err:  # before EntryNotFoundError: it is a subclass
        # snapshot_download falls back to the cache when the server fails; say why it failed
        cause = err.__cause__
        if isinstance(cause, e.HfHubHTTPError) and getattr(cause, "response", None) is not None:
            raise _http_error(cause, repo_id, endpoint) from None
        if isinstance(cause, e.OfflineModeIsEnabled):
            raise _offline_error(repo_id, endpoint) from None
        if isinstance(cause, _transport_errors()):
            raise _transport_error(cause, repo_id, endpoint) from None
        raise HubAccessError(
            f"{repo_id} is not in the Hugging Face cache and {endpoint} cannot be reached "
            "(no network?): connect once to fetch it"
        ) from None
    except e.OfflineModeIsEnabled:
        raise _offline_error(repo_id, endpoint) from None
    except e.EntryNotFoundError as err:
        raise NotFoundError(f"a file is missing in {repo_id} on {endpoint}: {first_line(err)}") from None
    except e.HfHubHTTPError as err:
        raise _http_error(err, repo_id, endpoint) from None
    except _transport_errors() as err:
        raise _transport_error(err, repo_id, endpoint) from None
    except OSError as err:  # connection errors from httpx surface as OSError subclasses
        if isinstance(err, FileNotFoundError | PermissionError):
            raise
        raise HubAccessError(f"cannot reach {endpoint} for {repo_id}: {first_line(err)}", transient=True) from None
    except RuntimeError as err:  # huggingface_hub wraps a failed LFS upload (after its retries) this way
        if err.__cause__ is None:
            raise
        raise HubAccessError(f"uploading to {repo_id} on {endpoint} failed ({first_line(err)} "
                             f"{first_line(err.__cause__)}); nothing was committed, run the command again") from None


def _http_error(err, repo_id: str, endpoint: str) -> HubAccessError:
    status = err.response.status_code if getattr(err, "response", None) is not None else None
    if status in (401, 403):
        return HubAccessError(
            f"{endpoint} refused access to {repo_id} (HTTP {status}): log in with `hf auth login` "
            "or set HF_TOKEN with write access to that namespace"
        )
    return HubAccessError(f"{endpoint} failed for {repo_id} (HTTP {status}): {first_line(err)}",
                          transient=status is not None and (status >= 500 or status == 429))


def _transport_error(err: BaseException, repo_id: str, endpoint: str) -> HubAccessError:
    if "timeout" in type(err).__name__.lower():
        error = HubAccessError(_stall_message(endpoint, repo_id, 1), transient=True)
        error.stalled = (endpoint, repo_id)  # retry_transient restates the time over all tries
        return error
    return HubAccessError(f"cannot reach {endpoint} for {repo_id}: {first_line(err)}",
                          transient=True)


def _offline_error(repo_id: str, endpoint: str) -> HubAccessError:
    return HubAccessError(f"{repo_id} is not in the Hugging Face cache, and HF_HUB_OFFLINE=1 keeps hubmod from "
                          f"downloading it from {endpoint}: unset HF_HUB_OFFLINE once to fetch it")


def _stall_message(endpoint: str, repo_id: str, tries: int) -> str:
    limit = request_timeout()
    waited = f"within {limit:g} s" if tries == 1 else f"in {tries} tries of {limit:g} s ({tries * limit:g} s in all)"
    return f"{endpoint} did not answer for {repo_id} {waited}: try again, or allow longer with {TIMEOUT_ENV}=<seconds>"


def retry_transient(call, attempts: int = 3, first_wait: float = 0.5):
    """Run ``call()``; repeat it after a short, doubling wait when the hub failed transiently (5xx, 429, drops).

    Only for reads: repeating a read is always safe, repeating a commit is not.
    """
    wait = first_wait
    for attempt in range(attempts):
        try:
            return call()
        except HubAccessError as err:
            if attempt == attempts - 1 and getattr(err, "stalled", None):
                raise HubAccessError(_stall_message(*err.stalled, attempts), transient=True) from None
            if not err.transient or attempt == attempts - 1:
                raise
            time.sleep(wait)
            wait *= 2


# --------------------------------------------------------------------------- selection


HUB_RULE = ("--hub, else $HUBMOD_HUB, else the Hugging Face Hub when HF_ENDPOINT or HF_TOKEN is set, "
            "else the embedded hub under $HUBMOD_HOME")


def default_hub_reason() -> tuple[str, str]:
    """The hub chosen when none is named (HUB_RULE), and why: ("local", "HUBMOD_HUB, HF_ENDPOINT, HF_TOKEN unset")."""
    if os.environ.get("HUBMOD_HUB", "").strip():
        return os.environ["HUBMOD_HUB"].strip().lower(), "HUBMOD_HUB is set"
    for var in ("HF_ENDPOINT", "HF_TOKEN"):
        if os.environ.get(var):
            return HF, f"{var} is set"
    return LOCAL, "no --hub, HUBMOD_HUB, HF_ENDPOINT or HF_TOKEN"


def get_hub(hub: str | Hub | None = None) -> Hub:
    """The hub to use now, by HUB_RULE."""
    if isinstance(hub, Hub):
        return hub
    choice = (hub or "").strip().lower() or default_hub_reason()[0]
    if choice == LOCAL:
        return LocalHub()
    if choice == HF:
        return HfHub()
    if choice.startswith(("http://", "https://")):
        return HfHub(endpoint=choice)
    raise HubmodError(f"unknown hub {hub!r}: use 'local', 'hf', or an endpoint URL")


def open_ref(ref: RepoRef, hub: str | Hub | None = None) -> Snapshot:
    """Fetch what a parsed SOURCE names, honouring its explicit prefix over the selected hub."""
    if ref.kind == "dir":
        return dir_snapshot(ref.path)
    if ref.kind == "hf":
        return HfHub().snapshot(ref.repo_id, ref.revision)
    return get_hub(hub).snapshot(ref.repo_id, ref.revision)


def hub_for(ref: RepoRef, hub: str | Hub | None = None) -> Hub | None:
    """The hub a REF lives on (None for local directories)."""
    if ref.kind == "dir":
        return None
    return HfHub() if ref.kind == "hf" else get_hub(hub)
