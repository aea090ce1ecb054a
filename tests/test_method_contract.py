"""Every registered splitting method keeps the same contract with the pipeline, whatever it does inside.

Run on the tiny VGG parent with each method's smallest budget: a method returns one slice per
requested class and no other, in class order; every kept index names a channel of its group and keeps
whole units (grouped convolutions); the head spec it returns builds; and the same seed gives the same
result. Option errors are covered for every method in test_method_options.py.
"""

import pytest
import torch

from hubmod.channels import analyse_channels
from hubmod.heads import build_head
from hubmod.parents import load_parent
from hubmod.preprocess import preprocess
from hubmod.splitters import METHODS, SplitContext, get_splitter

SMALLEST = {
    "gradsplitter": {"max_cycles": 1, "warmup_epochs": 1, "refit_epochs": 1, "batch_size": 32, "distill_epochs": 0},
    "cnnsplitter": {"fitness_per_class": 5, "population": 4, "generations": 1, "offspring": 2,
                    "sensitivity_steps": 2},
    "activation": {},
}
TARGETS = [1, 7]  # Trouser, Sneaker


def test_every_registered_method_has_a_smallest_budget_here():
    assert set(SMALLEST) == set(METHODS)


@pytest.fixture(scope="module")
def tiny_problem(tiny_parent_dirs, fmnist_train):
    parent = load_parent(str(tiny_parent_dirs["vgg"]))
    model = parent.model.eval()
    example = torch.zeros(1, *parent.data_config.input_size)
    groups, _ = analyse_channels(model, example)
    for p in model.parameters():
        p.requires_grad_(False)
    data = fmnist_train.subset(fmnist_train.stratified(12, torch.Generator().manual_seed(0)))
    x, y = preprocess(data.images, parent.data_config), data.labels
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    return model, groups, example, x, y, accuracy


def _split(name: str, problem, seed: int):
    model, groups, example, x, y, accuracy = problem
    ctx = SplitContext(model=model, groups=groups, num_classes=10, targets=TARGETS, train_x=x, train_y=y, val_x=x,
                       val_y=y, example_input=example, seed=seed, progress=False, parent_val_accuracy=accuracy)
    return get_splitter(name, SMALLEST[name]).split(ctx)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_method_returns_valid_slices_for_the_requested_classes_only_and_repeats_itself(name, tiny_problem):
    groups = tiny_problem[1]
    first, again = _split(name, tiny_problem, seed=3), _split(name, tiny_problem, seed=3)
    assert [s.class_index for s in first.slices] == TARGETS
    for s in first.slices:
        assert set(s.kept) <= {g.name for g in groups}
        for g in groups:
            kept = s.kept.get(g.name, list(range(g.size)))
            assert kept and all(0 <= i < g.size for i in kept) and len(set(kept)) == len(kept), g.name
            assert g.whole_units(kept), g.name
        assert isinstance(build_head(s.head, s.head["in_features"]), torch.nn.Module)
    for a, b in zip(first.slices, again.slices, strict=True):
        assert a.kept == b.kept and a.head == b.head
        assert a.head_state.keys() == b.head_state.keys()
        assert all(torch.equal(a.head_state[k], b.head_state[k]) for k in a.head_state)
