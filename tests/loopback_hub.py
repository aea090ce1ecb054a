"""TEST FIXTURE ONLY — a strict loopback stand-in for the Hugging Face Hub's HTTP API.

It lets the tests drive the real ``huggingface_hub`` client (and timm's ``hf-hub:`` loader) end to
end without a network: repo creation, YAML validation, preupload, the git-lfs batch API with a plain
PUT, ndjson commits, repo info and tree listings, model listings filtered by tag (paginated), and
``resolve`` downloads by branch or commit sha.
It is strict on purpose: an endpoint it does not know, an LFS file committed before its content was
uploaded, or a malformed payload is an error, and every unknown request is recorded in
``unexpected`` so a test can assert there were none. Fault injection (``fail``) lets tests check how
hubmod behaves when the hub breaks. Nothing here is used outside tests/.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

LFS_THRESHOLD = 10 * 1024 * 1024
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".png", ".onnx")
_REPO = r"(?P<rid>[^/]+/[^/]+?)"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _front_matter(readme: str) -> str:
    """A README's YAML front matter, as text ("" when it has none)."""
    match = re.match(r"^---\n(.*?)\n---", readme, re.S)
    return match.group(1) if match else ""


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    lfs: set[str]
    date: str = field(default_factory=_now)


@dataclass
class Repo:
    repo_id: str
    created: str = field(default_factory=_now)
    private: bool = False
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        if revision in self.refs:
            return self.commits[self.refs[revision]]
        return self.commits.get(revision)


class LoopbackHub:
    """A hub on 127.0.0.1:<free port>. Use as a context manager or call start()/stop()."""

    def __init__(self, token: str | None = None):
        self.token = token  # when set, writes need "Authorization: Bearer <token>"
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []
        self.unexpected: list[tuple[str, str]] = []
        self.faults: list[dict] = []
        # A hostile server: values it answers in place of the truth ("sha": the commit in repo info,
        # "commit": the X-Repo-Commit header of files, "etag": their ETag), to test that hubmod refuses them.
        self.hostile: dict[str, str] = {}
        self.page_size = 2  # model listings come in pages this long, so clients must follow the Link header
        self.lock = threading.Lock()
        self._counter = itertools.count()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None, "hub not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ fault injection

    def fail(self, method: str, path_regex: str, status: int = 500, times: int = 1, drop: bool = False,
             stall: float = 0.0, first=None) -> None:
        """Answer the next ``times`` matching requests with ``status``, drop the connection, or (``stall``)
        say nothing for that many seconds and then answer normally. ``first()`` runs when the fault first
        fires (e.g. another writer's commit landing just before it)."""
        self.faults.append({"method": method, "re": re.compile(path_regex), "status": status, "times": times,
                            "drop": drop, "stall": stall, "first": first})

    def _fault_for(self, method: str, path: str) -> dict | None:
        with self.lock:
            for f in self.faults:
                if f["times"] > 0 and f["method"] == method and f["re"].search(path):
                    f["times"] -= 1
                    return f
        return None

    # ------------------------------------------------------------------ state helpers

    def commit(self, repo_id: str, files: dict[str, bytes], message: str = "seed",
               deleted: tuple[str, ...] = (), lfs: set[str] | None = None) -> str:
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo(repo_id))
            parent = repo.refs.get("main")
            base = dict(repo.commits[parent].files) if parent else {}
            base_lfs = set(repo.commits[parent].lfs) if parent else set()
            for path in deleted:
                base.pop(path, None)
                base_lfs.discard(path)
            base.update(files)
            base_lfs |= set(lfs or ())
            payload = json.dumps({p: git_blob_sha(b) for p, b in sorted(base.items())}).encode()
            sha = hashlib.sha1(b"%d|%s|%s|" % (next(self._counter), (parent or "").encode(), message.encode())
                               + payload).hexdigest()
            repo.commits[sha] = Commit(sha, parent, message, base, base_lfs)
            repo.refs["main"] = sha
            return sha


class _Handler(BaseHTTPRequestHandler):
    hub: LoopbackHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    # ------------------------------------------------------------------ plumbing

    def _send(self, status: int, body: bytes | dict | list | None = None, headers: dict | None = None,
              head: bool = False) -> None:
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        body = body or b""
        self._body()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, head: bool = False) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, {"error": message}, headers, head=head)

    def _body(self) -> bytes:
        """The request body, read once (an answer sent before it is read would break the connection)."""
        if getattr(self, "_read_body", None) is None:
            length = int(self.headers.get("Content-Length") or 0)
            self._read_body = self.rfile.read(length) if length else b""
        return self._read_body

    def _authorized_write(self) -> bool:
        if self.hub.token is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {self.hub.token}":
            return True
        self._error(401, None, "Invalid credentials in Authorization header")
        return False

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        self._read_body = None  # one handler serves every request of a keep-alive connection
        self.hub.calls.append((method, self.path))
        fault = self.hub._fault_for(method, path)
        if fault is not None and fault.get("first") is not None:
            action, fault["first"] = fault["first"], None
            action()
        if fault is not None and fault["stall"]:
            time.sleep(fault["stall"])
            fault = None
        if fault is not None:
            if fault["drop"]:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self._error(fault["status"], None, f"injected fault {fault['status']}")
            return
        for verb, pattern, handler in ROUTES:
            if verb != method:
                continue
            m = re.fullmatch(pattern, path)
            if m:
                getattr(self, handler)(query=query, **m.groupdict())
                return
        self.hub.unexpected.append((method, self.path))
        self._error(404, None, f"loopback hub: no route for {method} {path}")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ endpoints

    def create_repo(self, query) -> None:
        if not self._authorized_write():
            return
        data = json.loads(self._body() or b"{}")
        repo_id = f"{data.get('organization') or 'user'}/{data['name']}" if data.get("organization") else data["name"]
        if "/" not in repo_id:
            self._error(400, None, "repo name must be namespace/name")
            return
        url = f"{self.hub.url}/{repo_id}"
        with self.hub.lock:
            exists = repo_id in self.hub.repos
            if not exists:
                self.hub.repos[repo_id] = Repo(repo_id, private=data.get("visibility") == "private")
        if exists:
            self._send(409, {"error": "You already created this model repo", "url": url})
        else:
            self._send(200, {"url": url, "name": repo_id, "id": repo_id})

    def delete_repo(self, query) -> None:
        if not self._authorized_write():
            return
        data = json.loads(self._body() or b"{}")
        repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
        with self.hub.lock:
            removed = self.hub.repos.pop(repo_id, None)
        if removed is None:
            self._error(404, "RepoNotFound", "Repository not found")
        else:
            self._send(200, {})

    def validate_yaml(self, query) -> None:
        data = json.loads(self._body() or b"{}")
        content = data.get("content", "")
        try:
            parsed = yaml.safe_load(_front_matter(content)) or {}
            errors = [] if isinstance(parsed, dict) else [{"message": "metadata must be a mapping"}]
        except yaml.YAMLError as e:
            errors = [{"message": str(e)}]
        self._send(200 if not errors else 400, {"errors": errors, "warnings": []})

    def _repo(self, rid: str, head: bool = False) -> Repo | None:
        repo = self.hub.repos.get(unquote(rid))
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", head=head)
        return repo

    LISTING_PARAMS = ("filter", "search", "sort", "direction", "limit", "expand", "cursor")
    LISTING_EXPAND = ("cardData", "sha", "tags", "downloads", "lastModified")

    def list_models(self, query) -> None:
        """GET /api/models: repos carrying every ``filter`` tag (the card's tags and library), ``search`` in
        the id, ``sort`` by downloads (all 0 here) or lastModified, newest first, at most ``limit``, in pages
        of ``hub.page_size`` linked by a ``Link: rel="next"`` header as the Hub does; ``expand`` picks fields.
        A parameter or value this stand-in does not implement is recorded in ``unexpected``."""
        for key in query:
            if key not in self.LISTING_PARAMS:
                self.hub.unexpected.append(("GET", f"/api/models?{key}"))
        expand = query.get("expand", [])
        for value in expand:
            if value not in self.LISTING_EXPAND:
                self.hub.unexpected.append(("GET", f"/api/models?expand={value}"))
        sort = query.get("sort", [None])[0]
        if sort not in (None, "downloads", "lastModified"):
            self.hub.unexpected.append(("GET", f"/api/models?sort={sort}"))
        wanted, search = set(query.get("filter", [])), query.get("search", [""])[0].casefold()
        limit = int(query.get("limit", ["1000"])[0])
        offset = int(query.get("cursor", ["0"])[0])
        rows = []
        with self.hub.lock:
            repos = [(r.repo_id, r.commits[r.refs["main"]]) for r in self.hub.repos.values()
                     if "main" in r.refs and not r.private]
        for repo_id, commit in sorted(repos):
            readme = commit.files.get("README.md", b"").decode("utf-8", "replace")
            try:
                card = yaml.safe_load(_front_matter(readme)) or {}
            except yaml.YAMLError:
                card = {}
            card = card if isinstance(card, dict) else {}
            tags = [t for t in card.get("tags") or [] if isinstance(t, str)]
            tags += [card["library_name"]] if isinstance(card.get("library_name"), str) else []
            if not wanted <= set(tags) or search not in repo_id.casefold():
                continue
            fields = {"cardData": card, "sha": commit.sha, "tags": tags, "downloads": 0, "lastModified": commit.date}
            rows.append({"id": repo_id, "modelId": repo_id,
                         **{k: v for k, v in fields.items() if not expand or k in expand}})
        if sort == "lastModified":
            rows.sort(key=lambda r: r.get("lastModified", ""), reverse=True)
        rows = rows[:limit]
        page = rows[offset : offset + self.hub.page_size]
        headers = {}
        if offset + self.hub.page_size < len(rows):
            rest = {k: v for k, v in query.items() if k != "cursor"}
            pairs = "&".join(f"{k}={quote(v)}" for k, vs in rest.items() for v in vs)
            headers["Link"] = f'<{self.hub.url}/api/models?{pairs}&cursor={offset + self.hub.page_size}>; rel="next"'
        self._send(200, page, headers)

    def model_info(self, query, rid: str, rev: str | None = None) -> None:
        repo = self._repo(rid)
        if repo is None:
            return
        commit = repo.resolve(rev or "main")
        if commit is None:
            if rev is None and not repo.commits:  # an empty repo still has info, no sha
                self._send(200, {"id": repo.repo_id, "modelId": repo.repo_id, "private": False, "siblings": [],
                                 "createdAt": repo.created, "lastModified": repo.created})
                return
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return
        self._send(200, {
            "id": repo.repo_id, "modelId": repo.repo_id, "sha": self.hub.hostile.get("sha", commit.sha),
            "private": repo.private,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)], "tags": [], "downloads": 0, "likes": 0,
            "createdAt": repo.created, "lastModified": commit.date,
        })

    def tree(self, query, rid: str, rev: str, subpath: str | None = None) -> None:
        repo = self._repo(rid)
        if repo is None:
            return
        commit = repo.resolve(rev)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return
        prefix = (unquote(subpath).strip("/") + "/") if subpath else ""
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, dirs = [], set()
        for p, data in sorted(commit.files.items()):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix):]
            if "/" in rest and not recursive:
                dirs.add(prefix + rest.split("/")[0])
                continue
            entry = {"type": "file", "path": p, "size": len(data), "oid": git_blob_sha(data)}
            if p in commit.lfs:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in sorted(dirs)]
        self._send(200, entries)

    def preupload(self, query, rid: str, rev: str) -> None:
        if not self._authorized_write() or self._repo(rid) is None:
            return
        data = json.loads(self._body() or b"{}")
        files = data.get("files")
        if not isinstance(files, list):
            self._error(400, None, "preupload needs a files list")
            return
        out = []
        for f in files:
            lfs = f["size"] > LFS_THRESHOLD or f["path"].endswith(LFS_SUFFIXES)
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
        self._send(200, {"files": out, "commitOid": None})

    def lfs_batch(self, query, rid: str) -> None:
        if not self._authorized_write() or self._repo(rid) is None:
            return
        data = json.loads(self._body() or b"{}")
        if data.get("operation") != "upload" or data.get("hash_algo", "sha256") != "sha256":
            self._error(400, None, "only sha256 uploads are supported")
            return
        objects = []
        for obj in data.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/_lfs/{obj['oid']}", "expires_in": 3600}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, query, oid: str) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            self._error(400, None, "uploaded content does not match its sha256")
            return
        with self.hub.lock:
            self.hub.lfs_objects[oid] = data
        self._send(200, b"")

    def commit_endpoint(self, query, rid: str, rev: str) -> None:
        if not self._authorized_write():
            return
        repo = self._repo(rid)
        if repo is None:
            return
        if unquote(rev) != "main":
            self._error(400, None, "loopback hub commits to main only")
            return
        files, lfs, deleted, message = {}, set(), [], ""
        for line in self._body().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item.get("key"), item.get("value", {})
            if key == "header":
                message = value.get("summary", "")
            elif key == "file":
                if value.get("encoding") != "base64":
                    self._error(400, None, "file content must be base64")
                    return
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                blob = self.hub.lfs_objects.get(value.get("oid"))
                if blob is None:
                    self._error(422, None, f"LFS object for {value.get('path')} was never uploaded")
                    return
                files[value["path"]] = blob
                lfs.add(value["path"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:
                self._error(400, None, f"unknown commit operation {key!r}")
                return
        if not files and not deleted:
            self._error(400, None, "empty commit")
            return
        sha = self.hub.commit(repo.repo_id, files, message, tuple(deleted), lfs)
        self._send(200, {"commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{sha}", "commitOid": sha,
                         "success": True, "pullRequestUrl": None})

    def resolve(self, query, rid: str, rev: str, filename: str, head: bool = False) -> None:
        repo = self._repo(rid, head=head)
        if repo is None:
            return
        commit = repo.resolve(rev)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head=head)
            return
        name = unquote(filename)
        data = commit.files.get(name)
        if data is None:
            self._error(404, "EntryNotFound", f"{name} does not exist at {commit.sha}", head=head)
            return
        commit_sha = self.hub.hostile.get("commit", commit.sha)
        headers = {"X-Repo-Commit": commit_sha, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if name in commit.lfs:
            headers["X-Linked-Etag"] = f'"{hashlib.sha256(data).hexdigest()}"'
            headers["X-Linked-Size"] = str(len(data))
            headers["ETag"] = f'"{hashlib.sha256(data).hexdigest()}"'
        else:
            headers["ETag"] = f'"{git_blob_sha(data)}"'
        if "etag" in self.hub.hostile:
            headers["ETag"] = headers["X-Linked-Etag"] = self.hub.hostile["etag"]
        self._send(200, data, headers, head=head)

    def resolve_head(self, query, rid: str, rev: str, filename: str) -> None:
        self.resolve(query, rid, rev, filename, head=True)


ROUTES = [
    ("POST", r"/api/repos/create", "create_repo"),
    ("DELETE", r"/api/repos/delete", "delete_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("GET", r"/api/models", "list_models"),
    ("GET", rf"/api/models/{_REPO}/revision/(?P<rev>.+)", "model_info"),
    ("GET", rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<subpath>.+))?", "tree"),
    ("POST", rf"/api/models/{_REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/models/{_REPO}/commit/(?P<rev>[^/]+)", "commit_endpoint"),
    ("GET", rf"/api/models/{_REPO}", "model_info"),
    ("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/_lfs/(?P<oid>[0-9a-f]{64})", "lfs_put"),
    ("HEAD", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<filename>.+)", "resolve_head"),
    ("GET", rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<filename>.+)", "resolve"),
]
