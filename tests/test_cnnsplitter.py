"""CNNSplitter's parts: gene encoding over channel groups, GA operators, importance, and a tiny split + patch."""

import pytest
import timm
import torch

import hubmod
import hubmod.archs  # noqa: F401
from hubmod.channels import channel_groups
from hubmod.errors import HubmodError
from hubmod.splitters.cnnsplitter import (
    Genome,
    OwnLogits,
    diversity,
    kernel_importance,
    mutate,
    rank_groups,
    single_point_crossover,
)


def _resnet():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=4, in_chans=1, channels=[8, 16, 24, 32], stem_width=8).eval()
    groups = channel_groups(model, torch.zeros(1, 1, 28, 28))
    for p in model.parameters():
        p.requires_grad_(False)
    return model, groups


def test_genes_live_on_channel_groups_so_residual_layers_share_them():
    model, groups = _resnet()
    gen = torch.Generator().manual_seed(0)
    importance = {g.name: torch.rand(4, g.size, generator=gen) for g in groups}
    genome = Genome.from_importance(groups, importance)
    assert genome.genes == [rank_groups(g.size) for g in groups]
    stream = max(groups, key=lambda g: len(g.conv_modules))
    assert {"layer1.0.conv2", "layer1.1.conv2"} <= set(stream.conv_modules)  # one gene set for the residual stream
    individual = genome.seed(4, [0.5] * len(groups), gen, spread=0.0)
    masks = genome.masks(individual)
    for g in groups:
        m = masks[g.name]
        assert m.shape == (4, g.size)
        for c in range(4):  # the kept channels of a module are its most important ones
            kept = importance[g.name][c][m[c] > 0]
            dropped = importance[g.name][c][m[c] == 0]
            if len(dropped):
                assert kept.min() >= dropped.max()
    assert genome.weights.shape[0] == sum(g.size for g in groups)
    assert genome.weights.max() == max(len(g.conv_modules) for g in groups)


def test_own_logits_run_only_new_modules_and_match_a_full_evaluation():
    from hubmod.channels import GroupMasks
    from hubmod.splitters.cnnsplitter import masked_logits

    model, groups = _resnet()
    gen = torch.Generator().manual_seed(1)
    genome = Genome.from_importance(groups, {g.name: torch.rand(4, g.size, generator=gen) for g in groups})
    hooks = GroupMasks(model, groups)
    x = torch.randn(12, 1, 28, 28)
    own = OwnLogits(model, hooks, genome, x, images_per_pass=20)
    a = genome.seed(4, [0.6] * len(groups), gen)
    b = a.clone()
    b[2] = genome.seed(4, [0.3] * len(groups), gen)[2]  # only module 2 differs
    out_a = own(a)
    assert own.modules_run == 4
    out_b = own(b)
    assert own.modules_run == 5  # modules 0, 1, 3 came from the memo
    assert torch.equal(out_b[[0, 1, 3]], out_a[[0, 1, 3]])
    full = torch.cat([logits for _, logits in masked_logits(model, hooks, genome.masks(b), x, 1000)], dim=1)
    assert torch.allclose(out_b, full[torch.arange(4), :, torch.arange(4)], atol=1e-5)


def test_crossover_takes_a_prefix_and_a_suffix():
    gen = torch.Generator().manual_seed(3)
    a = torch.ones(3, 7, dtype=torch.bool)
    b = torch.zeros(3, 7, dtype=torch.bool)
    for _ in range(20):
        child = single_point_crossover(a, b, gen).flatten()
        cut = int(child.sum())
        assert 1 <= cut < child.numel()
        assert child[:cut].all() and not child[cut:].any()


def test_mutation_flips_at_the_rate_and_keeps_each_groups_top_gene():
    gen = torch.Generator().manual_seed(4)
    genes = [10, 10, 30]
    x = torch.zeros(50, 50, dtype=torch.bool)
    y = mutate(x, 0.1, gen, genes)
    assert y[:, [0, 10, 20]].all()
    rest = torch.ones(50, dtype=torch.bool)
    rest[[0, 10, 20]] = False
    assert 0.06 < y[:, rest].float().mean() < 0.14
    assert torch.equal(mutate(x, 0.0, gen, genes)[:, rest], x[:, rest])


def test_diversity_is_one_minus_weighted_jaccard():
    same = {"g": torch.tensor([[1.0, 1, 0], [1, 1, 0]])}
    apart = {"g": torch.tensor([[1.0, 0, 0], [0, 1, 0]])}
    half = {"g": torch.tensor([[1.0, 1, 0], [0, 1, 1]])}
    w = torch.ones(3)
    assert diversity(same, w) == 0.0
    assert diversity(apart, w) == 1.0
    assert diversity(half, w) == pytest.approx(1 - 1 / 3)
    assert diversity(half, torch.tensor([1.0, 2, 1])) == pytest.approx(1 - 2 / 4)


def test_importance_ranks_channels_by_class_activation():
    model, groups = _resnet()
    x = torch.randn(40, 1, 28, 28)
    y = torch.arange(40) % 4
    imp = kernel_importance(model, groups, x, y, 4, confidence=0.0)
    assert set(imp) == {g.name for g in groups}
    assert all(v.shape == (4, g.size) and (v >= 0).all() for g, v in zip(groups, imp.values(), strict=True))
    assert not torch.equal(imp[groups[-1].name][0], imp[groups[-1].name][1])


def test_cnnsplitter_split_then_patch_a_weak_model(tiny_parent_dirs, fmnist_train):
    """A tiny split with CNNSplitter in the shared format, then a weak model patched with one module."""
    from conftest import _balanced, train_tiny

    from hubmod.evaluation import evaluate
    from hubmod.hub import LocalHub
    from hubmod.patching import PatchedClassifier
    from hubmod.training import publish_parent

    LocalHub().push_folder("me/vgg", tiny_parent_dirs["vgg"], "parent")
    opts = {"train_per_class": 40, "val_per_class": 30, "fitness_per_class": 10, "population": 6, "generations": 3,
            "offspring": 2}
    report = hubmod.split("me/vgg", "fashion-mnist", method="cnnsplitter", options=opts, classes=["Shirt", "Bag"],
                          progress=False)
    assert [m.config.head["type"] for m in report.modules] == ["logit", "logit"]
    assert all(m.config.method["name"] == "cnnsplitter" for m in report.modules)
    assert all(0 < r.kept_kernels <= 1.0 for r in report.rows)
    assert report.method_metrics["generations_run"] >= 1
    shirt = hubmod.ClassModule.from_pretrained("me/vgg-shirt")
    assert shirt.config.calibration["own"]["max"] > shirt.config.calibration["own"]["min"]

    # a weak model: trained briefly on few images (one epoch on 100 per class)
    weak = train_tiny("hubmod_vgg", _balanced(fmnist_train, 100, seed=7), epochs=1.0,
                      model_args={"cfg": [4, "M", 8, "M"]}, seed=7)
    publish_parent(weak, "me/weak", "local")
    patched = hubmod.patch("me/weak", "me/vgg:Shirt", output="me/weak-patched", hub="local")
    assert patched.class_names[patched.target] == "Shirt"
    loaded = PatchedClassifier.from_pretrained("me/weak-patched")
    images = fmnist_train.images[:16]
    assert torch.equal(loaded(images), patched(images))
    # CNNSplitter's rule exactly: the weak model's softmax over its other classes, the module's min-max score
    from hubmod.parents import load_parent
    from hubmod.preprocess import preprocess

    weak_parent = load_parent("me/weak")
    with torch.no_grad():
        logits = weak_parent.model(preprocess(images, weak_parent.data_config))
    others = [c for c in range(10) if c != patched.target]
    expected = torch.empty_like(logits)
    expected[:, others] = logits[:, others].softmax(1)
    expected[:, patched.target] = patched.module.calibrated(patched.module.score(images), "minmax")
    assert torch.allclose(patched(images), expected, atol=1e-6)
    rep_before, rep_after = evaluate("me/weak", "fashion-mnist"), evaluate("me/weak-patched", "fashion-mnist")
    assert rep_after.n == rep_before.n == 10000
    # the point of patching: the weak model (near chance here) is a worse Shirt detector than the module
    assert rep_after.per_class["Shirt"]["f1"] > rep_before.per_class["Shirt"]["f1"]
    with pytest.raises(HubmodError, match="not the module's class"):
        hubmod.patch("me/weak", "me/vgg:Shirt", class_name="Bag", hub="local")
    with pytest.raises(HubmodError, match="patch strategy"):
        hubmod.patch("me/weak", "me/vgg:Shirt", strategy="magic", hub="local")
