"""Repos built by an attacker, read through the real loading paths: each attack fails in one line.

Every test builds the hostile repo (a local folder, the embedded hub, or the loopback server playing
a hostile hub) and checks that the attack fails with one clear line, that no request reaches a
server the repo named, that nothing is written outside the hub or cache, and that no token is sent.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hubmod
from hubmod import ClassModule, ComposedClassifier
from hubmod.cli import app
from hubmod.errors import HubAccessError, HubmodError, InvalidRepoError, NotFoundError
from hubmod.hub import HfHub, LocalHub, dir_snapshot

runner = CliRunner()
TOKEN = "hf_secret_token_of_the_user"


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def _cli(*args):
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture(scope="module")
def module_dir(vgg_split, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("module")
    vgg_split.modules[3].save_pretrained(d)
    return d


@pytest.fixture
def published_modules(vgg_split):
    """Two modules on the embedded hub and a composed repo of them without consolidated weights."""
    hub = LocalHub()
    shas = [m.push_to_hub(f"pin/m-{i}", hub) for i, m in enumerate(vgg_split.modules[:2])]
    return hub, shas


def _composed_dir(tmp_path: Path, hub: LocalHub, edit=None) -> Path:
    composed = hubmod.compose(["pin/m-0", "pin/m-1"], hub=hub)
    d = tmp_path / "composed"
    composed.save_pretrained(d)
    (d / "model.safetensors").unlink()  # modules are fetched at their pinned commits
    if edit is not None:
        cfg = json.loads((d / "config.json").read_text())
        edit(cfg)
        (d / "config.json").write_text(json.dumps(cfg))
    return d


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------- 1. endpoints from repo files


def test_a_composed_repo_cannot_send_the_token_to_a_hub_it_names(published_modules, tmp_path, monkeypatch):
    from loopback_hub import LoopbackHub

    hub, _ = published_modules
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HUBMOD_HUB", "local")
    with LoopbackHub() as evil:
        def point_at_evil(cfg):
            for entry in cfg["modules"]:
                entry["hub"] = evil.url

        d = _composed_dir(tmp_path, hub, point_at_evil)
        with pytest.raises(InvalidRepoError, match="names the hub") as err:
            ComposedClassifier.from_pretrained(d)
        assert evil.url in _one_line(err)
        result = _cli("inspect", str(d))
        assert result.exit_code == 4 and "names the hub" in result.stderr
        assert evil.calls == []  # not one request, so no token and no SSRF


def test_a_composed_repo_reads_its_modules_from_the_hub_it_came_from(vgg_split, tmp_path, monkeypatch):
    """A custom hub root given by the caller is where the pinned modules are read, not HUBMOD_HOME's hub."""
    custom = LocalHub(tmp_path / "elsewhere")
    for i, m in enumerate(vgg_split.modules[:2]):
        m.push_to_hub(f"pin/m-{i}", custom)
    composed = hubmod.compose(["pin/m-0", "pin/m-1"], hub=custom)
    d = tmp_path / "composed"
    composed.save_pretrained(d)
    (d / "model.safetensors").unlink()
    custom.push_folder("pin/composed", d, "composed")
    loaded = ComposedClassifier.from_pretrained("pin/composed", hub=custom)
    assert [p["revision"] for p in loaded.provenance] == [p["revision"] for p in composed.provenance]
    with pytest.raises(NotFoundError):  # the default hub does not hold these repos
        ComposedClassifier.from_pretrained(d)


# --------------------------------------------------------------------------- 2. revisions


@pytest.mark.parametrize("revision", ["../../../../outside", "main", "abc1234", "../" + "0" * 37])
def test_pinned_entries_must_be_full_commit_shas(published_modules, tmp_path, revision):
    hub, _ = published_modules
    d = _composed_dir(tmp_path, hub, lambda cfg: cfg["modules"][1].__setitem__("revision", revision))
    with pytest.raises(InvalidRepoError, match="not a full commit sha") as err:
        ComposedClassifier.from_pretrained(d, hub=hub)
    _one_line(err)


def test_split_index_revisions_are_commit_shas(published_modules, tmp_path):
    hub, shas = published_modules
    d = tmp_path / "parent"
    d.mkdir()
    index = {"hubmod_kind": "split_index", "format_version": 1, "index_repo": "pin/x", "split_id": "s",
             "method": {"name": "gradsplitter", "params": {}},
             "modules": [{"class_name": "Dress", "class_index": 3, "repo_id": "pin/m-0", "revision": "../../.."}]}
    (d / "hubmod_split.json").write_text(json.dumps(index))
    with pytest.raises(InvalidRepoError, match="revision") as err:
        hubmod.compose([f"{d}:Dress"], hub=hub)
    _one_line(err)


@pytest.mark.parametrize("knob,value", [("sha", "../../../../escaped"), ("commit", "../../escaped"),
                                        ("etag", '"../../../../escaped"')])
def test_a_hostile_hub_cannot_steer_the_cache(loopback, tmp_path, knob, value):
    """Commit shas and ETags name cache folders: a server answering ``../..`` there is refused."""
    from huggingface_hub import constants

    loopback.commit("eve/x", {"config.json": b"{}", "model.safetensors": b"weights"})
    loopback.hostile[knob] = value
    cache_root = Path(constants.HF_HUB_CACHE)
    before = set(cache_root.parent.rglob("*")) if cache_root.parent.exists() else set()
    with pytest.raises(HubAccessError) as err:
        HfHub().snapshot("eve/x")
    assert "hubmod" in _one_line(err)
    after = set(cache_root.parent.rglob("*"))
    outside = [p for p in after - before if not p.is_relative_to(cache_root)]
    assert outside == [] and not any("escaped" in str(p) for p in after)


# --------------------------------------------------------------------------- 3. model_args


@pytest.mark.parametrize("args,match", [
    ({"checkpoint_path": "/etc/passwd"}, "model_args 'checkpoint_path'"),
    ({"device": "cpu"}, "model_args 'device'"),
    ({"pretrained_cfg_overlay": {"file": "/x"}}, "pretrained_cfg_overlay"),
    ({"features_only": True}, "features_only"),
    ({"cfg": ["../../etc/passwd"]}, "not a number, flag, short name"),
    ({"stem_type": "http://evil.example/x"}, "not a number, flag, short name"),
])
def test_model_args_that_do_not_shape_the_network_are_refused(tiny_parent_dirs, tmp_path, args, match):
    d = tmp_path / "parent"
    shutil.copytree(tiny_parent_dirs["vgg"], d)
    _edit_json(d / "config.json", lambda cfg: cfg.setdefault("model_args", {}).update(args))
    with pytest.raises(InvalidRepoError, match=match) as err:
        hubmod.load_parent(str(d))
    _one_line(err)


def test_module_parent_model_args_are_filtered_too(module_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(module_dir, d)
    _edit_json(d / "config.json", lambda c: c["parent"]["model_args"].update(checkpoint_path=str(d / "x.pth")))
    with pytest.raises(InvalidRepoError, match="checkpoint_path"):
        ClassModule.from_pretrained(d)


# --------------------------------------------------------------------------- 4. validate before allocating


_PEAK = """
import json, re, sys
import hubmod
from hubmod.errors import HubmodError
kind, path = sys.argv[1], sys.argv[2]
try:
    (hubmod.load_parent if kind == "parent" else hubmod.ClassModule.from_pretrained)(path)
    outcome = "loaded"
except HubmodError as e:
    outcome = str(e)
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"outcome": outcome, "peak_mb": peak_kb / 1024}))
"""


def _peak(kind: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _PEAK, kind, str(path)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_huge_config_with_a_tiny_weights_file_is_refused_before_allocating(tiny_parent_dirs, tmp_path):
    """900M parameters (3.6 GB of float32) described, 100 bytes of weights: refused without the 3.6 GB."""
    d = tmp_path / "parent"
    shutil.copytree(tiny_parent_dirs["vgg"], d)
    _edit_json(d / "config.json", lambda cfg: cfg["model_args"].update(cfg=[10000, 10000, "M", 1000]))
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}" + b"\0" * 90)
    result = _peak("parent", d)
    assert "lacks" in result["outcome"] or "holds" in result["outcome"], result
    assert result["peak_mb"] < 1500, result  # the process itself (torch, timm) needs a few hundred MB


def test_a_module_traces_its_example_input_without_memory(module_dir, tmp_path):
    """A module whose input is 2048x2048 loads by tracing on the meta device: no image-sized activations."""
    d = tmp_path / "m"
    shutil.copytree(module_dir, d)

    def big_input(cfg):
        cfg["channels"]["example_input"] = [1, 1, 2048, 2048]
        cfg["data_config"]["input_size"] = [1, 2048, 2048]
        cfg["parent"]["pretrained_cfg"]["input_size"] = [1, 2048, 2048]

    _edit_json(d / "config.json", big_input)
    result = _peak("module", d)
    assert result["outcome"] == "loaded" and result["peak_mb"] < 1500, result


def test_buffers_count_toward_the_size_limit(tiny_parent_dirs, monkeypatch):
    import hubmod.parents

    monkeypatch.setattr(hubmod.parents, "MAX_BUFFER_ELEMENTS", 10)
    with pytest.raises(InvalidRepoError, match="buffer values"):
        hubmod.load_parent(str(tiny_parent_dirs["vgg"]))


def test_a_directory_source_reads_only_its_own_files(module_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(module_dir, d)
    sha = dir_snapshot(d).sha
    (d / "unrelated.bin").write_bytes(os.urandom(1024))  # not read, so not hashed
    assert dir_snapshot(d).sha == sha
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    (d / "config.json").unlink()
    (d / "config.json").symlink_to(secret)
    with pytest.raises(InvalidRepoError, match="outside the repo") as err:
        ClassModule.from_pretrained(d)
    _one_line(err)


# --------------------------------------------------------------------------- 6. the embedded hub's own files


def test_refs_pointing_outside_the_hub_are_refused(published_modules, tiny_parent_dirs, tmp_path):
    hub, _ = published_modules
    meta = hub.root / ".hubmod" / "repos" / "pin" / "m-0"
    (meta / "refs.json").write_text(json.dumps({"main": str(tiny_parent_dirs["vgg"])}))
    with pytest.raises(InvalidRepoError, match="refs.json") as err:
        hub.snapshot("pin/m-0")
    _one_line(err)
    with pytest.raises(InvalidRepoError, match="refs.json"):  # and no push links files from there
        hub.push_folder("pin/m-0", tiny_parent_dirs["vgg"], "x")
    (meta / "refs.json").write_text("{not json")
    with pytest.raises(InvalidRepoError, match="refs.json") as err:
        hub.snapshot("pin/m-0")
    _one_line(err)


def test_a_changed_commit_folder_is_refused(published_modules):
    hub, shas = published_modules
    snap = hub.snapshot("pin/m-1")
    cfg = snap.path / "config.json"
    cfg.unlink()  # files are hard links: replace, never write through
    cfg.write_text(json.dumps({"hubmod_kind": "class_module"}))
    with pytest.raises(InvalidRepoError, match="does not hold what was committed") as err:
        hub.snapshot("pin/m-1", shas[1])
    _one_line(err)


def test_a_killed_push_leaves_no_staging_folder_behind(tmp_path):
    hub = LocalHub()
    d = tmp_path / "f"
    d.mkdir()
    (d / "config.json").write_text("{}")
    hub.push_folder("ns/r", d, "one")
    meta = hub.root / ".hubmod" / "repos" / "ns" / "r"
    (meta / ".push-killed").mkdir()
    (meta / ".push-killed" / "config.json").write_text("{}")
    (d / "config.json").write_text('{"a": 1}')
    hub.push_folder("ns/r", d, "two")
    assert not list(meta.glob(".push-*"))


# --------------------------------------------------------------------------- 7. one line, never a traceback


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text,match", [
    ('{"hubmod_kind": "class_module", "x": ' + _nested(100_000) + "}", "nests deeper"),
    ('{"hubmod_kind": "class_module", "x": ' + "9" * 5000 + "}", "not valid JSON"),
    ('{"hubmod_kind": "class_module", "x": NaN}', "not valid JSON"),
])
def test_hostile_json_is_one_line(module_dir, tmp_path, text, match):
    d = tmp_path / "m"
    shutil.copytree(module_dir, d)
    (d / "config.json").write_text(text)
    with pytest.raises(InvalidRepoError, match=match) as err:
        ClassModule.from_pretrained(d)
    _one_line(err)


def test_a_deeply_nested_safetensors_header_is_one_line(module_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(module_dir, d)
    header = ('{"a": ' + _nested(100_000) + "}").encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(InvalidRepoError, match="not plain JSON") as err:
        ClassModule.from_pretrained(d)
    _one_line(err)


def test_an_empty_or_blank_split_index_is_one_line(tiny_parent_dirs, tmp_path):
    d = tmp_path / "parent"
    shutil.copytree(tiny_parent_dirs["vgg"], d)
    (d / "hubmod_split.json").write_text(json.dumps({"hubmod_kind": "split_index", "format_version": 1,
                                                     "modules": []}))
    result = _cli("compose", f"{d}:Dress")
    assert result.exit_code == 4 and "lists no modules" in result.stderr and result.stderr.count("\n") == 1
    (d / "hubmod_split.json").write_text("{}")
    result = _cli("inspect", str(d))
    assert result.exit_code == 4 and "hubmod_split.json" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("part,keys", [("own", ["min"]), ("platt", ["a", "b"]), ("other", ["max"])])
def test_a_module_with_incomplete_calibration_is_one_line(module_dir, tmp_path, part, keys):
    d = tmp_path / "m"
    shutil.copytree(module_dir, d)

    def drop(cfg):
        for k in keys:
            del cfg["calibration"][part][k]

    _edit_json(d / "config.json", drop)
    result = _cli("eval", str(d), "--dataset", "fashion-mnist")
    assert result.exit_code == 4 and f"calibration {part}" in result.stderr and result.stderr.count("\n") == 1


def test_too_many_composed_modules_are_refused(published_modules, tmp_path, monkeypatch):
    import hubmod.composed

    hub, _ = published_modules
    d = _composed_dir(tmp_path, hub)
    monkeypatch.setattr(hubmod.composed, "MAX_MODULES", 1)
    with pytest.raises(InvalidRepoError, match="over hubmod's limit"):
        ComposedClassifier.from_pretrained(d, hub=hub)


def test_an_oversized_card_is_not_downloaded(loopback):
    loopback.commit("eve/card", {"config.json": b"{}", "README.md": b"x" * (5 * 2**20)})
    with pytest.raises(InvalidRepoError, match="README.md in eve/card is 5,242,880 bytes") as err:
        HfHub().snapshot("eve/card")
    _one_line(err)
    assert not any(p.endswith("README.md") for m, p in loopback.calls if m in ("GET", "HEAD"))


# --------------------------------------------------------------------------- 8. terminal escapes


def test_class_names_with_markup_and_escapes_are_printed_as_text(vgg_split, tmp_path):
    d = tmp_path / "m"
    vgg_split.modules[0].save_pretrained(d)
    evil = "\x1b[2J\x1b[31m[/x] pwned[bold]"

    def rename(cfg):
        cfg["class_name"] = evil
        cfg["parent"]["label_names"][cfg["class_index"]] = evil

    _edit_json(d / "config.json", rename)
    result = _cli("inspect", str(d))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\\x1b[2J" in result.output and "[/x] pwned[bold]" in result.output
    result = _cli("compose", f"{d}:nothing-like-it")
    assert result.exit_code == 1 and "\x1b" not in result.stderr and "\\x1b" in result.stderr


# --------------------------------------------------------------------------- suspected items


@pytest.mark.parametrize("stream", [False, True])
def test_dataset_rows_cannot_name_files_outside_the_dataset(tmp_path, stream):
    """A parquet file (as a Hub dataset holds) whose image rows name a local file instead of holding bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import ClassLabel, Features, Image
    from PIL import Image as PILImage

    from hubmod.data import load_images, sample_stream

    secret = tmp_path / "secret.png"
    PILImage.new("L", (28, 28)).save(secret)
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    images = pa.array([{"bytes": None, "path": str(secret)}] * 4, type=pa.struct([("bytes", pa.binary()),
                                                                                    ("path", pa.string())]))
    table = pa.table({"image": images, "label": pa.array([0, 1, 0, 1], pa.int64())})
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features.to_dict()}})})
    (tmp_path / "ds").mkdir()
    pq.write_table(table, tmp_path / "ds" / "train-0.parquet")
    with pytest.raises(HubmodError, match="outside the dataset's own folder") as err:
        if stream:
            sample_stream(str(tmp_path / "ds"), "train", ["a", "b"], "test", [1])
        else:
            load_images(str(tmp_path / "ds"), "train")
    _one_line(err)


def test_private_repos_are_created_private(loopback, vgg_split):
    vgg_split.modules[0].push_to_hub("alice/private-module", HfHub(), private=True)
    assert loopback.repos["alice/private-module"].private


def test_a_new_split_drops_checkpoints_of_earlier_splits_into_the_same_repos(hubmod_home):
    from hubmod.resume import checkpoint_dir, drop_stale_checkpoints, split_lock

    for split_id, prefix in (("old", "me/x"), ("running", "me/x"), ("other", "me/y")):
        checkpoint_dir(split_id).mkdir(parents=True)
        (checkpoint_dir(split_id) / "outcome.json").write_text(json.dumps({"classes": [0], "repo_prefix": prefix}))
    with split_lock("running"):
        drop_stale_checkpoints("me/x", keep="new")
    assert not checkpoint_dir("old").exists()
    assert (checkpoint_dir("running") / "outcome.json").exists() and checkpoint_dir("other").exists()


def test_an_identical_split_running_is_refused(tiny_parent_dirs):
    from conftest import TINY_SPLIT

    from hubmod.parents import load_parent
    from hubmod.resume import split_lock
    from hubmod.split_pipeline import _split_id
    from hubmod.splitters import get_splitter

    parent = load_parent(str(tiny_parent_dirs["vgg"]))
    config = get_splitter("gradsplitter", TINY_SPLIT).config
    split_id = _split_id(parent, "gradsplitter", config.to_dict(), 0, "fashion-mnist")
    with split_lock(split_id), pytest.raises(HubmodError, match="identical split") as err:
        hubmod.split(str(tiny_parent_dirs["vgg"]), "fashion-mnist", options=TINY_SPLIT, progress=False)
    _one_line(err)
