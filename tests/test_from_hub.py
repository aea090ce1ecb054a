"""hubmod compose CLASS... --from-hub: candidates found by class on a hub, the best kept by measurement on a few
labelled images (or by recorded F1 without them), every candidate recorded in the composed repo."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import hubmod
from hubmod.cli import app
from hubmod.combiners import cross_validated_accuracy
from hubmod.data import load_images
from hubmod.errors import HubmodError, InvalidRepoError
from hubmod.hub import LocalHub

runner = CliRunner()
CLASSES = ["Trouser", "Sneaker", "Bag"]


def _publish_candidates(vgg_split, hub: str) -> None:
    """Real modules of three classes, plus a second Sneaker and a second Bag module that are really the
    Trouser module (a wrong module, relabelled: its card says Sneaker or Bag) whose cards claim better F1s."""
    by_name = {m.class_name: m for m in vgg_split.modules}
    for name in CLASSES:
        by_name[name].push_to_hub(f"alice/vgg-{name.lower()}", hub=hub)
    for name in ("Sneaker", "Bag"):
        wrong = copy.deepcopy(by_name["Trouser"])
        wrong.config.class_name, wrong.config.class_index = name, by_name[name].config.class_index
        wrong.config.metrics.update(test_f1=0.999)
        wrong.config.split_id = "mallory-split"  # a split of another parent
        wrong.config.parent.update(repo_id="mallory/vgg")
        wrong.push_to_hub(f"mallory/vgg-{name.lower()}", hub=hub)


def _accuracy(model, folder) -> float:
    test = load_images(str(folder), "test").for_classes(model.class_names, "the test")
    return float((model(test.images).argmax(1) == test.labels).float().mean())


def test_fit_images_pick_the_module_that_composes_best_and_the_repo_records_why(vgg_split, small_fmnist_dir):
    _publish_candidates(vgg_split, "local")
    covered = hubmod.compose_from_hub(CLASSES, hub="local")  # no labels: as few splits as cover the classes
    assert covered.selection["by"] == "fewest_splits" and covered.calibration == "none"
    assert [p["repo_id"] for p in covered.provenance] == ["alice/vgg-trouser", "alice/vgg-sneaker", "alice/vgg-bag"]
    assert "covers 3 of the 3 classes" in covered.selection["classes"][2]["why"]
    blind = hubmod.compose_from_hub(CLASSES, hub="local", unlabelled="f1")  # no labels: the cards' F1 decides
    assert blind.selection["by"] == "recorded_f1" and blind.calibration == "minmax"
    assert [p["repo_id"] for p in blind.provenance] == ["alice/vgg-trouser", "mallory/vgg-sneaker", "mallory/vgg-bag"]
    assert [len(e["candidates"]) for e in blind.selection["classes"]] == [1, 2, 2]
    assert all("recorded F1" in e["why"] for e in blind.selection["classes"][1:])

    fitted = hubmod.compose_from_hub(CLASSES, hub="local", fit=str(small_fmnist_dir), shots=5, unlabelled="f1",
                                     output="me/three-from-hub")  # measured, starting from the wrong modules
    assert fitted.selection["by"] == "fit"
    assert fitted.fit_info["shots"] == 5 and len(fitted.fit_info["rows"]) == 15
    # a Sneaker and a Bag module that both answer "trouser" cannot be told apart: at least one real one is kept
    assert sum(p["repo_id"].startswith("alice/") for p in fitted.provenance[1:]) >= 1
    for entry in fitted.selection["classes"][1:]:
        scores = [c["score"] for c in entry["candidates"]]
        assert scores[entry["chosen"]] == max(scores) and "cross-validated accuracy" in entry["why"]
    # measured on test images neither choice saw: the measured choice composes better
    assert _accuracy(fitted, small_fmnist_dir) > _accuracy(blind, small_fmnist_dir) + 0.1

    reloaded = hubmod.ComposedClassifier.from_pretrained("me/three-from-hub", hub="local")
    assert reloaded.selection == fitted.selection
    images = load_images(str(small_fmnist_dir), "test").for_classes(CLASSES, "t").images[:20]
    assert torch.equal(reloaded(images), fitted(images))
    card = (LocalHub().snapshot("me/three-from-hub").file("README.md")).read_text()
    assert "Chosen by class name from the hub" in card and "mallory/vgg-bag" in card and "**chosen**" in card
    assert "hubmod compose Trouser Sneaker Bag --from-hub --candidates 5 --unlabelled f1 --fit" in card


def test_compose_from_hub_through_huggingface_hub(vgg_split, loopback):
    _publish_candidates(vgg_split, "hf")
    model = hubmod.compose_from_hub(["bag", "trouser"], hub="hf", candidates=1)  # classes by any case
    assert model.class_names == ["Bag", "Trouser"]
    assert [len(e["candidates"]) for e in model.selection["classes"]] == [1, 1]
    assert all(len(p["revision"]) == 40 for p in model.provenance)


def test_compose_from_hub_errors_are_one_line(vgg_split):
    with pytest.raises(HubmodError, match="no module of class 'Bag' on the hub local.*hubmod split"):
        hubmod.compose_from_hub(["Bag"], hub="local")  # an empty hub
    _publish_candidates(vgg_split, "local")
    with pytest.raises(HubmodError, match="no module of class 'Unicorn'.*hubmod split"):
        hubmod.compose_from_hub(["Bag", "Unicorn"], hub="local")
    with pytest.raises(HubmodError, match="unknown choice"):
        hubmod.compose_from_hub(["Bag"], hub="local", unlabelled="vibes")
    with pytest.raises(HubmodError, match="candidates"):
        hubmod.compose_from_hub(["Bag"], hub="local", candidates=0)
    with pytest.raises(HubmodError, match="name the same class"):
        hubmod.compose_from_hub(["Bag", "bag"], hub="local")
    with pytest.raises(HubmodError, match="shots"):
        hubmod.compose_from_hub(["Bag"], hub="local", fit="fashion-mnist", shots=0)
    out = runner.invoke(app, ["compose", "Bag", "Unicorn", "--from-hub", "--hub", "local"])
    assert out.exit_code != 0 and "no module of class 'Unicorn'" in out.output and "Traceback" not in out.output


def test_compose_from_hub_on_the_command_line(vgg_split):
    _publish_candidates(vgg_split, "local")
    out = runner.invoke(app, ["compose", "Bag", "Sneaker", "--from-hub", "--hub", "local", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output[out.output.index("{"):])
    assert info["classes"] == ["Bag", "Sneaker"] and info["selection"]["by"] == "fewest_splits"
    text = runner.invoke(app, ["compose", "Bag", "Sneaker", "--from-hub", "--hub", "local", "--unlabelled",
                               "f1"]).output
    assert "Bag: mallory/vgg-bag of 2 candidates" in text and "weaker choice" in text


def test_a_tampered_selection_record_is_refused(vgg_split):
    _publish_candidates(vgg_split, "local")
    hubmod.compose_from_hub(["Bag", "Sneaker"], hub="local", output="me/two")
    snap = LocalHub().snapshot("me/two")
    config = json.loads(snap.file("config.json").read_text())
    folder = snap.file("config.json").parent
    for bad in ({"chosen": 7}, {"candidates": "all"}, {"why": 3}):
        tampered = copy.deepcopy(config)
        tampered["selection"]["classes"][0].update(bad)
        with tempfile.TemporaryDirectory() as d:
            copy_dir = Path(d) / "repo"
            shutil.copytree(folder, copy_dir)
            (copy_dir / "config.json").write_text(json.dumps(tampered))
            LocalHub().push_folder("me/tampered", copy_dir, "tamper")
        with pytest.raises(InvalidRepoError, match="selection"):
            hubmod.ComposedClassifier.from_pretrained("me/tampered", hub="local")


def test_cross_validated_accuracy_tells_separable_scores_from_noise():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(10)
    clean = torch.nn.functional.one_hot(labels, 3).double() + 0.1 * torch.randn(30, 3, generator=g, dtype=torch.double)
    noise = torch.randn(30, 3, generator=g, dtype=torch.double)
    acc, loss = cross_validated_accuracy("affine", clean, torch.zeros(30, 0), labels, torch.Generator().manual_seed(0))
    acc_noise, loss_noise = cross_validated_accuracy("affine", noise, torch.zeros(30, 0), labels,
                                                     torch.Generator().manual_seed(0))
    assert acc == 1.0 and acc_noise < 0.7 and loss < loss_noise
    one_each = cross_validated_accuracy("stack", clean[:3], torch.zeros(3, 0), labels[:3], torch.Generator())
    assert one_each[0] == 1.0  # one image per class: the calibrated scores' own argmax is measured
