"""Load: a classifier composed from 100 module repos composes, publishes, loads and evaluates in bounded memory.

Fashion-MNIST has ten classes, so the 100 classes are ten variants of each (the image rotated by a
multiple of 90 degrees, inverted, or with halved contrast): a real 100-way problem on real images.
"""

import json
import resource

import pytest
import torch
from conftest import TINY_SPLIT, _balanced, train_tiny

import hubmod
from hubmod.data import LabeledImages

VARIANTS = [(k, inv, half) for k in range(4) for inv in (False, True) for half in (False,)] + [(0, False, True),
                                                                                            (2, False, True)]


def _hundred_classes(data: LabeledImages) -> LabeledImages:
    images, labels = [], []
    for v, (k, inv, half) in enumerate(VARIANTS):
        x = torch.rot90(data.images, k, dims=(2, 3))
        x = 255 - x if inv else x
        x = x // 2 if half else x
        images.append(x)
        labels.append(data.labels + 10 * v)
    names = [f"{c} v{v}" for v in range(len(VARIANTS)) for c in data.class_names]
    return LabeledImages(torch.cat(images), torch.cat(labels), names, "fashion-mnist x10 variants", data.split)


@pytest.mark.slow
def test_compose_and_evaluate_one_hundred_module_repos(fmnist_train, fmnist_test, tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    from hubmod.evaluation import evaluate
    from hubmod.training import publish_parent

    train = _hundred_classes(_balanced(fmnist_train, 60, seed=5))
    test = _hundred_classes(_balanced(fmnist_test, 10, seed=6))
    assert len(train.class_names) == 100
    feats = Features({"image": Image(), "label": ClassLabel(names=train.class_names)})
    DatasetDict({s: Dataset.from_dict({"image": [im[0].numpy() for im in d.images], "label": d.labels.tolist()},
                                      features=feats) for s, d in (("train", train), ("test", test))}
                ).save_to_disk(str(tmp_path / "data"))
    data = str(tmp_path / "data")

    parent = train_tiny("hubmod_vgg", train, epochs=4.0, model_args={"cfg": [16, "M", 32, "M", 64, "M"]})
    publish_parent(parent, "load/vgg100", "local")
    opts = {**TINY_SPLIT, "train_per_class": 20, "val_per_class": 10, "distill_epochs": 0}  # a load test
    report = hubmod.split("load/vgg100", data, options=opts, progress=False)
    assert len(report.rows) == 100

    refs = [f"load/vgg100:{name}" for name in train.class_names]
    composed = hubmod.compose(refs, output="load/composed100")
    assert len(composed.class_names) == 100
    result = evaluate("load/composed100", data)
    parent_result = evaluate("load/vgg100", data)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"parent_accuracy": parent_result.accuracy, "composed_accuracy": result.accuracy,
                      "split_composed_accuracy": report.composed_accuracy, "peak_rss_mb": peak_mb,
                      "split_seconds": report.seconds}))
    assert result.n == parent_result.n == 1000
    # the 100 repos, pulled back through their pinned commits, give exactly what the split measured on the
    # same test images, and a working classifier: far above the 1 % of chance
    assert result.accuracy == pytest.approx(report.composed_accuracy, abs=1e-6)
    assert result.accuracy > 10 / 100
    assert peak_mb < 8000
