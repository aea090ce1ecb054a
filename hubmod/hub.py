"""Where repos live: the embedded directory hub, the Hugging Face Hub, or a local directory.

Every read returns a `Snapshot`: a local directory holding exactly one commit of a repo, plus that
commit's sha. Every write is one atomic commit: a repo either has all the files of a push or none of
them. The hub is chosen when a call is made (never at import), so tests and users can switch with
``--hub``, ``HUBMOD_HUB`` or ``HF_ENDPOINT``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import HubAccessError, HubmodError, NotFoundError
from .refs import RepoRef, is_commit_sha, validate_repo_id, validate_revision

LOCAL = "local"
HF = "hf"
# Only these are ever downloaded from a repo: hubmod reads safetensors and JSON, never pickles.
READ_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.png"]
DEFAULT_ENDPOINT = "https://huggingface.co"
MAX_JSON_BYTES = 64 * 2**20  # a composed config of hundreds of modules is a few MB


def hubmod_home() -> Path:
    return Path(os.environ.get("HUBMOD_HOME") or Path.home() / ".cache" / "hubmod").expanduser()


@dataclass(frozen=True)
class Snapshot:
    """One commit of one repo, readable on the local disk."""

    path: Path
    sha: str
    hub: str  # "local", an endpoint URL, or "dir"
    repo_id: str | None = None

    @property
    def name(self) -> str:
        return self.repo_id or self.path.name

    def file(self, filename: str, required: bool = True) -> Path | None:
        path = self.path / filename
        if path.is_file():
            return path
        if required:
            raise NotFoundError(f"{self.name} has no {filename}: is it a hubmod or timm model repo?")
        return None

    def read_json(self, filename: str = "config.json") -> dict:
        path = self.file(filename)
        if path.stat().st_size > MAX_JSON_BYTES:
            raise HubmodError(f"{filename} in {self.name} is {path.stat().st_size} bytes, over hubmod's "
                              f"{MAX_JSON_BYTES // 2**20} MB limit for JSON; it is not a hubmod or timm config")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HubmodError(f"{filename} in {self.name} is not valid JSON ({e}); re-publish the repo") from None
        if not isinstance(data, dict):
            raise HubmodError(f"{filename} in {self.name} must hold a JSON object")
        return data


def tree_digest(folder: Path) -> str:
    """Content hash of a folder: identical files give identical digests wherever they are."""
    h = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def dir_snapshot(path: Path) -> Snapshot:
    path = path.expanduser()
    if not path.is_dir():
        raise NotFoundError(f"directory {path} does not exist")
    return Snapshot(path=path.resolve(), sha=tree_digest(path), hub="dir")


class Hub(ABC):
    """A place repos can be read from and pushed to."""

    name: str

    @abstractmethod
    def snapshot(self, repo_id: str, revision: str | None = None) -> Snapshot: ...

    @abstractmethod
    def push_folder(self, repo_id: str, folder: Path, message: str) -> str:
        """Commit the folder's files as the new state of ``repo_id``; return the commit sha."""

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

    def _refs(self, repo_id: str) -> dict:
        refs = self._meta(repo_id) / "refs.json"
        if not refs.is_file():
            return {}
        return json.loads(refs.read_text())

    def repo_exists(self, repo_id: str) -> bool:
        return "main" in self._refs(repo_id)

    def snapshot(self, repo_id: str, revision: str | None = None) -> Snapshot:
        refs = self._refs(repo_id)
        if "main" not in refs:
            raise NotFoundError(
                f"repo {repo_id} not found on the embedded hub ({self.root}); "
                "check the name, or pass --hub hf for the Hugging Face Hub"
            )
        commits = self._meta(repo_id) / "commits"
        if revision is None or revision == "main":
            sha = refs["main"]
        else:
            validate_revision(revision)
            matches = [p.name for p in commits.iterdir() if p.name.startswith(revision)] if (
                len(revision) >= 7 and all(c in "0123456789abcdef" for c in revision)
            ) else []
            if len(matches) != 1:
                raise NotFoundError(
                    f"revision {revision!r} not found in {repo_id}; its main branch is at {refs['main']}"
                )
            sha = matches[0]
        return Snapshot(path=commits / sha, sha=sha, hub=LOCAL, repo_id=repo_id)

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

    def push_folder(self, repo_id: str, folder: Path, message: str) -> str:
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())
        if not files:
            raise HubmodError(f"nothing to push to {repo_id}: {folder} holds no files")
        meta = self._meta(repo_id)
        with self._lock(repo_id):
            refs = self._refs(repo_id)
            parent = refs.get("main")
            commits = meta / "commits"
            commits.mkdir(parents=True, exist_ok=True)
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
                parent_log = meta / "log" / f"{parent}.json"
                if parent and parent_log.is_file() and json.loads(parent_log.read_text()).get("tree") == digest:
                    shutil.rmtree(staging)
                    return parent  # nothing changed: no empty commit
                stamp = time.time_ns()
                sha = hashlib.sha1(f"tree {digest}\nparent {parent}\ntime {stamp}\n\n{message}".encode()).hexdigest()
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
        client.event_hooks = {**client.event_hooks, "request": [*client.event_hooks["request"], fill_in_timeout]}
        return client

    factory.hubmod_timeout = timeout
    set_client_factory(factory)


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
        from huggingface_hub import snapshot_download

        validate_repo_id(repo_id)

        def download() -> Path:
            with hf_errors(repo_id, revision, self.endpoint):
                return Path(snapshot_download(repo_id, revision=revision, endpoint=self.endpoint, token=self.token,
                                              allow_patterns=READ_PATTERNS))

        path = retry_transient(download)
        sha = path.name  # the cache keeps each commit in snapshots/<sha>/
        if not is_commit_sha(sha):
            raise HubmodError(f"unexpected cache layout for {repo_id}: {path}")
        return Snapshot(path=path, sha=sha, hub=self.endpoint, repo_id=repo_id)

    def repo_exists(self, repo_id: str) -> bool:
        with hf_errors(repo_id, None, self.endpoint):
            return self._api().repo_exists(repo_id)

    def push_folder(self, repo_id: str, folder: Path, message: str) -> str:
        api = self._api()
        with hf_errors(repo_id, None, self.endpoint):
            existed = api.repo_exists(repo_id)
            api.create_repo(repo_id, exist_ok=True)
            try:
                info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message)
            except BaseException:
                if not existed:  # do not leave an empty repo behind a failed first push
                    with contextlib.suppress(Exception):
                        api.delete_repo(repo_id)
                raise
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
            f"{repo_id} is not in the local cache and {endpoint} cannot be reached "
            "(HF_HUB_OFFLINE=1 or no network): connect, or use the embedded hub with --hub local"
        ) from None
    except e.OfflineModeIsEnabled:
        raise _offline_error(repo_id, endpoint) from None
    except e.EntryNotFoundError as err:
        raise NotFoundError(f"a file is missing in {repo_id} on {endpoint}: {_first_line(err)}") from None
    except e.HfHubHTTPError as err:
        raise _http_error(err, repo_id, endpoint) from None
    except _transport_errors() as err:
        raise _transport_error(err, repo_id, endpoint) from None
    except OSError as err:  # connection errors from httpx surface as OSError subclasses
        if isinstance(err, FileNotFoundError | PermissionError):
            raise
        raise HubAccessError(f"cannot reach {endpoint} for {repo_id}: {_first_line(err)}", transient=True) from None
    except RuntimeError as err:  # huggingface_hub wraps a failed LFS upload (after its retries) this way
        if err.__cause__ is None:
            raise
        raise HubAccessError(f"uploading to {repo_id} on {endpoint} failed ({_first_line(err)} "
                             f"{_first_line(err.__cause__)}); nothing was committed, run the command again") from None


def _http_error(err, repo_id: str, endpoint: str) -> HubAccessError:
    status = err.response.status_code if getattr(err, "response", None) is not None else None
    if status in (401, 403):
        return HubAccessError(
            f"{endpoint} refused access to {repo_id} (HTTP {status}): log in with `hf auth login` "
            "or set HF_TOKEN with write access to that namespace"
        )
    return HubAccessError(f"{endpoint} failed for {repo_id} (HTTP {status}): {_first_line(err)}",
                          transient=status is not None and (status >= 500 or status == 429))


def _transport_error(err: BaseException, repo_id: str, endpoint: str) -> HubAccessError:
    if "timeout" in type(err).__name__.lower():
        return HubAccessError(f"{endpoint} did not answer for {repo_id} within {request_timeout():g} s: try again, "
                              f"or allow longer with {TIMEOUT_ENV}=<seconds>", transient=True)
    return HubAccessError(f"cannot reach {endpoint} for {repo_id}: {_first_line(err) or type(err).__name__}",
                          transient=True)


def _offline_error(repo_id: str, endpoint: str) -> HubAccessError:
    return HubAccessError(f"cannot reach {endpoint} for {repo_id}: HF_HUB_OFFLINE=1 is set; "
                          "unset it or use --hub local")


def retry_transient(call, attempts: int = 3, first_wait: float = 0.5):
    """Run ``call()``; repeat it after a short, doubling wait when the hub failed transiently (5xx, 429, drops).

    Only for reads: repeating a read is always safe, repeating a commit is not.
    """
    wait = first_wait
    for attempt in range(attempts):
        try:
            return call()
        except HubAccessError as err:
            if not err.transient or attempt == attempts - 1:
                raise
            time.sleep(wait)
            wait *= 2


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --------------------------------------------------------------------------- selection


def get_hub(hub: str | Hub | None = None) -> Hub:
    """The hub to use now: explicit argument, else ``HUBMOD_HUB``, else HF if configured, else local."""
    if isinstance(hub, Hub):
        return hub
    choice = (hub or os.environ.get("HUBMOD_HUB") or "").strip().lower()
    if not choice:
        choice = HF if os.environ.get("HF_ENDPOINT") or os.environ.get("HF_TOKEN") else LOCAL
    if choice == LOCAL:
        return LocalHub()
    if choice == HF:
        return HfHub()
    if choice.startswith(("http://", "https://")):
        return HfHub(endpoint=choice)
    raise HubmodError(f"unknown hub {hub!r}: use 'local', 'hf', or an endpoint URL")


def hub_named(name: str) -> Hub:
    """The hub a snapshot's ``hub`` field names: "local" or an endpoint URL."""
    return LocalHub() if name == LOCAL else HfHub(endpoint=name)


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
