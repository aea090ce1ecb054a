"""A user's own small dataset: budgets adapt to what it holds, and a dataset too small says so in one line."""

import pytest
from conftest import TINY_SPLIT, save_fmnist_folder

import hubmod
from hubmod.errors import HubmodError
from hubmod.hub import LocalHub

# each method with budgets that ask for more images per class than the folder holds (it has 20)
BIG_BUDGETS = {
    "gradsplitter": {**TINY_SPLIT, "train_per_class": 40, "val_per_class": 30, "distill_epochs": 0},
    "cnnsplitter": {"train_per_class": 40, "val_per_class": 30, "fitness_per_class": 5, "population": 4,
                    "generations": 1, "offspring": 2, "sensitivity_steps": 2},
    "activation": {"train_per_class": 40, "val_per_class": 30},
}


@pytest.mark.parametrize("method", list(BIG_BUDGETS))
def test_budgets_adapt_to_a_small_folder_dataset(method, tiny_parent_dirs, fmnist_train, fmnist_test, caplog):
    data = save_fmnist_folder("tiny-fmnist-20", fmnist_train, fmnist_test, 20, 5)
    LocalHub().push_folder("me/vgg", tiny_parent_dirs["vgg"], "parent")
    with caplog.at_level("WARNING"):
        report = hubmod.split("me/vgg", str(data), method=method, options=BIG_BUDGETS[method],
                              classes=["Trouser", "Bag"], progress=False, publish=False)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "has 20 images of its smallest class" in warning and "validating on 9 and training on 11" in warning
    config = report.modules[0].config.dataset
    assert config["val_samples"] == 9 * 10 and config["train_samples"] == 11 * 10
    assert len(report.modules) == 2 and report.n_test == 10  # the test images of the two classes


def test_a_dataset_too_small_to_split_is_one_line(tiny_parent_dirs, fmnist_train, fmnist_test):
    data = save_fmnist_folder("tiny-fmnist-6", fmnist_train, fmnist_test, 6, 2)
    LocalHub().push_folder("me/vgg", tiny_parent_dirs["vgg"], "parent")
    with pytest.raises(HubmodError, match=r"has 6 images of class .* a split needs at least 10 per class") as err:
        hubmod.split("me/vgg", str(data), options=BIG_BUDGETS["gradsplitter"], progress=False, publish=False)
    assert "\n" not in str(err.value)
