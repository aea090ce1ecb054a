"""Slow end-to-end runs on full-size parents (minutes each): `bash scripts/test.sh -m slow`."""

import pytest

import hubmod
from hubmod.data import FASHION_MNIST_CLASSES

pytestmark = pytest.mark.slow


def test_a_full_size_vgg_splits_composes_and_evaluates_end_to_end(fmnist_train):
    """A default hubmod_vgg trained for one epoch on all 60,000 images, split with the default setting: its
    modules compose about as well as the parent, are cut well below its size, and the published composition
    evaluates to the split's own figure. How small the default makes a VGG's modules is measured in
    BENCHMARKS.md (split-size-curve), not asserted here."""
    from hubmod.training import fashion_mnist_config, publish_parent, train_parent

    parent = train_parent("hubmod_vgg", fmnist_train, fashion_mnist_config(), epochs=1, progress=False)
    publish_parent(parent, "slow/vgg-fmnist", "local")
    report = hubmod.split("slow/vgg-fmnist", "fashion-mnist", hub="local", progress=False)
    assert report.composed_accuracy >= report.parent_accuracy - 0.015, report.to_dict()
    assert report.mean_kept_kernels < 0.75  # well below the parent (a module given the whole parent keeps 1.0)
    composed = hubmod.compose([f"slow/vgg-fmnist:{c}" for c in FASHION_MNIST_CLASSES], output="slow/all")
    rep = hubmod.evaluate("slow/all", "fashion-mnist")
    assert rep.accuracy == pytest.approx(report.composed_accuracy, abs=1e-6)
    assert composed.calibration == "none"
