"""Hub faults through the real huggingface_hub client: each maps to one clear error, nothing half-written."""

import pytest

from hubmod.errors import HubAccessError, NotFoundError
from hubmod.hub import HfHub


def _folder(tmp_path, value: int, big: bool = False):
    d = tmp_path / f"repo-{value}"
    d.mkdir()
    (d / "config.json").write_text(f'{{"v": {value}}}')
    (d / "model.safetensors").write_bytes(b"x" * (11 * 1024 * 1024 if big else 64))
    return d


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_on_first_push_commits_nothing(loopback, tmp_path, status):
    loopback.fail("POST", r"/api/models/alice/new/commit/", status=status, times=10)
    with pytest.raises(HubAccessError) as err:
        HfHub().push_folder("alice/new", _folder(tmp_path, 1), "first")
    assert f"HTTP {status}" in _one_line(err) and err.value.exit_code == 5
    with pytest.raises(NotFoundError, match="has no commits"):  # the repo stays, empty
        HfHub().snapshot("alice/new")


def test_a_failed_first_push_never_deletes_another_writers_repo(loopback, tmp_path):
    """Bob's commit lands between Alice creating the repo and her failed upload: his repo stays, whole."""
    bobs = {}
    loopback.fail("POST", r"/api/models/alice/shared/commit/", status=500, times=10,
                  first=lambda: bobs.update(sha=loopback.commit("alice/shared", {"config.json": b'{"by": "bob"}'})))
    with pytest.raises(HubAccessError):
        HfHub().push_folder("alice/shared", _folder(tmp_path, 1), "first")
    assert bobs and not any(m == "DELETE" for m, _ in loopback.calls)
    snap = HfHub().snapshot("alice/shared")
    assert snap.sha == bobs["sha"] and (snap.path / "config.json").read_text() == '{"by": "bob"}'


def test_failed_push_keeps_the_previous_commit(loopback, tmp_path):
    hub = HfHub()
    sha = hub.push_folder("alice/kept", _folder(tmp_path, 1), "first")
    loopback.fail("POST", r"/api/models/alice/kept/commit/", status=500, times=10)
    with pytest.raises(HubAccessError):
        hub.push_folder("alice/kept", _folder(tmp_path, 2), "second")
    snap = hub.snapshot("alice/kept")
    assert snap.sha == sha and (snap.path / "config.json").read_text() == '{"v": 1}'


def test_connection_dropped_once_during_lfs_upload_is_retried(loopback, tmp_path):
    loopback.fail("PUT", r"^/_lfs/", drop=True, times=1)
    sha = HfHub().push_folder("alice/big", _folder(tmp_path, 1, big=True), "first")
    assert sum(m == "PUT" for m, _ in loopback.calls) == 2
    assert HfHub().snapshot("alice/big").sha == sha


@pytest.mark.slow  # huggingface_hub backs off for ~25 s before giving up
def test_connection_dropped_for_good_during_lfs_upload(loopback, tmp_path):
    """The big file's PUT keeps dying: one line, and no repo left looking complete (or at all)."""
    loopback.fail("PUT", r"^/_lfs/", drop=True, times=100)
    with pytest.raises(HubAccessError, match="nothing was committed") as err:
        HfHub().push_folder("alice/big", _folder(tmp_path, 1, big=True), "first")
    _one_line(err)
    assert not any(m == "POST" and p.startswith("/api/models/alice/big/commit/") for m, p in loopback.calls)


def test_transient_download_error_is_retried_or_clear(loopback, tmp_path):
    loopback.commit("bob/flaky", {"config.json": b'{"v": 7}'})
    loopback.fail("GET", r"/bob/flaky/resolve/", status=502, times=1)
    snap = HfHub().snapshot("bob/flaky")  # huggingface_hub retries a 5xx on a download
    assert (snap.path / "config.json").read_text() == '{"v": 7}'
    loopback.fail("GET", r"/bob/gone/resolve/|/api/models/bob/gone", status=503, times=50)
    loopback.commit("bob/gone", {"config.json": b"{}"})
    with pytest.raises(HubAccessError) as err:
        HfHub().snapshot("bob/gone")
    assert "503" in _one_line(err) or "cannot be reached" in _one_line(err)


def test_stalled_server_times_out_in_one_line(loopback, monkeypatch):
    """huggingface_hub's own client waits forever on a silent server; hubmod's requests give up in time."""
    monkeypatch.setenv("HUBMOD_HUB_TIMEOUT", "1")
    sha = loopback.commit("bob/slow", {"config.json": b'{"v": 5}'})
    loopback.fail("GET", r"^/api/models/bob/slow", stall=3, times=1)
    assert HfHub().snapshot("bob/slow").sha == sha  # one stall: the read is tried again
    loopback.commit("bob/stuck", {"config.json": b"{}"})
    loopback.fail("GET", r"^/api/models/bob/stuck", stall=3, times=10)
    with pytest.raises(HubAccessError, match=r"did not answer for bob/stuck in 3 tries of 1 s \(3 s in all\)") as err:
        HfHub().snapshot("bob/stuck")  # a hang would be stopped by the suite's per-test timeout
    assert "HUBMOD_HUB_TIMEOUT" in _one_line(err) and err.value.exit_code == 5
    assert sum(p.startswith("/api/models/bob/stuck") for _, p in loopback.calls) == 3  # three tries, then given up


def test_wrong_token_is_refused_with_a_login_hint(tmp_path, monkeypatch):
    from huggingface_hub import constants
    from loopback_hub import LoopbackHub

    with LoopbackHub(token="right") as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
        with pytest.raises(HubAccessError) as err:
            HfHub(endpoint=hub.url, token="wrong").push_folder("alice/x", _folder(tmp_path, 1), "first")
        assert "HTTP 401" in _one_line(err) and "hf auth login" in str(err.value)
        hub.fail("GET", r"/api/models/alice/y", status=403, times=20)
        with pytest.raises(HubAccessError, match="HTTP 403"):
            HfHub(endpoint=hub.url, token="right").snapshot("alice/y")
        sha = HfHub(endpoint=hub.url, token="right").push_folder("alice/x", _folder(tmp_path, 2), "first")
        assert len(sha) == 40


def test_missing_repo_file_and_revision_are_distinct(loopback):
    loopback.commit("bob/z", {"config.json": b"{}"})
    with pytest.raises(NotFoundError, match="repo nobody/none not found") as e1:
        HfHub().snapshot("nobody/none")
    with pytest.raises(NotFoundError, match="revision 'v9' not found") as e2:
        HfHub().snapshot("bob/z", "v9")
    assert e1.value.exit_code == e2.value.exit_code == 3


def test_offline_mode_reads_the_cache(loopback, monkeypatch):
    from huggingface_hub import constants

    sha = loopback.commit("bob/cached", {"config.json": b'{"v": 3}'})
    assert HfHub().snapshot("bob/cached").sha == sha
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    calls = len(loopback.calls)
    snap = HfHub().snapshot("bob/cached")
    assert snap.sha == sha and (snap.path / "config.json").read_text() == '{"v": 3}'
    assert len(loopback.calls) == calls  # nothing touched the server
    with pytest.raises(HubAccessError, match="bob/never-fetched is not in the Hugging Face cache") as err:
        HfHub().snapshot("bob/never-fetched")
    assert "--hub local" not in str(err.value)


def _pull(args: tuple[str, str, str]) -> tuple[str, bytes]:
    endpoint, cache, repo_id = args
    import os

    os.environ.update(HF_HUB_CACHE=cache, HF_HUB_DISABLE_XET="1", HF_ENDPOINT=endpoint)
    from hubmod.hub import HfHub

    snap = HfHub(endpoint=endpoint).snapshot(repo_id)
    return snap.sha, (snap.path / "model.safetensors").read_bytes()


def test_concurrent_pulls_from_several_processes(loopback, tmp_path):
    """Four processes download the same repo into one shared cache at once: all get the whole commit."""
    import multiprocessing as mp

    d = _folder(tmp_path, 5, big=True)
    sha = HfHub().push_folder("alice/popular", d, "first")
    with mp.get_context("spawn").Pool(4) as pool:
        results = pool.map_async(_pull, [(loopback.url, str(tmp_path / "shared-cache"), "alice/popular")] * 4).get(
            timeout=300)
    assert all(s == sha for s, _ in results)
    assert all(data == (d / "model.safetensors").read_bytes() for _, data in results)
