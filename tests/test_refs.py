import pytest

from hubmod.errors import HubmodError
from hubmod.refs import class_slugs, match_class, parse_ref, parse_source, slugify, validate_repo_id


def test_sources_follow_explicit_rules():
    assert parse_source("alice/resnet18-fmnist").kind == "repo"
    r = parse_source("alice/resnet18-fmnist@abc1234")
    assert (r.repo_id, r.revision) == ("alice/resnet18-fmnist", "abc1234")
    h = parse_source("hf-hub:timm/resnet18.a1_in1k@main")
    assert (h.kind, h.repo_id, h.revision) == ("hf", "timm/resnet18.a1_in1k", "main")
    for path in ("./models/x", "/abs/dir", "../up", "~/home", "."):
        assert parse_source(path).kind == "dir"


@pytest.mark.parametrize("bad", ["", "noslash", "a/b/c", "a/..", "-a/b", "a/b/", "ns/na me",
                                 "hf-hub:a", "a/b@", "a/b@../x", "ü/x"])
def test_bad_sources_are_one_line_errors(bad):
    with pytest.raises(HubmodError) as e:
        parse_source(bad)
    assert "\n" not in str(e.value)


def test_refs_split_class_at_first_colon():
    ref, cls = parse_ref("alice/rn18:T-shirt/top")
    assert ref.repo_id == "alice/rn18" and cls == "T-shirt/top"
    ref, cls = parse_ref("hf-hub:bob/vgg@main:Bag")
    assert (ref.kind, ref.repo_id, ref.revision, cls) == ("hf", "bob/vgg", "main", "Bag")
    assert parse_ref("bob/module")[1] is None
    with pytest.raises(HubmodError, match="names no class"):
        parse_ref("bob/vgg:")


def test_slugs_are_stable_and_collision_free():
    names = ["T-shirt/top", "Trouser", "Ankle boot", "T shirt top", "???", "a", "a-1"]
    slugs = class_slugs(names)
    assert len(set(slugs)) == len(slugs)
    assert slugs == class_slugs(names)
    assert slugify("Ankle boot") == "ankle-boot"
    assert all(s and "/" not in s and ".." not in s for s in slugs)


def test_match_class_exact_casefold_and_slug():
    names = ["T-shirt/top", "Ankle boot"]
    assert match_class("ankle boot", names, "x") == 1
    assert match_class("t-shirt-top", names, "x") == 0
    with pytest.raises(HubmodError, match="valid classes: T-shirt/top, Ankle boot"):
        match_class("Sneaker", names, "x")


def test_repo_ids_cannot_escape():
    for bad in ("../x", "a/../b", "/abs/x", "a\\b/c", "a/b\x00"):
        with pytest.raises(HubmodError, match="invalid repo id"):
            validate_repo_id(bad)
