import json
import shutil

import pytest
import torch
from conftest import TINY_SPLIT

import hubmod
from hubmod import ClassModule
from hubmod.errors import HubmodError, InvalidRepoError


def test_module_output_identical_after_save_and_load(vgg_split, tmp_path, fmnist_test):
    module = vgg_split.modules[7]
    module.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "README.md", "config.json", "kept_channels.png", "model.safetensors"]
    loaded = ClassModule.from_pretrained(tmp_path / "m")
    x = fmnist_test.images[:200]
    assert torch.equal(loaded.score(x), module.score(x))
    assert loaded.class_name == "Sneaker"
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["hubmod_kind"] == "class_module" and cfg["parent"]["architecture"] == "hubmod_vgg"
    assert len(cfg["parent"]["revision"]) == 40  # the parent's content hash for a local dir


def test_module_accepts_pil_uint8_and_preprocessed(vgg_split, fmnist_test):
    from PIL import Image

    from hubmod.preprocess import preprocess

    module = vgg_split.modules[0]
    raw = fmnist_test.images[:4]
    pil = [Image.fromarray(im[0].numpy()) for im in raw]
    pre = preprocess(raw, module.data_config)
    s = module.score(raw)
    assert torch.allclose(module.score(pil), s) and torch.allclose(module.score(pre), s)
    platt = module.config.calibration["platt"]
    assert torch.allclose(module.probability(raw), torch.sigmoid(platt["a"] * s + platt["b"]))
    assert platt["a"] > 0  # a higher score means more likely the module's class


def test_card_front_matter(vgg_split, tmp_path):
    from huggingface_hub import ModelCard

    vgg_split.modules[3].save_pretrained(tmp_path / "m")
    card = ModelCard.load(tmp_path / "m" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "hubmod"
    assert {"hubmod", "class-module", "gradsplitter"} <= set(data["tags"])
    assert data["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert data["license"] == "mit"
    assert "model-index" in data
    assert "hubmod split" in card.text and "Dress" in card.text and "kept_channels.png" in card.text
    distilled = vgg_split.method_metrics["distilled"]
    assert vgg_split.modules[3].config.method["distilled"] is distilled
    assert ("- weights: distilled from the parent" in card.text) is distilled


def test_corrupt_weights_are_one_clear_error(vgg_split, tmp_path):
    d = tmp_path / "m"
    vgg_split.modules[0].save_pretrained(d)
    (d / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(InvalidRepoError, match="is too short to be safetensors|declares a"):
        ClassModule.from_pretrained(d)


def test_mismatched_config_is_refused(vgg_split, tmp_path):
    d = tmp_path / "m"
    vgg_split.modules[0].save_pretrained(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["channels"]["groups"][0]["kept"] = cfg["channels"]["groups"][0]["kept"] + [10_000]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidRepoError, match="malformed"):
        ClassModule.from_pretrained(d)
    cfg["channels"]["groups"][0]["kept"] = [0]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidRepoError, match="weights and config.json disagree"):
        ClassModule.from_pretrained(d)


def test_pickle_only_repo_is_refused(vgg_split, tmp_path):
    d = tmp_path / "m"
    vgg_split.modules[0].save_pretrained(d)
    shutil.move(d / "model.safetensors", d / "pytorch_model.bin")
    with pytest.raises(HubmodError, match="only loads safetensors"):
        ClassModule.from_pretrained(d)


def test_split_report_is_consistent(vgg_split):
    r = vgg_split
    assert [row.class_name for row in r.rows] == r.modules[0].config.parent["label_names"]
    assert 0 < r.mean_kept_kernels <= 1
    assert all(row.kernels < r.parent_kernels or row.kept_kernels == 1 for row in r.rows)
    assert r.n_test == 10000 and 0.3 < r.parent_accuracy < 1
    assert {"search", "extract", "evaluate", "total"} <= set(r.seconds)


def test_same_seed_same_modules(tiny_parent_dirs):
    options = {**TINY_SPLIT, "max_cycles": 1}  # a search and a distillation, each as short as can be
    first, again = (hubmod.split(f"{tiny_parent_dirs['vgg']}", "fashion-mnist", options=options, seed=0,
                                 publish=False, progress=False, classes=["Trouser", "Bag"]) for _ in range(2))
    for a, b in zip(first.modules, again.modules, strict=True):
        assert a.config.kept == b.config.kept
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_card_usage_snippet_runs_when_pasted(vgg_split, fmnist_test):
    import re

    from huggingface_hub import ModelCard

    from hubmod.hub import LocalHub

    module = vgg_split.modules[5]
    module.push_to_hub("me/sandal", hub="local")
    card = ModelCard.load(LocalHub().snapshot("me/sandal").path / "README.md")
    code = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    scope = {"images": fmnist_test.images[:16]}
    exec(code, scope)  # the snippet exactly as a user would paste it
    assert torch.allclose(scope["probability"], module.probability(fmnist_test.images[:16]))
    cli = re.search(r"```bash\n(hubmod compose .*?)\n```", card.text, re.S).group(1)
    assert "me/sandal" in cli and "--hub local" in cli
