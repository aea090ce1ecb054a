"""Composed models pin module commits: a module repo changing later never changes a composed model."""

import shutil

import torch

import hubmod
from hubmod import ClassModule, ComposedClassifier
from hubmod.hub import LocalHub


def test_composed_model_keeps_its_pinned_modules(vgg_split, fmnist_test, tmp_path):
    hub = LocalHub()
    first, other = vgg_split.modules[0], vgg_split.modules[1]
    sha_a = first.push_to_hub("pin/m-a", hub)
    other.push_to_hub("pin/m-b", hub)
    composed = hubmod.compose(["pin/m-a", "pin/m-b"], output="pin/composed", hub=hub)
    images = fmnist_test.images[:64]
    expected = composed(images)

    # the module repo moves on: same class, different weights
    changed = ClassModule.from_pretrained("pin/m-a", hub=hub)
    with torch.no_grad():
        for p in changed.head.parameters():
            p.add_(1.0)
    sha_new = changed.push_to_hub("pin/m-a", hub)
    assert sha_new != sha_a

    loaded = ComposedClassifier.from_pretrained("pin/composed", hub=hub)
    assert loaded.provenance[0]["revision"] == sha_a
    assert torch.equal(loaded(images), expected)

    # without its consolidated weights, the composed repo fetches each module at its pinned commit
    d = tmp_path / "composed"
    shutil.copytree(hub.snapshot("pin/composed").path, d)
    (d / "model.safetensors").unlink()
    refetched = ComposedClassifier.from_pretrained(d, hub=hub)
    assert torch.equal(refetched(images), expected)
    assert not torch.equal(hubmod.compose(["pin/m-a", "pin/m-b"], hub=hub)(images), expected)
