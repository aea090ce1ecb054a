"""Repos from strangers: fuzzed config.json, weights files and names give a HubmodError or a working model.

Any other exception escaping (a torch traceback, a KeyError deep in timm) is a bug: the property
under test is "one clear error line or a model", over inputs hypothesis generates.
"""

import json
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubmod import ClassModule
from hubmod.errors import HubmodError, InvalidRepoError
from hubmod.hub import LocalHub
from hubmod.refs import class_slugs, parse_ref, validate_repo_id

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def saved_module(vgg_split, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("module")
    vgg_split.modules[3].save_pretrained(d)
    return d


def _paths(node, prefix=()):
    """Every (path) into a JSON tree, so a mutation can land anywhere in config.json."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _copy(saved: Path) -> Path:
    d = Path(tempfile.mkdtemp(prefix="fuzz-"))
    shutil.copytree(saved, d, dirs_exist_ok=True)
    return d


def _load_or_clear_error(d: Path) -> ClassModule | None:
    """Load the mutated repo: a clear one-line error, or a module that runs (scores a batch, finite)."""
    try:
        module = ClassModule.from_pretrained(d)
    except HubmodError as e:
        assert "\n" not in str(e) and str(e)
        return None
    finally:
        shutil.rmtree(d, ignore_errors=True)
    c, h, w = module.data_config.input_size
    scores = module.score(torch.randint(0, 256, (3, c, min(h, 64), min(w, 64)), dtype=torch.uint8))
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    return module


@FUZZ
@given(data=st.data(), value=json_values, delete=st.booleans())
def test_fuzzed_config_loads_or_fails_in_one_line(saved_module, data, value, delete):
    d = _copy(saved_module)
    cfg = json.loads((d / "config.json").read_text())
    path = data.draw(st.sampled_from([p for p in _paths(cfg) if p]))
    node = cfg
    for key in path[:-1]:
        node = node[key]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    (d / "config.json").write_text(json.dumps(cfg))
    _load_or_clear_error(d)


SHAPE_FIELDS = [("parent", "model_args"), ("parent", "pretrained_cfg", "input_size"), ("data_config",),
                ("channels", "example_input"), ("head",)]
small_values = st.integers(-2, 40) | st.booleans() | st.lists(st.integers(0, 40), max_size=5) | json_values


@FUZZ
@given(data=st.data(), value=small_values)
def test_fuzzed_shape_fields_load_or_fail_in_one_line(saved_module, data, value):
    """The fields that decide the network's shapes, hit with the small numbers that make nets degenerate.

    Random paths into config.json rarely land here (the kept-index lists dominate), yet these are
    where a zero width or a mismatched channel count would otherwise reach torch.
    """
    d = _copy(saved_module)
    cfg = json.loads((d / "config.json").read_text())
    paths = [p for p in _paths(cfg) if any(p[:len(f)] == f and len(p) > len(f) for f in SHAPE_FIELDS)]
    path = data.draw(st.sampled_from(paths))
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (d / "config.json").write_text(json.dumps(cfg))
    _load_or_clear_error(d)


@pytest.mark.parametrize("edit", [
    lambda c: c["parent"]["model_args"]["cfg"].__setitem__(0, 0),  # a conv with no outputs
    lambda c: c["parent"]["model_args"].__setitem__("in_chans", 0),  # a conv with no inputs
    lambda c: c["parent"]["model_args"].__setitem__("in_chans", 2),  # does not take the example image
    lambda c: c["channels"].__setitem__("example_input", [1, 1, 28, 1]),  # pooled to nothing
    lambda c: c["channels"].__setitem__("example_input", [1, 1, 28]),
    lambda c: c["head"].__setitem__("hidden", True),
], ids=["zero-width", "zero-in-chans", "in-chans-mismatch", "thin-example", "3d-example", "bool-hidden"])
def test_degenerate_shapes_fail_in_one_line(saved_module, edit):
    d = _copy(saved_module)
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    assert _load_or_clear_error(d) is None


@FUZZ
@given(data=st.data())
def test_fuzzed_weights_file_loads_or_fails_in_one_line(saved_module, data):
    d = _copy(saved_module)
    raw = (d / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    kind = data.draw(st.sampled_from(["truncate", "append", "flip-header", "header-length", "new-header"]))
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "append":
        raw = raw + data.draw(st.binary(min_size=1, max_size=64))
    elif kind == "flip-header":
        i = data.draw(st.integers(8, 8 + n - 1))
        raw = raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1:]
    elif kind == "header-length":
        raw = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1))) + raw[8:]
    else:
        header = json.dumps(data.draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))).encode()
        raw = struct.pack("<Q", len(header)) + header + raw[8 + n:]
    (d / "model.safetensors").write_bytes(raw)
    module = _load_or_clear_error(d)
    assert module is None or kind == "flip-header"  # only a header byte flip can leave a valid file


def test_oversized_and_reshaped_weights_are_refused_before_reading(saved_module, tmp_path):
    from safetensors.torch import load_file, save_file

    d = _copy(saved_module)
    state = load_file(str(d / "model.safetensors"))
    name = next(k for k, v in state.items() if v.ndim == 4)
    state[name] = torch.zeros(4096, *state[name].shape[1:])  # what a config-mismatched file would hold
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(InvalidRepoError, match=f"gives '{name}' shape"):
        ClassModule.from_pretrained(d)
    state = load_file(str(saved_module / "model.safetensors"))
    state["extra.weight"] = torch.zeros(3)
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(InvalidRepoError, match="does not use"):
        ClassModule.from_pretrained(d)


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=80))
def test_fuzzed_refs_parse_or_fail_in_one_line_and_never_escape_the_hub(text, tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "hub"
    try:
        ref, _ = parse_ref(text)
    except HubmodError as e:
        assert "\n" not in str(e)
        return
    if ref.kind in ("repo", "hf"):
        hub = LocalHub(root)
        assert hub._tree(ref.repo_id).is_relative_to(hub.root)
        assert hub._meta(ref.repo_id).is_relative_to(hub.root)


@settings(max_examples=300, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=12, unique=True))
def test_class_slugs_are_safe_unique_and_stable(names):
    slugs = class_slugs(names)
    assert len(set(slugs)) == len(slugs)
    assert slugs == class_slugs(list(names))
    for slug in slugs:
        validate_repo_id(f"ns/prefix-{slug}")  # every slug makes a valid repo name


@pytest.mark.parametrize("name", ["../../etc", "a/../../b", "/abs/path", "ns/..", "ns/name/../x", "ns/ná", "ns/.x",
                                  "ns/x\u2215y", "ns/x\x00"])
def test_escaping_repo_ids_are_refused(name, tmp_path):
    with pytest.raises(HubmodError, match="invalid repo id"):
        LocalHub(tmp_path).snapshot(validate_repo_id(name))


def test_oversized_config_is_refused_without_parsing(saved_module, monkeypatch):
    import hubmod.hub

    d = _copy(saved_module)
    monkeypatch.setitem(hubmod.hub.READ_FILES, "config.json", 1024)
    with pytest.raises(HubmodError, match="over hubmod's"):
        ClassModule.from_pretrained(d)


def test_absurd_architecture_is_refused_before_allocating(saved_module):
    d = _copy(saved_module)
    cfg = json.loads((d / "config.json").read_text())
    cfg["parent"]["model_args"]["cfg"] = [200_000, 200_000, "M"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidRepoError, match="over hubmod's limit"):
        ClassModule.from_pretrained(d)


@pytest.mark.parametrize("version", [2, "1", None, [1], "\x1b[31m9"])
def test_a_repo_in_another_format_version_is_one_line_saying_upgrade(version, saved_module, tmp_path):
    from hubmod.split_index import SPLIT_INDEX, SplitIndex

    d = tmp_path / "module"
    shutil.copytree(saved_module, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["format_version"] = version
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidRepoError, match=r"uses class module format .*; this hubmod reads format 1: upgrade"):
        ClassModule.from_pretrained(d)
    index = {"hubmod_kind": "split_index", "format_version": version, "modules": []}
    with pytest.raises(InvalidRepoError, match=rf"{SPLIT_INDEX} uses split index format .*: upgrade hubmod") as err:
        SplitIndex.from_dict(index, "me/parent")
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)
