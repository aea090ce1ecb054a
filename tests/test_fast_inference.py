"""Modules run as inference copies (BatchNorm folded, channels-last) without changing their scores."""

import torch
import torch.nn as nn

from hubmod.fast_inference import FastBackbone, inference_copy


def test_fast_path_scores_equal_the_plain_backbone(vgg_split, fmnist_test):
    from hubmod.preprocess import preprocess

    module = vgg_split.modules[0]
    x = preprocess(fmnist_test.images[:64], module.data_config)
    with torch.no_grad():
        fast = module(x)
        plain = module.head(module.backbone(x))
    assert module.fast_backbone._net is not None  # the inference copy was used
    assert torch.allclose(fast, plain, atol=1e-4), (fast - plain).abs().max()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.fast_backbone._net.modules())  # folded
    assert "fast_backbone" not in "".join(module.state_dict())


def test_the_inference_copy_follows_weight_changes(vgg_split, fmnist_test):
    import copy

    from hubmod.preprocess import preprocess

    module = copy.deepcopy(vgg_split.modules[1])
    x = preprocess(fmnist_test.images[:16], module.data_config)
    with torch.no_grad():
        before = module(x)
        conv = next(m for m in module.backbone.modules() if isinstance(m, nn.Conv2d))
        conv.weight.mul_(-1.0)  # what an optimiser step or load_state_dict does: in place
        after = module(x)
        plain = module.head(module.backbone(x))
    assert not torch.allclose(before, after)
    assert torch.allclose(after, plain, atol=1e-4)


def test_gradients_flow_through_the_plain_backbone(vgg_split, fmnist_test):
    from hubmod.preprocess import preprocess

    module = vgg_split.modules[2]
    x = preprocess(fmnist_test.images[:8], module.data_config)
    p = next(module.backbone.parameters())
    p.requires_grad_(True)
    try:
        module(x).sum().backward()
        assert p.grad is not None and p.grad.abs().sum() > 0
    finally:
        p.requires_grad_(False)
        p.grad = None


class _Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, so nothing gets folded."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y.flatten(1) if y.sum() > 0 else -y.flatten(1)


def test_untraceable_backbones_still_get_a_correct_copy():
    torch.manual_seed(0)
    net = _Untraceable().eval()
    net.bn.running_mean.uniform_(-1, 1)
    x = torch.randn(3, 1, 8, 8)
    copy_ = inference_copy(net)
    with torch.no_grad():
        assert torch.allclose(copy_(x.contiguous(memory_format=torch.channels_last)), net(x), atol=1e-5)
        assert torch.allclose(FastBackbone()(net, x), net(x), atol=1e-5)


def test_modules_of_one_parent_run_their_shared_stem_once(vgg_split, fmnist_test):
    """vgg_split is distilled: its modules still keep the parent's first layer, and compose around it."""
    from hubmod.composed import ComposedClassifier
    from hubmod.preprocess import preprocess

    composed = ComposedClassifier(vgg_split.modules)
    images = fmnist_test.images[:64]
    with torch.no_grad():
        shared = composed(images)
        stems = composed._shared_stems
        assert len(stems._groups) == 1 and not stems._alone  # one stem for all modules
        group = stems._groups[0]
        widths = [len(module.fast_backbone.stem(module.backbone).rows()) for module in vgg_split.modules]
        assert len(group.members) == len(vgg_split.modules) and group.conv.out_channels <= 8  # the parent's width
        assert group.conv.out_channels >= max(widths)
        alone = torch.stack([m.calibrated(m(preprocess(images, m.data_config)), "none")
                             for m in vgg_split.modules], 1)
        composed.share_stems = False
        apart = composed(images)
    assert torch.allclose(shared, alone, atol=1e-4), (shared - alone).abs().max()
    assert torch.equal(apart, alone)


def test_stems_that_differ_run_apart(vgg_split, fmnist_test):
    import copy

    from hubmod.composed import ComposedClassifier

    modules = [copy.deepcopy(m) for m in vgg_split.modules[:3]]
    with torch.no_grad():
        for m in modules:  # unrelated first layers: nothing to share
            next(c for c in m.backbone.modules() if isinstance(c, nn.Conv2d)).weight.add_(torch.randn(()).item())
        composed = ComposedClassifier(modules)
        out = composed(fmnist_test.images[:16])
    assert composed._shared_stems._groups == [] and composed._shared_stems._alone == [0, 1, 2]
    assert out.shape == (16, 3)
