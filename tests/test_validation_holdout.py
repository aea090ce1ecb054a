"""A parent that names the images it never trained on is validated on those, not on images it saw."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import _balanced, train_tiny

from hubmod.errors import InvalidRepoError
from hubmod.hub import get_hub, open_ref
from hubmod.parents import VALIDATION_KEY, parent_from_snapshot
from hubmod.refs import parse_source
from hubmod.training import hold_out, save_parent


def _keys(images: torch.Tensor) -> set[bytes]:
    return {bytes(x.numpy().tobytes()) for x in images}


def _open(directory):
    return parent_from_snapshot(open_ref(parse_source(str(directory)), get_hub(None)))


def test_hold_out_names_rows_of_the_whole_split(fmnist_train):
    three = fmnist_train.for_classes(["Bag", "Trouser", "Coat"], "test")
    kept, record = hold_out(three, 7, seed=0, dataset="fashion-mnist")
    rows = torch.tensor(record["rows"])
    assert len(rows) == 21 and record["split"] == "train" and record["dataset"] == "fashion-mnist"
    assert not torch.isin(kept.rows, rows).any() and len(kept) + 21 == len(three)
    held = fmnist_train.subset(rows)  # the rows index the split as loaded, not the three-class subset
    assert sorted(held.labels.tolist()) == sorted([8] * 7 + [1] * 7 + [4] * 7)
    assert torch.equal(three.subset(three.rows_within(rows)).images, held.images)


@pytest.fixture(scope="module")
def held_out_parent(fmnist_train, tmp_path_factory):
    """A tiny VGG trained on part of 1,200 images, with 20 per class of them held out and recorded."""
    data = _balanced(fmnist_train, 120, seed=5)
    kept, record = hold_out(data, 20, seed=0, dataset="fashion-mnist")
    parent = train_tiny("hubmod_vgg", kept, epochs=0.5, model_args={"cfg": [8, "M", 16, "M"]})
    parent.validation = record
    return save_parent(parent, tmp_path_factory.mktemp("held-out") / "parent"), record


def test_split_validates_on_the_parents_held_out_images(held_out_parent, fmnist_train):
    from hubmod.preprocess import preprocess
    from hubmod.split_data import open_split_data

    directory, record = held_out_parent
    config = json.loads((directory / "config.json").read_text())
    assert config[VALIDATION_KEY] == record
    assert "held out of training" in (directory / "README.md").read_text()
    parent = _open(directory)
    assert parent.spec.validation == record
    data = open_split_data("fashion-mnist", parent, train_per_class=10, val_per_class=30, seed=0).draw()
    held = preprocess(fmnist_train.subset(torch.tensor(record["rows"])).images, parent.data_config)
    assert len(data.val_y) == 200  # all 20 per class: fewer held out than val_per_class asks for
    assert _keys(data.val_x) == _keys(held) and "held out" in data.val_source
    assert not _keys(data.train_x) & _keys(held)

    parent.spec.validation = {**record, "dataset": "mnist"}  # a record for another dataset does not apply
    unrelated = open_split_data("fashion-mnist", parent, 10, 30, 0).draw()
    assert unrelated.val_source == "train" and len(unrelated.val_y) == 300


@pytest.mark.parametrize("bad", [[], "rows", {"dataset": "fashion-mnist", "split": "train", "rows": [-1]},
                                 {"dataset": "fashion-mnist", "split": "train", "rows": [True]},
                                 {"dataset": 3, "split": "train", "rows": [1]},
                                 {"dataset": "fashion-mnist", "split": "train", "rows": []}])
def test_malformed_validation_record_fails_in_one_line(held_out_parent, tmp_path, bad):
    directory = tmp_path / "parent"
    shutil.copytree(held_out_parent[0], directory)
    config = json.loads((directory / "config.json").read_text())
    config[VALIDATION_KEY] = bad
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidRepoError, match=VALIDATION_KEY) as err:
        _open(directory)
    assert "\n" not in str(err.value)
