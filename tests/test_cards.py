"""Cards: what a module's card says comes from its own config, and heads describe themselves."""

import json
import shutil

import pytest

from hubmod import ClassModule
from hubmod.errors import InvalidRepoError
from hubmod.heads import Head, describe_head
from hubmod.splitters import METHODS


def test_every_head_type_describes_itself_and_unknown_types_are_named():
    specs = {"mlp": {"in_features": 10, "hidden": 7}, "features_mlp": {"in_features": 96, "hidden": 7},
             "logit": {"in_features": 10, "index": 3}, "margin": {"in_features": 10, "index": 3}}
    assert set(Head.registry) == set(specs)
    phrases = {describe_head({"type": t, **s}) for t, s in specs.items()}
    assert len(phrases) == len(specs) and all(phrases)
    assert "Linear(96, 7)" in describe_head({"type": "features_mlp", **specs["features_mlp"]})
    assert describe_head({"type": "wavelet"}) == "wavelet" and describe_head(["x"]) == "None"


@pytest.fixture
def saved(vgg_split, tmp_path):
    d = tmp_path / "module"
    vgg_split.modules[1].save_pretrained(d, repo_id="me/vgg-trouser")
    return d


def test_the_module_card_names_and_links_the_method_its_config_records(saved):
    method = json.loads((saved / "config.json").read_text())["method"]
    own = METHODS[method["name"]]
    assert (method["title"], method["paper_url"]) == (own.pretty_name, own.paper_url)
    card = (saved / "README.md").read_text()
    assert own.pretty_name in card and own.paper_url in card


def test_a_card_read_alone_is_the_written_card_without_its_chart(saved, tmp_path, monkeypatch):
    module = ClassModule.from_pretrained(saved)
    monkeypatch.chdir(tmp_path)
    text = module.card_text("me/vgg-trouser", None)
    written = (saved / "README.md").read_text()
    assert (saved / "kept_channels.png").exists() and "kept_channels.png" in written
    assert "kept_channels.png" not in text and not list(tmp_path.glob("*.png"))
    assert [line for line in written.splitlines() if line.strip() and "kept_channels.png" not in line] == [
        line for line in text.splitlines() if line.strip()]


def _edit_method(src, dst, **changes):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg["method"].pop(key)
        else:
            cfg["method"][key] = value
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_a_paper_url_that_is_not_the_methods_own_is_refused(saved, tmp_path):
    d = _edit_method(saved, tmp_path / "forged", paper_url="https://evil.example/login")
    with pytest.raises(InvalidRepoError, match="method paper_url is not gradsplitter's"):
        ClassModule.from_pretrained(d)


def test_a_module_written_before_titles_were_recorded_gets_its_methods_on_load(saved, tmp_path):
    d = _edit_method(saved, tmp_path / "old", title=None, paper_url=None)
    module = ClassModule.from_pretrained(d)
    assert module.config.method["paper_url"] == METHODS["gradsplitter"].paper_url
    module.save_pretrained(tmp_path / "again")
    assert METHODS["gradsplitter"].paper_url in (tmp_path / "again" / "README.md").read_text()


def _front_matter(directory) -> dict:
    from huggingface_hub import ModelCard

    return ModelCard.load(directory / "README.md").data.to_dict()


def test_a_module_card_is_findable_by_its_class_and_names_its_parent_as_a_finetune(vgg_split, tmp_path):
    import copy

    from hubmod.data import FASHION_MNIST_CLASSES

    module = copy.deepcopy(vgg_split.modules[0])  # T-shirt/top: a class name with a '/' in it
    module.config.parent.update(repo_id="me/vgg-parent", hub="local")
    module.save_pretrained(tmp_path / "m", repo_id="me/vgg-t-shirt-top")
    data = _front_matter(tmp_path / "m")
    assert "hubmod-class-t-shirt-top" in data["tags"] and "hubmod" in data["tags"]
    meta = data["hubmod"]
    assert meta["class"] == "T-shirt/top" and meta["parent_classes"] == FASHION_MNIST_CLASSES
    assert meta["parent"] == "me/vgg-parent" and meta["method"] == "gradsplitter" and meta["input_size"] == [1, 28, 28]
    assert meta["kept_kernels"] == module.config.metrics["kept_kernels"] and meta["macs"] > 0
    assert data["base_model"] == "me/vgg-parent" and data["base_model_relation"] == "finetune"
    assert "github.com/hubmod" not in (tmp_path / "m" / "README.md").read_text()  # only pages that exist


def test_a_module_of_a_local_parent_names_no_base_model(saved):
    data = _front_matter(saved)
    assert "base_model" not in data and "base_model_relation" not in data
    assert "hubmod-class-trouser" in data["tags"]


def test_a_composed_card_lists_its_modules_as_merged_base_models(vgg_split, tmp_path):
    from hubmod import ComposedClassifier

    provenance = [{"repo_id": f"me/vgg-{i}", "revision": "0" * 40, "hub": "local"} for i in range(2)]
    ComposedClassifier(vgg_split.modules[:2], "none", provenance).save_pretrained(tmp_path / "c", repo_id="me/two")
    data = _front_matter(tmp_path / "c")
    assert data["base_model"] == ["me/vgg-0", "me/vgg-1"] and data["base_model_relation"] == "merge"
