import json
import multiprocessing as mp
from pathlib import Path

import pytest

from hubmod.errors import HubmodError, NotFoundError
from hubmod.hub import LocalHub, get_hub, tree_digest


def _folder(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    d = tmp_path / name
    d.mkdir()
    for k, v in files.items():
        (d / k).parent.mkdir(parents=True, exist_ok=True)
        (d / k).write_text(v)
    return d


def test_push_and_read_back_by_branch_and_sha(tmp_path, hubmod_home):
    hub = LocalHub()
    sha1 = hub.push_folder("ns/repo", _folder(tmp_path, "a", {"config.json": "{}", "x.txt": "one"}), "first")
    sha2 = hub.push_folder("ns/repo", _folder(tmp_path, "b", {"x.txt": "two"}), "second")
    assert sha1 != sha2 and len(sha2) == 40
    main = hub.snapshot("ns/repo")
    assert main.sha == sha2
    assert (main.path / "x.txt").read_text() == "two"
    assert (main.path / "config.json").exists()  # pushes add files, like upload_folder
    old = hub.snapshot("ns/repo", sha1)
    assert (old.path / "x.txt").read_text() == "one"
    assert hub.snapshot("ns/repo", sha1[:10]).sha == sha1
    view = hubmod_home / "hub" / "models" / "ns" / "repo"
    assert sorted(p.name for p in view.iterdir()) == ["config.json", "x.txt"]


def test_unchanged_push_makes_no_commit(tmp_path):
    hub = LocalHub()
    d = _folder(tmp_path, "a", {"f": "1"})
    assert hub.push_folder("ns/r", d, "m") == hub.push_folder("ns/r", d, "again")


def test_missing_repo_and_revision_are_clear(tmp_path):
    hub = LocalHub()
    with pytest.raises(NotFoundError, match="repo ns/none not found"):
        hub.snapshot("ns/none")
    hub.push_folder("ns/r", _folder(tmp_path, "a", {"f": "1"}), "m")
    with pytest.raises(NotFoundError, match="revision 'deadbeef'"):
        hub.snapshot("ns/r", "deadbeef")
    with pytest.raises(HubmodError, match="invalid revision"):
        hub.snapshot("ns/r", "../../etc")


def test_hub_selection(monkeypatch):
    assert get_hub("local").name == "local"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert get_hub(None).name == "http://127.0.0.1:9"
    monkeypatch.setenv("HUBMOD_HUB", "local")
    assert get_hub(None).name == "local"
    with pytest.raises(HubmodError, match="unknown hub"):
        get_hub("ftp")


def _push_many(args):
    home, worker = args
    import os

    os.environ["HUBMOD_HOME"] = home
    from hubmod.hub import LocalHub

    hub = LocalHub()
    base = Path(home) / f"src-{worker}"
    shas = []
    for i in range(5):
        d = base / str(i)
        d.mkdir(parents=True)
        (d / f"w{worker}.txt").write_text(str(i))
        (d / "shared.json").write_text(json.dumps({"worker": worker, "i": i}))
        shas.append(hub.push_folder("ns/shared", d, f"{worker}-{i}"))
    return shas


def test_concurrent_pushes_never_corrupt(hubmod_home):
    hubmod_home.mkdir(parents=True, exist_ok=True)
    with mp.get_context("spawn").Pool(3) as pool:
        results = pool.map_async(_push_many, [(str(hubmod_home), w) for w in range(3)]).get(timeout=300)
    hub = LocalHub()
    snap = hub.snapshot("ns/shared")
    files = sorted(p.name for p in snap.path.iterdir())
    assert files == ["shared.json", "w0.txt", "w1.txt", "w2.txt"]
    assert all(len(set(r)) == 5 for r in results)
    for shas in results:
        for sha in shas:
            assert tree_digest(hub.snapshot("ns/shared", sha).path)  # every commit is whole and readable
