"""Splitting beyond one machine.

* Data-parallel GradSplitter: two CPU processes (gloo, started by accelerate launch) give the split
  one process gives for the same seed, within float tolerance; only the first process publishes.
* A class subset trains only its own modules, so a few modules of a many-class parent cost a few,
  and GradSplitter draws images of those classes and a sample of the others, not of every class.
"""

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY_SPLIT

from hubmod import ClassModule, HubmodError
from hubmod.hub import LocalHub
from hubmod.parallel import DataParallel

CLASSES = ["Trouser", "Bag", "Sneaker"]


def test_shards_cover_a_batch_once():
    idx = torch.randperm(37)
    parts = [DataParallel(rank=r, world=3).shard(idx) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == sorted(idx.tolist())
    assert DataParallel().shard(idx) is idx
    assert [DataParallel(rank=0, world=2).owner(i) for i in range(4)] == [0, 1, 0, 1]


def _sum_grads_in(rank: int, rendezvous: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    lin = torch.nn.Linear(2, 2)
    for i, p in enumerate([conv.weight, conv.bias, lin.weight]):  # lin.bias: no gradient on either process
        p.grad = torch.arange(p.numel(), dtype=torch.float32).view(p.shape) * (rank + 1) + i
    conv.weight.grad = conv.weight.grad.contiguous(memory_format=torch.channels_last)
    DataParallel(rank=rank, world=2).sum_grads([conv.weight, conv.bias, lin.weight, lin.bias])
    if rank == 0:
        torch.save([conv.weight.grad, conv.bias.grad, lin.weight.grad, lin.bias.grad], out)
    dist.destroy_process_group()


def test_gradients_are_summed_over_processes_channels_last_ones_too(tmp_path):
    import torch.multiprocessing as mp

    context = mp.spawn(_sum_grads_in, args=(str(tmp_path / "rendezvous"), str(tmp_path / "grads.pt")), nprocs=2,
                       join=False)
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two gloo processes did not finish within 300 s")
    grads = torch.load(tmp_path / "grads.pt")
    shapes = [(4, 3, 3, 3), (4,), (2, 2)]
    for i, (g, shape) in enumerate(zip(grads, shapes, strict=False)):
        assert torch.equal(g, torch.arange(g.numel(), dtype=torch.float32).view(shape) * 3 + 2 * i)
    assert grads[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(grads[3], torch.zeros(2))


def test_a_class_subset_trains_only_its_modules(tiny_parent_dirs):
    from hubmod.channels import channel_groups
    from hubmod.parents import load_parent
    from hubmod.splitters import SplitContext, get_splitter

    model = load_parent(str(tiny_parent_dirs["vgg"])).model.eval()
    example = torch.zeros(1, 1, 28, 28)
    groups = channel_groups(model, example)
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 28, 28, generator=gen), torch.arange(40) % 10
    seen: list[int] = []
    forward = model.forward_features
    model.forward_features = lambda inputs: (seen.append(len(inputs)), forward(inputs))[1]
    options = {**TINY_SPLIT, "max_cycles": 1, "batch_size": 8}
    ctx = SplitContext(model, groups, 10, x, y, x, y, targets=[1, 8], example_input=example, progress=False)
    outcome = get_splitter("gradsplitter", options).split(ctx)
    assert [s.class_index for s in outcome.slices] == [1, 8]
    # each training batch ran once per requested module (2 x 8 images), not once per class (10 x 8)
    assert 2 * 8 in seen and 10 * 8 not in seen


def _split_args(prefix: str) -> list[str]:
    args = ["split", "dp/vgg", "--dataset", "fashion-mnist", "--classes", ",".join(CLASSES), "--repo-prefix",
            prefix, "--json", "--no-progress", "--seed", "3"]
    # The search is what runs data-parallel exactly; distillation normalises each process's share
    # of a batch with its own BatchNorm statistics (as DDP without SyncBatchNorm does), so it is off here.
    for k, v in {**TINY_SPLIT, "distill_epochs": 0}.items():
        args += ["-p", f"{k}={v}"]
    return args


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def _kept(module: ClassModule) -> set[tuple[str, int]]:
    return {(g["name"], i) for g in module.config.channels["groups"] for i in g["kept"]}


@pytest.mark.slow
def test_two_processes_split_like_one(tiny_parent_dirs):
    hub = LocalHub()
    hub.push_folder("dp/vgg", tiny_parent_dirs["vgg"], "parent")
    one = subprocess.run([sys.executable, "-m", "hubmod.cli", *_split_args("one/vgg")], capture_output=True,
                         text=True, env=_env(), timeout=900)
    assert one.returncode == 0, one.stderr[-3000:]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
              "-m", "hubmod.cli"]
    two = subprocess.run([*launch, *_split_args("two/vgg")], capture_output=True, text=True, env=_env(), timeout=900)
    assert two.returncode == 0, two.stderr[-3000:]

    single, double = json.loads(one.stdout), json.loads(two.stdout)  # one JSON report: one process printed
    assert single["method_metrics"]["processes"] == 1
    assert double["method_metrics"]["processes"] == 2
    assert double["composed_accuracy"] == pytest.approx(single["composed_accuracy"], abs=0.03)
    for cls in CLASSES:
        slug = cls.lower()
        a, b = ClassModule.from_pretrained(f"one/vgg-{slug}"), ClassModule.from_pretrained(f"two/vgg-{slug}")
        ka, kb = _kept(a), _kept(b)
        assert len(ka & kb) / len(ka | kb) >= 0.9, f"{cls}: kept channels differ"
        if ka == kb:  # same channels: same weights and head up to float rounding
            for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
                assert torch.allclose(wa, wb, atol=1e-3), f"{cls}: {name} differs"


def test_a_method_without_data_parallelism_refuses_a_launched_group(tiny_parent_dirs):
    env = dict(_env(), WORLD_SIZE="2", RANK="0")
    run = subprocess.run([sys.executable, "-m", "hubmod.cli", "split", str(tiny_parent_dirs["vgg"]), "--dataset",
                          "fashion-mnist", "--method", "cnnsplitter", "--no-publish"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--method cnnsplitter runs in one process" in lines[0], run.stderr
    assert "Traceback" not in run.stderr


@pytest.fixture(scope="module")
def forty_classes(fmnist_train, tmp_path_factory):
    """Real Fashion-MNIST images under 40 synthetic labels (each class cut in four at random), and a
    tiny VGG trained on them for one epoch: a many-class parent whose accuracy no test reads."""
    from conftest import train_tiny
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    from hubmod.data import LabeledImages
    from hubmod.training import save_parent

    gen = torch.Generator().manual_seed(0)
    labels = fmnist_train.labels * 4 + torch.randint(0, 4, fmnist_train.labels.shape, generator=gen)
    names = [f"c{i:02d}" for i in range(40)]
    many = LabeledImages(fmnist_train.images, labels, names, "forty", "train")
    train, test = many.stratified(80, gen), many.stratified(10, torch.Generator().manual_seed(1))
    root = tmp_path_factory.mktemp("forty")
    feats = Features({"image": Image(), "label": ClassLabel(names=names)})
    DatasetDict({split: Dataset.from_dict({"image": [im[0].numpy() for im in many.images[idx]],
                                           "label": many.labels[idx].tolist()}, features=feats)
                 for split, idx in (("train", train), ("test", test))}).save_to_disk(str(root / "data"))
    parent = train_tiny("hubmod_vgg", many.subset(train), epochs=1.0, model_args={"cfg": [8, "M", 16, "M"]})
    save_parent(parent, root / "parent", dataset_id=None)
    return root / "parent", root / "data"


def test_a_few_classes_of_a_many_class_parent_draw_a_few_classes_images(forty_classes):
    from hubmod.parents import load_parent
    from hubmod.split_data import OTHER_CLASSES_DRAWN, ClassPlan, class_plan, open_split_data

    parent_dir, data_dir = forty_classes
    parent = load_parent(str(parent_dir))
    assert class_plan(10, [1, 8], samples_others=True) == ClassPlan()  # ten classes: drawn whole, as ever
    assert class_plan(40, [3], samples_others=False) == ClassPlan()  # a method that needs every class
    for targets in ([3], [0, 5, 7], list(range(12))):
        plan = class_plan(40, targets, samples_others=True)
        others = max(len(targets), OTHER_CLASSES_DRAWN)
        assert plan == ClassPlan(targets, others)
        data = open_split_data(str(data_dir), parent, 20, 15, seed=0).draw(plan)
        for y, per_class in ((data.train_y, 20), (data.val_y, 15)):
            own = torch.isin(y, torch.tensor(targets))
            assert torch.bincount(y[own], minlength=40)[targets].tolist() == [per_class] * len(targets)
            assert int((~own).sum()) == per_class * others  # the others: a sample, not 40 - k classes' worth
            assert len(set(y[~own].tolist())) > 1
    whole = open_split_data(str(data_dir), parent, 20, 15, seed=0).draw()
    assert torch.bincount(whole.train_y, minlength=40).tolist() == [20] * 40


def test_gradsplitter_splits_one_class_of_forty_from_a_sample_of_the_others(forty_classes):
    import hubmod

    parent_dir, data_dir = forty_classes
    options = {**TINY_SPLIT, "max_cycles": 1, "distill_epochs": 0}
    report = hubmod.split(str(parent_dir), str(data_dir), classes=["c05"], options=options, seed=0, publish=False,
                          progress=False)
    (module,) = report.modules
    assert module.class_name == "c05" and module.config.class_index == 5
    assert module.config.dataset["train_samples"] == TINY_SPLIT["train_per_class"] * (1 + 9)
    assert 0.0 <= report.composed_accuracy <= 1.0 and report.n_test == 10


def test_the_refit_baseline_refits_only_the_classes_a_split_drew(tiny_parent_dirs):
    from hubmod.baselines import refit_classifier
    from hubmod.metrics import pre_logits
    from hubmod.parents import load_parent

    model = load_parent(str(tiny_parent_dirs["vgg"])).model.eval()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 28, 28, generator=gen), torch.tensor([2, 5, 7, 2] * 10)
    clf = refit_classifier(model, x, y, 10)
    logits = clf(pre_logits(model, x))
    assert logits.shape == (40, 10)
    assert torch.isinf(logits[:, [0, 1, 3, 4, 6, 8, 9]]).all() and torch.isfinite(logits[:, [2, 5, 7]]).all()
    assert set(logits.argmax(1).tolist()) <= {2, 5, 7}
    whole = refit_classifier(model, x, torch.arange(40) % 10, 10)(pre_logits(model, x))
    assert torch.isfinite(whole).all()


def test_gradsplitter_searches_many_classes_in_groups():
    from hubmod.splitters import get_splitter

    assert get_splitter("gradsplitter", {"classes_per_search": 3}).search_groups(list(range(8))) == [
        [0, 1, 2], [3, 4, 5], [6, 7]]
    assert get_splitter("gradsplitter", None).search_groups(list(range(10))) == [list(range(10))]  # ten: one search
    assert len(get_splitter("gradsplitter", None).search_groups(list(range(25)))) == 3
    assert get_splitter("gradsplitter", {"classes_per_search": 0}).search_groups(list(range(40))) == [list(range(40))]
    assert get_splitter("cnnsplitter", None).search_groups(list(range(40))) == [list(range(40))]  # needs every class
    with pytest.raises(HubmodError, match="classes_per_search"):
        get_splitter("gradsplitter", {"classes_per_search": -1})


def test_a_split_in_groups_draws_and_searches_each_group_then_composes_all(forty_classes):
    import hubmod

    parent_dir, data_dir = forty_classes
    per = 10  # training images per class; each group draws its own classes' budgets and nine others' worth
    options = {**TINY_SPLIT, "train_per_class": per, "val_per_class": 10, "max_cycles": 1, "distill_epochs": 0,
               "classes_per_search": 2}
    report = hubmod.split(str(parent_dir), str(data_dir), classes=["c30", "c05", "c06"], options=options, seed=0,
                          publish=False, progress=False)
    assert [m.class_name for m in report.modules] == ["c05", "c06", "c30"]
    assert [s["classes"] for s in report.method_metrics["searches"]] == [[5, 6], [30]]
    assert [m.config.dataset["train_samples"] for m in report.modules] == [per * (2 + 9)] * 2 + [per * (1 + 9)]
    assert all(m.config.calibration for m in report.modules)
    assert report.n_test == 30 and 0.0 <= report.composed_accuracy <= 1.0
