"""GradSplitter's parts that need no training: which snapshot is kept, which is distilled next, the
top-up to a size budget, and what the search costs (hubmod.splitters.gradsplitter's selection and cost)."""

import torch

from hubmod.splitters.gradsplitter.cost import as_extracted, kernel_share, top_up
from hubmod.splitters.gradsplitter.selection import choose, next_distill_try, price


def test_distill_tries_go_from_fewest_kernels_and_skip_what_a_failed_try_rules_out():
    history = [{"val_accuracy": a, "cost": c} for a, c in [(0.90, 1.0), (0.89, 0.5), (0.885, 0.35), (0.86, 0.25),
                                                           (0.80, 0.2)]]
    # below the search threshold (0.85) is never tried; the fewest kernels above it go first
    assert next_distill_try(history, 0.85, 0.89) == 3
    # distillation won back 1 point at 25 %: 35 % (88.5 + 1 >= 89) is worth a try, and fewer kernels are ruled out
    history[3]["distilled_val_accuracy"] = 0.87
    assert next_distill_try(history, 0.85, 0.89) == 2
    # had it won back only 0.2 points, 35 % would miss too, so the next try is 50 %
    history[3]["distilled_val_accuracy"] = 0.862
    assert next_distill_try(history, 0.85, 0.89) == 1
    # when every snapshot is ruled out there is no try (the undistilled choice stands); cycle 0 is never distilled
    history[1]["distilled_val_accuracy"] = 0.88
    assert next_distill_try(history, 0.85, 0.89) is None


def test_a_size_budget_ranks_choices_at_or_below_it_by_accuracy():
    history = [{"val_accuracy": a, "cost": c} for a, c in [(0.90, 1.0), (0.89, 0.36), (0.87, 0.28), (0.88, 0.30)]]
    assert choose(history, 0.86) == 2  # without a budget the fewest kernels win
    assert choose(history, 0.86, budget=0.30) == 3  # at or below 30 % they cost the same: the more accurate wins
    assert choose(history, 0.86, budget=0.25) == 2
    assert next_distill_try(history, 0.85, 0.89) == 2
    assert next_distill_try(history, 0.85, 0.89, budget=0.30) == 3
    # a failed try at 30 % rules out the cheaper 28 % too
    history[3]["distilled_val_accuracy"] = 0.885
    assert next_distill_try(history, 0.85, 0.89, budget=0.30) == 1


def test_topping_up_readmits_the_channels_nearest_to_being_kept_within_the_budget():
    values = {"a": torch.tensor([[0.3, -0.01, -0.5, -0.2], [0.1, 0.2, -0.05, -0.9]]), "b": torch.tensor([[0.4, -0.3]])}

    def share(masks):  # the mean kept share of all channels, as a stand-in for a kernel share
        return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())

    assert share({k: (v > 0).float() for k, v in values.items()}) == 0.4
    same = top_up(values, share, 0.4)
    assert all(torch.equal(same[k], (v > 0).float()) for k, v in values.items())
    topped = top_up(values, share, 0.65)  # room for two more of the ten: -0.01 and -0.05, the nearest to 0
    assert share(topped) == 0.6
    assert torch.equal(topped["a"], torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]))
    assert torch.equal(topped["b"], torch.tensor([[1.0, 0.0]]))
    assert share(top_up(values, share, 1.0)) == 1.0


def test_with_no_snapshot_within_tolerance_the_most_accurate_is_kept():
    history = [{"val_accuracy": a, "cost": c} for a, c in [(0.80, 1.0), (0.84, 0.5), (0.82, 0.3)]]
    assert choose(history, 0.85) == 1
    assert price(history[2], 0.0) == (0.3, -0.82) and price(history[2], 0.4) == (0.4, -0.82)


def _group(name, size, convs):
    from hubmod.channels import ChannelGroup

    return ChannelGroup(name=name, size=size, out_modules=(name,),
                        conv_modules=tuple(f"{name}{i}" for i in range(convs)))


def test_kernel_share_weighs_each_group_by_its_kernels_and_extraction_keeps_one_channel_of_an_empty_group():
    groups = [_group("a", 4, 3), _group("b", 2, 5)]  # 12 + 10 kernels
    masks = {"a": torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),
             "b": torch.tensor([[1.0, 0.0], [1.0, 1.0]])}
    assert torch.allclose(kernel_share(groups)(masks), torch.tensor([(6 + 5) / 22, 10 / 22]))
    counted = as_extracted(masks)
    assert counted["a"][1].tolist() == [1.0, 0.0, 0.0, 0.0] and torch.equal(counted["b"], masks["b"])
    assert masks["a"][1].sum() == 0  # the masks themselves are left as they are


def test_penalty_both_presses_on_the_mean_of_the_kernel_and_mac_shares(tiny_parent_dirs, fmnist_train):
    from hubmod.channels import analyse_channels
    from hubmod.parents import load_parent
    from hubmod.preprocess import preprocess
    from hubmod.splitters import SplitContext, get_splitter
    from hubmod.splitters.gradsplitter.cost import mac_share
    from hubmod.splitters.gradsplitter.search import MaskSearch

    parent = load_parent(str(tiny_parent_dirs["vgg"]))
    model = parent.model.eval()
    example = torch.zeros(1, 1, 28, 28)
    groups, _ = analyse_channels(model, example)
    data = fmnist_train.subset(fmnist_train.stratified(4, torch.Generator().manual_seed(0)))
    x = preprocess(data.images, parent.data_config)
    ctx = SplitContext(model=model, groups=groups, num_classes=10, targets=[1, 7], train_x=x, train_y=data.labels,
                       val_x=x, val_y=data.labels, example_input=example, seed=0, progress=False,
                       parent_val_accuracy=0.5)
    gen = torch.Generator().manual_seed(1)
    masks = {g.name: (torch.rand(2, g.units, generator=gen) < 0.4).float() for g in groups}
    kernels, macs = kernel_share(groups)(masks), mac_share(model, groups, example)(masks)
    assert not torch.allclose(kernels, macs)  # the two measures differ, so their mean says something
    search = MaskSearch(get_splitter("gradsplitter", {"penalty": "both"}).config, ctx)
    assert torch.allclose(search.cost(masks), (kernels + macs) / 2)
    assert torch.allclose(MaskSearch(get_splitter("gradsplitter", {"penalty": "macs"}).config, ctx).cost(masks), macs)
