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
