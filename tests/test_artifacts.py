"""The artifact kinds: one registry, one loading template that checks kind and format version first."""

import json
from pathlib import Path

import pytest

from hubmod import ClassModule, ComposedClassifier, PatchedClassifier
from hubmod.artifact import HubArtifact, artifact_class, describe_kind
from hubmod.errors import HubmodError, InvalidRepoError
from hubmod.loading import load


def _repo(tmp_path: Path, config: dict) -> Path:
    d = tmp_path / "repo"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    return d


def test_every_kind_is_registered_once_with_its_own_declarations():
    kinds = {cls.kind: cls for cls in (ClassModule, ComposedClassifier, PatchedClassifier)}
    assert {k: HubArtifact.registry[k] for k in kinds} == kinds
    for cls in kinds.values():
        header = cls.config_header()
        assert header["hubmod_kind"] == cls.kind and header["format_version"] == cls.format_version
        assert cls.card_template.endswith(".md.j2") and cls.title
        assert artifact_class({"hubmod_kind": cls.kind}) is cls
    assert artifact_class({}) is None and artifact_class({"hubmod_kind": ["class_module"]}) is None


@pytest.mark.parametrize("config, says", [
    ({"hubmod_kind": "class_module"}, "is a class module, not a composed classifier"),
    ({"architecture": "resnet18"}, "is a plain timm model, not a composed classifier"),
    ({"hubmod_kind": "class_module_v9"}, "is of a kind this hubmod does not know ('class_module_v9')"),
])
def test_loading_the_wrong_kind_is_one_line_naming_both_kinds(tmp_path, config, says):
    with pytest.raises(HubmodError) as err:
        ComposedClassifier.from_pretrained(_repo(tmp_path, config))
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("cls", [ClassModule, PatchedClassifier, ComposedClassifier])
def test_the_format_version_is_checked_before_the_kind_reads_anything(tmp_path, cls):
    d = _repo(tmp_path, {"hubmod_kind": cls.kind, "format_version": cls.format_version + 1})
    with pytest.raises(InvalidRepoError, match=f"uses {cls.title} format '{cls.format_version + 1}'; .*upgrade hubmod"):
        cls.from_pretrained(d)


def test_a_composed_config_without_a_version_reads_as_version_one(tmp_path):
    d = _repo(tmp_path, {"hubmod_kind": ComposedClassifier.kind, "modules": []})  # written before versions
    with pytest.raises(InvalidRepoError, match="lists no modules"):  # past the version check, into the kind's own
        ComposedClassifier.from_pretrained(d)
    (tmp_path / "b").mkdir()
    d2 = _repo(tmp_path / "b", {"hubmod_kind": ClassModule.kind})
    with pytest.raises(InvalidRepoError, match="uses class module format 'None'"):  # modules always recorded one
        ClassModule.from_pretrained(d2)


def test_load_hands_a_registered_kind_to_its_class(tmp_path):
    d = _repo(tmp_path, {"hubmod_kind": PatchedClassifier.kind, "format_version": 1})
    with pytest.raises(InvalidRepoError, match="weak"):  # PatchedClassifier's own field checks ran
        load(str(d))
    assert describe_kind(None) == "a plain timm model" and describe_kind("patched_classifier") == \
        "a patched classifier"
