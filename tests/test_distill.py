"""Distilling the parent into extracted modules (hubmod.distillation) and its use in GradSplitter."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_SPLIT

from hubmod.channels import channel_groups, drop_classifier, extract, feature_channels, zeroed_tensors
from hubmod.distillation import (
    DistillSettings,
    Student,
    _batches,
    _loss,
    composite,
    distill,
)
from hubmod.heads import FeatureMLPHead
from hubmod.hub import get_hub, open_ref
from hubmod.parallel import DataParallel
from hubmod.parents import parent_from_snapshot
from hubmod.preprocess import preprocess
from hubmod.refs import parse_source


def test_composite_puts_students_in_their_columns():
    teacher = torch.arange(12.0).view(3, 4)
    raw = torch.tensor([[10.0, 11.0, 12.0], [20.0, 21.0, 22.0]])  # 2 students, 3 images
    out = composite(raw, teacher, [1, 3])
    assert torch.equal(out[:, 1], raw[0]) and torch.equal(out[:, 3], raw[1])
    assert torch.equal(out[:, [0, 2]], teacher[:, [0, 2]])
    assert torch.equal(composite(torch.zeros(4, 3), teacher, [0, 1, 2, 3]), torch.zeros(3, 4))


def test_a_label_weight_mixes_in_cross_entropy_against_the_labels():
    torch.manual_seed(0)
    teacher, raw, labels = torch.randn(6, 4), torch.randn(2, 6), torch.tensor([0, 1, 2, 3, 1, 0])
    settings = DistillSettings(epochs=1, lr=1e-3, temperature=2.0, batch_size=6)
    soft = _loss(raw, teacher, [1, 3], labels, settings, 6)
    logits = composite(raw, teacher, [1, 3])
    hard = F.cross_entropy(logits, labels)
    assert torch.allclose(_loss(raw, teacher, [1, 3], None, settings, 6), soft)  # weight 0: labels unused
    settings.label_weight = 0.25
    assert torch.allclose(_loss(raw, teacher, [1, 3], labels, settings, 6), 0.75 * soft + 0.25 * hard)
    assert torch.allclose(_loss(raw[:, :3], teacher[:3], [1, 3], labels[:3], settings, 6)
                          + _loss(raw[:, 3:], teacher[3:], [1, 3], labels[3:], settings, 6),
                          0.75 * soft + 0.25 * hard)  # shards of a batch add up to the batch's loss


def test_only_the_first_augment_epochs_are_augmented_and_plain_batches_say_which_images():
    """The composition sees plain images; ``augment_epochs`` first epochs flip and shift, without changing the
    batches, and a plain batch names its images so the parent's answers can be looked up."""
    x, labels = torch.rand(40, 1, 8, 8), torch.arange(40) % 4

    def epochs(n: int, augmented: int) -> list[bool]:
        settings = DistillSettings(epochs=n, lr=1e-3, temperature=2.0, batch_size=10, augment_epochs=augmented)
        batches = list(_batches(x, labels, settings, torch.Generator().manual_seed(0), DataParallel()))
        assert len(batches) == 4 * n
        assert all(size == 10 for _, _, size, _ in batches)
        for xb, yb, _, which in batches:
            if which is not None:
                assert torch.equal(xb, x[which]) and torch.equal(yb, labels[which])
        is_plain = [all(any(torch.equal(img, x[i]) and y == labels[i] for i in range(40))
                        for img, y in zip(xb, yb, strict=True)) for xb, yb, _, _ in batches]
        assert is_plain == [which is not None for _, _, _, which in batches]
        return [all(is_plain[4 * e:4 * e + 4]) for e in range(n)]

    assert epochs(3, 0) == [True, True, True]
    assert epochs(3, 1) == [False, True, True]
    assert epochs(3, 3) == [False, False, False]
    assert epochs(1, 5) == [False]
    # the same seed draws the same images in the same order, plain or augmented
    ys = [[yb for _, yb, _, _ in _batches(x, labels, DistillSettings(epochs=2, lr=1e-3, temperature=2.0,
                                                                     batch_size=10, augment_epochs=a),
                                          torch.Generator().manual_seed(0), DataParallel())] for a in (0, 2)]
    assert all(torch.equal(a, b) for a, b in zip(*ys, strict=True))


def _pruned_students(tiny_parent_dirs, fmnist_train, classes):
    parent = parent_from_snapshot(open_ref(parse_source(str(tiny_parent_dirs["vgg"])), get_hub(None)))
    model = parent.model.eval()
    example = torch.zeros(1, *parent.data_config.input_size)
    groups = channel_groups(model, example)
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(3)
    width = model.get_classifier().in_features
    students = []
    for i, c in enumerate(classes):
        kept = {g.name: torch.nonzero(torch.rand(g.size, generator=gen) < 0.4).flatten().tolist() for g in groups}
        if i == 0:
            kept[groups[1].name] = []  # a whole group off: kept as one zeroed channel
        net, kept, zeroed = extract(model, groups, kept, example)
        columns = feature_channels(groups, kept, width)
        head = FeatureMLPHead(len(columns), 4)
        with torch.no_grad():  # start as the parent's logit of the class, read from the kept features:
            logit_w, logit_b = model.get_classifier().weight[c, columns], model.get_classifier().bias[c]
            head.fc1.weight[:2] = torch.stack([logit_w, -logit_w])  # relu(l) - relu(-l) = l, and neither
            head.fc1.bias[:2] = torch.stack([logit_b, -logit_b])  # unit is dead for images of other classes
            head.fc2.weight[0, :2] = torch.tensor([1.0, -1.0])
            head.fc2.weight[0, 2:] = 0.0
            head.fc2.bias.zero_()
        students.append(Student(net, head, lambda n, x: drop_classifier(n)(x),
                                zeroed_tensors(net, groups, zeroed, kept)))
    idx = fmnist_train.stratified(150, torch.Generator().manual_seed(4))
    x = preprocess(fmnist_train.images[idx], parent.data_config)
    model.labels = fmnist_train.labels[idx]  # for the tests that distil with labels
    return model, students, x, groups


def _kl(model, students, classes, x):
    with torch.no_grad():
        teacher = model(x)
        raw = torch.stack([s(x) for s in students])
        return float(F.kl_div(F.log_softmax(composite(raw, teacher, classes), 1), F.log_softmax(teacher, 1),
                              log_target=True, reduction="batchmean"))


@pytest.mark.parametrize("augmented", [0, pytest.param(4, marks=pytest.mark.slow)])
def test_distillation_brings_pruned_modules_closer_to_the_parent(tiny_parent_dirs, fmnist_train, augmented):
    """What the optimiser guarantees, and what distillation adds over fitting the heads alone.

    The joint phase's loss falls from its first epoch to its last; and on held-out images the
    distilled modules are closer to the parent (KL of the composition) than a control that gets the
    same head fits and BatchNorm re-estimation without the joint phase. Margins: over two parents
    trained with different seeds, two seeds each, and one or two threads, the last epoch's loss was
    at most 0.83 of the first and the held-out KL at most 0.73 of the control's; the bounds below
    (0.95 and 0.9) leave about three times that room.
    """
    classes = [0, 3, 6]  # a class subset: the other classes keep the parent's logits
    kl, losses = {}, {}
    for epochs in (0, 4):
        torch.manual_seed(0)  # the heads' spare units start at random
        model, students, x, groups = _pruned_students(tiny_parent_dirs, fmnist_train, classes)
        train, held_out = x[:1200], x[1200:]
        assert students[0].frozen_zero, "the emptied group should be kept as one zeroed channel"
        settings = DistillSettings(epochs=epochs, lr=1e-3, temperature=2.0, batch_size=64, head_epochs=10,
                                   augment_epochs=augmented)
        losses[epochs] = distill(model, students, classes, train, settings, torch.Generator().manual_seed(0),
                                 DataParallel())
        kl[epochs] = _kl(model, students, classes, held_out)
        assert all(float(t.abs().sum()) == 0.0 for t in students[0].frozen_zero)
        assert not any(p.requires_grad for s in students for p in s.parameters())
        assert not students[0].backbone.training
        # trained channels-last, handed back in the standard layout (what extraction and safetensors expect)
        assert all(p.is_contiguous() for s in students for p in s.backbone.parameters())
    assert losses[0] == [] and len(losses[4]) == 4
    assert losses[4][-1] < 0.95 * losses[4][0], losses[4]
    assert kl[4] < 0.9 * kl[0], kl


def test_the_parent_is_asked_about_augmented_images_only(tiny_parent_dirs, fmnist_train):
    """Its answers on the plain images are computed once and looked up; augmented batches are new to it."""
    calls = {}
    for augmented in (0, 1):
        model, students, x, _ = _pruned_students(tiny_parent_dirs, fmnist_train, [0, 5])
        sizes = []
        handle = model.register_forward_hook(lambda m, i, o, sizes=sizes: sizes.append(len(i[0])))
        settings = DistillSettings(epochs=2, lr=1e-3, temperature=2.0, batch_size=100, head_epochs=1,
                                   augment_epochs=augmented)
        distill(model, students, [0, 5], x[:300], settings, torch.Generator().manual_seed(0), DataParallel())
        handle.remove()
        calls[augmented] = sizes
    assert calls == {0: [300], 1: [300, 100, 100, 100]}


def test_at_label_weight_one_the_labels_alone_teach(tiny_parent_dirs, fmnist_train):
    """All classes split, weight 1: the parent's outputs no longer matter; weight 0: only they do."""
    import copy

    classes = list(range(10))
    settings = DistillSettings(epochs=1, lr=1e-3, temperature=2.0, batch_size=64, head_epochs=2)
    outputs = {}
    for weight in (0.0, 1.0):
        for teacher in ("parent", "other"):
            torch.manual_seed(0)
            model, students, x, _ = _pruned_students(tiny_parent_dirs, fmnist_train, classes)
            if teacher == "other":
                model = copy.deepcopy(model)
                model.get_classifier().weight.data = model.get_classifier().weight.data.roll(1, 0)
            settings.label_weight = weight
            distill(model, students, classes, x[:400], settings, torch.Generator().manual_seed(0), DataParallel(),
                    labels=model.labels[:400])
            with torch.no_grad():
                outputs[weight, teacher] = torch.stack([s(x[400:]) for s in students])
    assert torch.allclose(outputs[1.0, "parent"], outputs[1.0, "other"], atol=1e-5)
    assert not torch.allclose(outputs[0.0, "parent"], outputs[0.0, "other"], atol=1e-2)


def test_the_last_head_fit_lowers_the_loss_on_the_final_features(tiny_parent_dirs, fmnist_train):
    """The joint phase leaves heads fit to batch statistics, which are re-estimated afterwards; the heads,
    fit once more on the final features, must fit them better than the heads the joint phase left."""
    classes = [2, 5, 8]
    losses = {}
    for refit in (False, True):
        torch.manual_seed(0)
        model, students, x, _ = _pruned_students(tiny_parent_dirs, fmnist_train, classes)
        settings = DistillSettings(epochs=1, lr=1e-3, temperature=2.0, batch_size=64, head_epochs=3,
                                   label_weight=0.5, refit_heads=refit)
        distill(model, students, classes, x[:600], settings, torch.Generator().manual_seed(0), DataParallel(),
                labels=model.labels[:600])
        assert not any(p.requires_grad for s in students for p in s.parameters())  # handed back frozen
        with torch.no_grad():
            raw = torch.stack([s(x[:600]) for s in students])
            losses[refit] = float(_loss(raw, model(x[:600]), classes, model.labels[:600], settings, 600))
    assert losses[True] < losses[False], losses


SOME_CLASSES = ["Pullover", "Sandal", "Bag"]  # what is tested does not depend on the number of classes


@pytest.fixture(scope="module")
def undistilled_split(tiny_parent_dirs):
    import hubmod

    opts = {**TINY_SPLIT, "distill_epochs": 0}
    return hubmod.split(f"{tiny_parent_dirs['vgg']}", "fashion-mnist", options=opts, seed=0, publish=False,
                        progress=False, classes=SOME_CLASSES)


def test_without_distillation_modules_keep_the_parents_weights(undistilled_split, tiny_parent_dirs):
    parent = parent_from_snapshot(open_ref(parse_source(str(tiny_parent_dirs["vgg"])), get_hub(None)))
    assert undistilled_split.method_metrics["distilled"] is False
    first = parent.model.features[0].weight
    for module in undistilled_split.modules:
        conv = module.backbone.features[0].weight
        rows = [r for r in range(first.shape[0]) if any(torch.equal(conv[i], first[r]) for i in range(len(conv)))]
        assert len(rows) == conv.shape[0], "an undistilled module's first conv is a slice of the parent's"


def test_distilled_modules_keep_the_parents_stem(vgg_split, tiny_parent_dirs):
    """share_stem (the default): distillation trains everything but the first conv and its BatchNorm."""
    parent = parent_from_snapshot(open_ref(parse_source(str(tiny_parent_dirs["vgg"])), get_hub(None)))
    assert vgg_split.method_metrics["distilled"] is True
    conv, bn = parent.model.features[0], parent.model.features[1]
    for module in vgg_split.modules:
        mconv, mbn = module.backbone.features[0], module.backbone.features[1]
        rows = [next(r for r in range(len(conv.weight)) if torch.equal(w, conv.weight[r])) for w in mconv.weight]
        for name in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(mbn, name), getattr(bn, name)[rows]), name


def test_a_distilled_choice_is_within_tolerance_on_validation(vgg_split):
    m = vgg_split.method_metrics
    tried = [h for h in m["history"] if "distilled_val_accuracy" in h]
    assert tried, "the split should have distilled at least one mask choice"
    threshold = m["parent_val_accuracy"] - TINY_SPLIT["tolerance"] / 100
    if m["distilled"]:
        assert m["val_accuracy"] >= threshold
        chosen = next(h for h in m["history"] if h["cycle"] == m["chosen_cycle"])
        assert chosen["distilled_val_accuracy"] == m["val_accuracy"]
    else:
        assert all(h["distilled_val_accuracy"] < threshold for h in tried)


def test_a_split_below_its_size_budget_is_topped_up_to_it(tiny_parent_dirs):
    import hubmod

    # every choice within tolerance, so the budget rule (the most accurate at or below it) decides
    opts = {**TINY_SPLIT, "distill_epochs": 0, "tolerance": 100.0}
    base = hubmod.split(f"{tiny_parent_dirs['vgg']}", "fashion-mnist", seed=0, publish=False, progress=False,
                        options=opts, classes=SOME_CLASSES)
    searched = base.method_metrics["history"]
    last = searched[-1]
    assert last["retention"] < 0.95, "the tiny search should prune something"
    budget = (last["retention"] + 1) / 2
    result = hubmod.split(f"{tiny_parent_dirs['vgg']}", "fashion-mnist", seed=0, publish=False, progress=False,
                          options={**opts, "size_budget": budget}, classes=SOME_CLASSES)
    history = result.method_metrics["history"]
    assert [h["retention"] for h in history[:-1]] == [h["retention"] for h in searched]
    topped = history[-1]
    assert topped["topped_up"] and topped["cycle"] == last["cycle"]
    assert last["retention"] < topped["retention"] <= budget
    within = [h for h in history if h["retention"] <= budget]
    best = max(within, key=lambda h: h["val_accuracy"])
    assert result.method_metrics["mean_retention"] == pytest.approx(best["retention"])
    assert result.method_metrics["chosen_topped_up"] == bool(best.get("topped_up"))
    assert result.mean_kept_kernels <= budget  # as the extracted modules count it, not only as the masks do
