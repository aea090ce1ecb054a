"""The real huggingface_hub client (and timm) against the loopback hub fixture."""

import os

import pytest
import torch

from hubmod.errors import NotFoundError
from hubmod.hub import HfHub


def test_push_pull_lfs_and_pinned_revisions(loopback, tmp_path):
    hub = HfHub()
    assert hub.endpoint == loopback.url
    d = tmp_path / "repo"
    d.mkdir()
    (d / "config.json").write_text('{"a": 1}')
    (d / "README.md").write_text("---\nlicense: mit\n---\nhello\n")
    big = os.urandom(11 * 1024 * 1024)  # over the 10 MB LFS threshold
    (d / "model.safetensors").write_bytes(big)
    (d / "weights.bin").write_bytes(b"a pickle hubmod never reads")
    sha1 = hub.push_folder("alice/repo", d, "first")
    assert len(sha1) == 40
    assert any(m == "POST" and "lfs/objects/batch" in p for m, p in loopback.calls)
    assert any(m == "PUT" and p.startswith("/_lfs/") for m, p in loopback.calls)
    (d / "config.json").write_text('{"a": 2}')
    sha2 = hub.push_folder("alice/repo", d, "second")
    assert sha2 != sha1
    snap = hub.snapshot("alice/repo")
    assert snap.sha == sha2 and (snap.path / "config.json").read_text() == '{"a": 2}'
    assert (snap.path / "model.safetensors").read_bytes() == big
    assert not (snap.path / "weights.bin").exists()  # only the files hubmod reads are downloaded
    assert not any("weights.bin" in p for m, p in loopback.calls if m in ("GET", "HEAD"))
    old = hub.snapshot("alice/repo", sha1)
    assert old.sha == sha1 and (old.path / "config.json").read_text() == '{"a": 1}'


def test_hf_hub_download_by_commit_sha(loopback, tmp_path):
    from huggingface_hub import hf_hub_download

    sha = loopback.commit("bob/x", {"config.json": b'{"v": 1}'})
    loopback.commit("bob/x", {"config.json": b'{"v": 2}'})
    path = hf_hub_download("bob/x", "config.json", revision=sha, cache_dir=tmp_path / "c")
    with open(path) as f:
        assert f.read() == '{"v": 1}'


def test_missing_repo_revision_and_file(loopback):
    hub = HfHub()
    with pytest.raises(NotFoundError, match="repo nobody/none not found"):
        hub.snapshot("nobody/none")
    loopback.commit("bob/y", {"config.json": b"{}"})
    with pytest.raises(NotFoundError, match="revision"):
        hub.snapshot("bob/y", "f" * 40)


def test_timm_loads_a_parent_through_the_hub(loopback, tiny_parent_dirs):
    import timm

    from hubmod.data import FASHION_MNIST_CLASSES

    hub = HfHub()
    hub.push_folder("alice/resnet-tiny", tiny_parent_dirs["resnet"], "parent")
    model = timm.create_model("hf-hub:alice/resnet-tiny", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == FASHION_MNIST_CLASSES
    from hubmod.parents import load_parent

    ours = load_parent("hf-hub:alice/resnet-tiny")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), ours.model(x))
