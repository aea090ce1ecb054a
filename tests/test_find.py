"""hubmod find: module repos of a class, from their cards' metadata, on the embedded hub and through the
real huggingface_hub client against the loopback hub's model listing."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

import hubmod
from hubmod.cli import app
from hubmod.errors import HubmodError
from hubmod.hub import LocalHub

runner = CliRunner()


def _publish_variants(vgg_split, hub: str) -> dict[str, dict]:
    """Bag modules of three 'parents' (copies of one real module whose cards say different things), a
    Sneaker module, a card with the class tag but none of the metadata, and a card whose YAML uses aliases."""
    bag = vgg_split.modules[8]
    made = {}
    for f1, macs, parent in [(0.91, 30_000, "alice/vgg"), (0.97, 90_000, "bob/vgg"), (0.85, 10_000, "carol/vgg")]:
        m = copy.deepcopy(bag)
        m.config.metrics.update(test_f1=f1, macs=macs)
        m.config.parent.update(repo_id=parent, hub="local", revision="1" * 40)
        m.push_to_hub(f"{parent.split('/')[0]}/vgg-bag", hub=hub)
        made[f"{parent.split('/')[0]}/vgg-bag"] = {"f1": f1, "macs": macs, "parent": parent}
    vgg_split.modules[7].push_to_hub("alice/vgg-sneaker", hub=hub)
    return made


def _push_card(tmp_path, repo_id: str, card: str, hub: str) -> None:
    folder = tmp_path / repo_id.replace("/", "_")
    folder.mkdir()
    (folder / "README.md").write_text(card)
    hubmod.get_hub(hub).push_folder(repo_id, folder, "a hand-written card")


OLD_CARD = "---\nlibrary_name: hubmod\ntags:\n- hubmod\n- class-module\n- hubmod-class-bag\n---\n# an older module\n"
ALIASED_CARD = ("---\nlibrary_name: hubmod\ntags: &t\n- hubmod\n- hubmod-class-bag\nhubmod:\n  class: Bag\n"
                "  test_f1: 0.99\nmore: *t\n---\n")


@pytest.mark.parametrize("hub", ["local", "hf"])
def test_find_lists_modules_of_a_class_best_first_with_what_their_cards_say(hub, request, vgg_split, tmp_path):
    loopback = request.getfixturevalue("loopback") if hub == "hf" else None
    made = _publish_variants(vgg_split, hub)
    _push_card(tmp_path, "dave/old-bag", OLD_CARD, hub)
    if hub == "local":  # on the Hugging Face Hub the server parses the YAML; listings carry JSON
        _push_card(tmp_path, "eve/aliased-bag", ALIASED_CARD, hub)

    rows = hubmod.find(["bag"], hub=hub)["bag"]  # any case
    assert [r.repo_id for r in rows[:3]] == ["bob/vgg-bag", "alice/vgg-bag", "carol/vgg-bag"]  # best F1 first
    assert "eve/aliased-bag" not in [r.repo_id for r in rows]  # YAML with aliases is not read
    best = rows[0]
    assert best.class_name == "Bag" and best.f1 == 0.97 and best.macs == 90_000 and best.parent == "bob/vgg"
    assert best.parent_revision == "1" * 40 and best.architecture == "hubmod_vgg" and best.method == "gradsplitter"
    assert best.input_size == [1, 28, 28] and best.missing == [] and len(best.sha) == 40
    old = next(r for r in rows if r.repo_id == "dave/old-bag")  # listed, and says what its card lacks
    assert old.f1 is None and "test_f1" in old.missing and "architecture" in old.missing
    assert rows[-1] is old  # unknown F1 sorts last

    by_macs = hubmod.find(["Bag"], hub=hub, sort="macs", limit=2)["Bag"]
    assert [r.repo_id for r in by_macs] == ["carol/vgg-bag", "alice/vgg-bag"]
    assert [r.repo_id for r in hubmod.find(["Bag"], hub=hub, min_f1=0.9, max_macs=50_000)["Bag"]] == ["alice/vgg-bag"]
    assert [r.repo_id for r in hubmod.find(["Bag"], hub=hub, parent="carol/vgg")["Bag"]] == ["carol/vgg-bag"]
    assert hubmod.find(["Bag"], hub=hub, architecture="resnet18")["Bag"] == []
    assert [r.repo_id for r in hubmod.find(["sneaker"], hub=hub)["sneaker"]] == ["alice/vgg-sneaker"]
    assert set(made) <= {r.repo_id for r in rows}
    if loopback is not None:  # the listing went through huggingface_hub, a page of two at a time
        listings = [p for m, p in loopback.calls if m == "GET" and p.startswith("/api/models?")]
        assert any("cursor=" in p for p in listings) and all("hubmod-class-" in p for p in listings)


def test_find_on_the_command_line(vgg_split):
    _publish_variants(vgg_split, "local")
    out = runner.invoke(app, ["find", "Bag", "Trouser", "--hub", "local", "--json", "--limit", "2"])
    assert out.exit_code == 0, out.output
    found = json.loads(out.output)
    assert [r["repo_id"] for r in found["Bag"]] == ["bob/vgg-bag", "alice/vgg-bag"] and found["Trouser"] == []
    table = runner.invoke(app, ["find", "Trouser", "--hub", "local"])
    assert table.exit_code == 0 and "hubmod split" in table.output  # what to do when nothing is found
    bad = runner.invoke(app, ["find", "Bag", "--sort", "size", "--hub", "local"])
    assert bad.exit_code != 0 and "unknown order --sort size" in bad.output and "Traceback" not in bad.output


def test_find_arguments_are_checked():
    for kwargs, needle in [({"sort": "size"}, "unknown order"), ({"limit": 0}, "limit"), ({"min_f1": 2.0}, "min_f1"),
                           ({"max_macs": -1}, "max_macs")]:
        with pytest.raises(HubmodError, match=needle):
            hubmod.find(["Bag"], **kwargs)
    with pytest.raises(HubmodError, match="name at least one class"):
        hubmod.find([])
    assert hubmod.find(["Bag"]) == {"Bag": []}  # an empty hub
    assert not LocalHub().repo_exists("alice/vgg-bag")


def test_a_listing_the_hub_refuses_is_one_line(loopback):
    loopback.fail("GET", r"^/api/models(\?|$)", status=403, times=10)
    for args in (["find", "Bag"], ["compose", "Bag", "Sneaker", "--from-hub"]):
        out = runner.invoke(app, [*args, "--hub", "hf"])
        assert out.exit_code != 0 and "Traceback" not in out.output, out.output
        assert "refused access to the model listing (HTTP 403)" in out.output
        assert len([line for line in out.output.splitlines() if line.startswith("error:")]) == 1
