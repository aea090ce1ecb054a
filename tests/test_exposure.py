"""Outlier exposure (``split --negatives``): the gate, its record, the ``exposed`` rule, and a real split."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import TINY_SPLIT

import hubmod
from hubmod import calibration
from hubmod.composed import ComposedClassifier, auto_calibration
from hubmod.errors import HubmodError, InvalidRepoError
from hubmod.exposure import checked_record, fit_gate
from hubmod.hub import LocalHub
from hubmod.module import ClassModule


def test_gate_separates_own_from_other_and_folds_standardisation():
    g = torch.Generator().manual_seed(0)
    own = torch.randn(60, 5, generator=g) * 3 + torch.tensor([20.0, 0, 0, 0, 0])
    other = torch.randn(200, 5, generator=g) * 3
    weight, bias = fit_gate(own, other)
    assert weight.shape == (1, 5) and bias.shape == (1,)
    p_own = torch.sigmoid(own @ weight.T + bias).squeeze(1)
    p_other = torch.sigmoid(other @ weight.T + bias).squeeze(1)
    assert p_own.min() > 0.5 > p_other.max()  # the first feature alone tells them apart
    again = fit_gate(own, other)
    assert torch.equal(again[0], weight) and torch.equal(again[1], bias)  # deterministic


def test_gated_rules_are_a_rescaled_score_times_the_gate():
    cal = calibration.fit(torch.tensor([2.0, 4.0, 6.0]), torch.tensor([-3.0, -1.0, 0.0]))
    raw, gate = torch.tensor([2.0, 6.0, 4.0]), torch.tensor([1.0, 0.5, 0.0])
    for rule, rescaled in (("exposed", "minmax"), ("gated", "means")):
        expected = calibration.apply(rescaled, raw, cal) * gate
        assert torch.allclose(calibration.apply(rule, raw, cal, gate=gate), expected)
    for rule in calibration.NEEDS_GATE:
        with pytest.raises(ValueError, match="gate"):
            calibration.apply(rule, raw, cal)


def test_means_rule_maps_the_other_mean_to_0_and_the_own_mean_to_1():
    # own scores with one far outlier: minmax squeezes typical own scores toward 1, means does not
    own, other = torch.tensor([-8.0, 3.0, 4.0, 5.0]), torch.tensor([-4.0, -2.0, 0.0])
    cal = calibration.fit(own, other)
    out = calibration.apply("means", torch.tensor([-2.0, 1.0, 4.0]), cal)
    assert torch.allclose(out, torch.tensor([0.0, 1.0, 2.0]), atol=1e-6)
    assert calibration.apply("minmax", torch.tensor([-2.0]), cal) > 0.4  # an other-class mean score, by minmax


@pytest.mark.parametrize("bad", [{"dataset": 3}, {"dataset": "d", "split": "train", "images": -1},
                                 {"dataset": "d", "split": "train", "images": 5, "images_sha256": "x",
                                  "penalty": "high", "seed": 0}, ["not", "an", "object"]])
def test_exposure_record_from_a_repo_is_checked(bad):
    with pytest.raises(InvalidRepoError, match="exposure"):
        checked_record(bad, "me/mod")


def test_split_with_negatives_gates_modules_and_composes_exposed(tiny_parent_dirs, vgg_split, digits_dir, fmnist_test,
                                                                 tmp_path):
    """A real split of the tiny VGG parent exposed to real digits: every module gets a gate that says
    "not mine" to digits far more often than to its own class, the record and the weights survive the
    hub, and exposed modules of different splits compose with the exposed rule, in PyTorch and in ONNX."""
    from hubmod.onnx_export import export_onnx

    parent = str(tiny_parent_dirs["vgg"])
    with pytest.raises(HubmodError, match="negatives must be images of none of the parent's classes"):
        hubmod.split(parent, "fashion-mnist", options=TINY_SPLIT, negatives="fashion-mnist", progress=False,
                     repo_prefix="me/nope")
    assert not LocalHub().repo_exists("me/nope-bag")  # nothing written
    opts = {**TINY_SPLIT, "distill_epochs": 0, "max_auc_loss": 1.0}  # the modules as the margins below were measured
    a = hubmod.split(parent, "fashion-mnist", options=opts, classes=["Trouser", "Bag"], negatives=str(digits_dir),
                     repo_prefix="me/vgg-a", progress=False)
    other = copy.deepcopy(next(m for m in a.modules if m.class_name == "Bag"))
    other.config.split_id = "another-split"  # as if split apart from Trouser (without what a second split costs)
    other.push_to_hub("me/vgg-b-bag")
    assert "--negatives" in a.modules[0].config.command
    bag = ClassModule.from_pretrained("me/vgg-a-bag")
    split_bag = next(m for m in a.modules if m.class_name == "Bag")
    record = bag.config.exposure
    assert record["dataset"] == str(digits_dir) and record["images"] == 1797 and len(record["images_sha256"]) == 64
    assert bag.exposed and torch.equal(bag.exposure.weight, split_bag.exposure.weight)
    bag.save_pretrained(tmp_path / "bag")
    assert "outlier exposure: a gate fitted against 1797 images" in (tmp_path / "bag" / "README.md").read_text()

    from hubmod.data import load_images

    digits = load_images(str(digits_dir), "train").images[:300]
    own = fmnist_test.images[fmnist_test.labels == bag.config.class_index][:300]

    def gate(images):
        from hubmod.preprocess import prepare_input

        return torch.sigmoid(bag.exposure(bag.head_input(prepare_input(images, bag.data_config)))).squeeze(1)

    # over three parent seeds (HUBMOD_TEST_PARENT_SEED=0,1,2) the Bag gate's mean was 0.78-0.89 on Bag test
    # images and 0.03-0.09 on digits
    assert gate(own).mean() > 0.6 and gate(digits).mean() < 0.25, (gate(own).mean(), gate(digits).mean())

    assert hubmod.compose(["me/vgg-a:Trouser", "me/vgg-a:Bag"]).calibration == "none"  # one split: raw scores
    composed = hubmod.compose(["me/vgg-a:Trouser", "me/vgg-b-bag"], output="me/exposed")
    assert composed.calibration == "gated"
    assert auto_calibration([*a.modules, *vgg_split.modules[:1]]) == "minmax"  # one module without a gate
    with pytest.raises(HubmodError, match="no outlier-exposure gate"):
        ComposedClassifier([a.modules[0], vgg_split.modules[2]], "gated")
    few = fmnist_test.images[:16]
    reloaded = ComposedClassifier.from_pretrained("me/exposed")
    assert torch.equal(reloaded(few), composed(few))
    earlier = hubmod.compose(["me/vgg-a:Trouser", "me/vgg-b-bag"], calibration_method="exposed",
                             output="me/minmax-gated")
    assert torch.equal(ComposedClassifier.from_pretrained("me/minmax-gated")(few), earlier(few))  # the first rule loads
    info = export_onnx(reloaded, tmp_path / "exposed.onnx", check_images=few)
    assert info["max_abs_diff"] < 1e-4 and info["same_argmax"]

    reloaded.save_pretrained(tmp_path / "ungated")  # a repo naming the rule for modules that lost their gates
    cfg = json.loads((tmp_path / "ungated" / "config.json").read_text())
    del cfg["modules"][0]["config"]["exposure"]
    (tmp_path / "ungated" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidRepoError, match="exposure"):
        ComposedClassifier.from_pretrained(tmp_path / "ungated")
