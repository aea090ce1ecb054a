"""The Hugging Face Hub, or any server speaking its API, through the real ``huggingface_hub`` client.

hubmod adds a bounded request time, a check on the file headers a server sends before anything is
written to the cache, retries of transient failures, and one-line errors for what goes wrong."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import HubAccessError, HubmodError, InvalidRepoError, NotFoundError, first_line
from ..refs import is_commit_sha, validate_repo_id, validate_revision
from ..untrusted import printable
from .base import READ_FILES, Hub, ListedRepo, Snapshot

DEFAULT_ENDPOINT = "https://huggingface.co"
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
    """Give huggingface_hub's shared HTTP client a request time limit and the file-header check.

    Its client waits forever by default (API calls pass ``timeout=None`` per request, which
    overrides a client default), so a server that stalls would hang a split or compose for good.
    hubmod adds two event hooks to the client huggingface_hub's public ``get_session`` returns:
    one fills in the timeout where a request has none (a timeout a caller set is kept), the other
    is `refuse_unsafe_file_headers`. Called before every hub operation, since the shared client
    can be replaced (``set_client_factory``, ``close_session``); a client the user configured
    keeps its own settings and gets only these two hooks.
    """
    from huggingface_hub import get_session

    timeout = request_timeout()
    client = get_session()
    hooks = client.event_hooks
    if any(getattr(h, "hubmod_timeout", None) == timeout for h in hooks.get("request", [])):
        return  # this client already has them

    def fill_in_timeout(request) -> None:
        limits = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {k: limits.get(k) or timeout for k in ("connect", "read", "write", "pool")}

    fill_in_timeout.hubmod_timeout = timeout  # type: ignore[attr-defined]
    others = [h for h in hooks.get("request", []) if not hasattr(h, "hubmod_timeout")]
    responses = [h for h in hooks.get("response", []) if h is not refuse_unsafe_file_headers]
    client.event_hooks = {**hooks, "request": [*others, fill_in_timeout],
                          "response": [*responses, refuse_unsafe_file_headers]}


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

    def list_models(self, tags: list[str], sort: str | None = None, limit: int = 100) -> Iterator[ListedRepo]:
        """``HfApi.list_models`` filtered by the tags, paginated by huggingface_hub and cut at ``limit``;
        the card metadata comes with the listing (``expand``), so no card is downloaded."""
        order = {"downloads": "downloads", "recent": "last_modified", None: None}[sort]
        with hf_errors("the model listing", None, self.endpoint):
            infos = list(self._api().list_models(filter=list(tags), sort=order, limit=limit,
                                                 expand=["cardData", "sha", "tags", "downloads", "lastModified"]))
        for info in infos:
            card = info.card_data.to_dict() if info.card_data is not None else {}
            if not isinstance(info.id, str):
                continue
            modified = info.last_modified.strftime("%Y-%m-%dT%H:%M:%SZ") if info.last_modified else None
            yield ListedRepo(info.id, info.sha if isinstance(info.sha, str) else None, card,
                             info.downloads if isinstance(info.downloads, int) else None, modified)

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
    """Run one hub operation: with the request limits in place (`limit_request_time`), and
    huggingface_hub's exceptions turned into one-line hubmod errors."""
    from huggingface_hub import errors as e

    try:
        limit_request_time()
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
