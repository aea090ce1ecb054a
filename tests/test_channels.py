import pytest
import timm
import torch

import hubmod.archs  # noqa: F401
from hubmod.channels import (
    GroupMasks,
    channel_groups,
    count_kernels,
    drop_classifier,
    extract,
    feature_channels,
    rebuild,
)
from hubmod.errors import InvalidRepoError

ARCHS = [("resnet18", {}), ("hubmod_vgg", {}), ("mobilenetv3_small_050", {})]


def _model(arch, args):
    torch.manual_seed(0)
    return timm.create_model(arch, num_classes=10, in_chans=1, **args).eval()


@pytest.mark.parametrize("arch,args", ARCHS)
def test_masked_forward_equals_physical_extraction(arch, args):
    model = _model(arch, args)
    example = torch.zeros(1, 1, 28, 28)
    groups = channel_groups(model, example)
    for p in model.parameters():
        p.requires_grad_(False)
    n = 3
    gen = torch.Generator().manual_seed(1)
    masks = {g.name: (torch.rand(n, g.size, generator=gen) < 0.35).float() for g in groups}
    masks[groups[1].name][2] = 0  # module 2 switches a whole group off
    x = torch.randn(5, 1, 28, 28, generator=gen)
    hooks = GroupMasks(model, groups)
    with torch.no_grad(), hooks.active():
        hooks.set(masks)
        masked = model(x.repeat(n, 1, 1, 1)).view(n, 5, -1)
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())
    for i in range(n):
        kept = {g.name: torch.nonzero(masks[g.name][i]).flatten().tolist() for g in groups}
        pruned, final, zeroed = extract(model, groups, kept, example)
        with torch.no_grad():
            out = pruned(x)
        assert torch.allclose(out, masked[i], atol=1e-5), (arch, i, (out - masked[i]).abs().max())
        assert count_kernels(pruned) < count_kernels(model)
        if i == 2:
            assert groups[1].name in zeroed
        fresh = _model(arch, args)
        rebuilt = rebuild(fresh, {g.name: g.size for g in groups}, final, example)
        rebuilt.load_state_dict(pruned.state_dict(), strict=True)
        with torch.no_grad():
            assert torch.equal(rebuilt(x), out)


@pytest.mark.parametrize("arch,args", ARCHS)
def test_pruned_features_are_the_kept_channels_of_the_feeding_group(arch, args):
    """A feature head reads exactly the masked parent's pooled features at the kept positions."""
    model = _model(arch, args)
    example = torch.zeros(1, 1, 28, 28)
    groups = channel_groups(model, example)
    for p in model.parameters():
        p.requires_grad_(False)
    feeding = [g for g in groups if g.feeds_classifier]
    width = model.get_classifier().in_features
    assert len(feeding) == 1 and feeding[0].size == width
    gen = torch.Generator().manual_seed(2)
    masks = {g.name: (torch.rand(1, g.size, generator=gen) < 0.4).float() for g in groups}
    x = torch.randn(4, 1, 28, 28, generator=gen)
    hooks = GroupMasks(model, groups)
    with torch.no_grad(), hooks.active():
        hooks.set(masks)
        masked = model.forward_head(model.forward_features(x), pre_logits=True)
    kept = {g.name: torch.nonzero(masks[g.name][0]).flatten().tolist() for g in groups}
    pruned, final, _ = extract(model, groups, kept, example)
    columns = feature_channels(groups, final, width)
    with torch.no_grad():
        features = drop_classifier(pruned)(x)
    assert features.shape == (4, len(columns))
    assert torch.allclose(features, masked[:, columns], atol=1e-5)
    off = sorted(set(range(width)) - set(columns))
    assert torch.count_nonzero(masked[:, off]) == 0


def test_residual_groups_couple_the_stream():
    groups = channel_groups(_model("resnet18", {}), torch.zeros(1, 1, 28, 28))
    stem = next(g for g in groups if g.name == "conv1")
    assert {"conv1", "layer1.0.conv2", "layer1.1.conv2"} <= set(stem.conv_modules)
    assert len(groups) == 12 and sum(len(g.conv_modules) > 1 for g in groups) == 4


def test_rebuild_refuses_a_foreign_architecture():
    groups = channel_groups(_model("resnet18", {}), torch.zeros(1, 1, 28, 28))
    with pytest.raises(InvalidRepoError, match="not in the parent architecture"):
        rebuild(_model("hubmod_vgg", {}), {g.name: g.size for g in groups}, {}, torch.zeros(1, 1, 28, 28))


def test_batchnorm_recalibration_matches_the_data():
    from hubmod.channels import recalibrate_batchnorm

    model = _model("hubmod_vgg", {"cfg": [8, "M", 16]})
    bn = model.features[1]
    before = bn.running_mean.clone()
    x = torch.randn(300, 1, 28, 28) * 3 + 1
    recalibrate_batchnorm(model, x, batch_size=100)  # equal batches: the cumulative mean is the mean
    assert not model.training and not torch.allclose(bn.running_mean, before)
    with torch.no_grad():
        feats = model.features[0](x)
    assert torch.allclose(bn.running_mean, feats.mean((0, 2, 3)), atol=1e-4)
    assert bn.momentum == 0.1


@pytest.mark.parametrize("arch,args", ARCHS)
def test_mac_share_of_masks_is_the_extracted_modules_share(arch, args):
    """GradSplitter's differentiable MAC measure agrees with counting the extracted modules' convolutions."""
    from hubmod.channels import conv_macs
    from hubmod.splitters.gradsplitter.cost import mac_share

    model = _model(arch, args)
    example = torch.zeros(1, 1, 28, 28)
    groups = channel_groups(model, example)
    gen = torch.Generator().manual_seed(2)
    masks = {g.name: (torch.rand(3, g.size, generator=gen) < 0.5).float() for g in groups}
    for m in masks.values():
        m[:, 0] = 1  # no group wholly off: extraction would keep one zeroed channel there
    masks = {name: m if i else torch.ones_like(m) for i, (name, m) in enumerate(masks.items())}
    share = mac_share(model, groups, example)(masks)
    parent_macs = sum(conv_macs(model, example).values())
    for i in range(3):
        kept = {g.name: torch.nonzero(masks[g.name][i]).flatten().tolist() for g in groups}
        pruned, _, _ = extract(model, groups, kept, example)
        expected = sum(conv_macs(pruned, example).values()) / parent_macs
        assert share[i].item() == pytest.approx(expected, rel=1e-6), (arch, i)
    assert 0 < share.max() < 1
    assert mac_share(model, groups, example)({n: torch.ones_like(m) for n, m in masks.items()}).tolist() == \
        pytest.approx([1.0] * 3)


def test_a_module_that_could_not_see_the_image_keeps_one_live_channel_per_empty_group():
    from hubmod.channels import constant_outputs, extract_seeing

    example, x = torch.zeros(1, 1, 28, 28), torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    def outputs(net):
        with torch.no_grad():
            return net(x)

    vgg = _model("hubmod_vgg", {})
    groups = channel_groups(vgg, example)
    kept = {g.name: list(range(g.size)) for g in groups}
    kept[groups[2].name] = []  # a plain chain: nothing reaches the head
    blind, _, zeroed = extract(vgg, groups, kept, example)
    assert zeroed == [groups[2].name] and constant_outputs(outputs(blind))
    net, final, zeroed, revived = extract_seeing(vgg, groups, kept, example, outputs)
    assert revived and not zeroed and len(final[groups[2].name]) == 1
    assert not constant_outputs(outputs(net))

    resnet = _model("resnet18", {})
    groups = channel_groups(resnet, example)
    inner = next(g for g in groups if g.name.endswith("layer2.0.conv1"))  # inside one residual branch
    kept = {g.name: list(range(g.size)) for g in groups} | {inner.name: []}
    net, final, zeroed, revived = extract_seeing(resnet, groups, kept, example, outputs)
    assert not revived and zeroed == [inner.name]  # the skip path still sees: the branch stays silenced
    assert not constant_outputs(outputs(net))
    assert not constant_outputs(torch.ones(1, 3)) and constant_outputs(torch.ones(4, 3))
