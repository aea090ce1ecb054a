import numpy as np
import pytest
import torch

from hubmod.data import FASHION_MNIST_CLASSES, load_images
from hubmod.errors import HubmodError, NotFoundError


def test_fashion_mnist_is_real_and_complete(fmnist_train, fmnist_test):
    assert len(fmnist_train) == 60000 and len(fmnist_test) == 10000
    assert fmnist_train.images.shape == (60000, 1, 28, 28) and fmnist_train.images.dtype == torch.uint8
    assert fmnist_train.class_names == FASHION_MNIST_CLASSES
    assert torch.bincount(fmnist_test.labels).tolist() == [1000] * 10
    assert fmnist_train.hub_id == "zalando-datasets/fashion_mnist"


def test_missing_debian_files_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("HUBMOD_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(NotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_images("fashion-mnist", "train")


def test_labels_match_by_name_not_position(fmnist_test):
    order = ["Sneaker", "bag", "T-shirt/top"]
    sub = fmnist_test.for_classes(order, "model")
    assert sub.class_names == order and len(sub) == 3000
    first_bag = int(torch.nonzero(fmnist_test.labels == 8)[0])
    assert sub.labels.tolist().count(1) == 1000
    assert torch.equal(sub.images[sub.labels == 1][0], fmnist_test.images[first_bag])
    with pytest.raises(HubmodError, match="no class 'Penguin'"):
        fmnist_test.for_classes(["Sneaker", "Penguin"], "model")


def _small(data, n=50):
    return data.subset(torch.arange(n))


def test_save_to_disk_parquet_and_imagefolder(tmp_path, fmnist_test):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    small = _small(fmnist_test)
    images = [im[0].numpy() for im in small.images]
    feats = Features({"img": Image(), "label": ClassLabel(names=FASHION_MNIST_CLASSES)})
    ds = Dataset.from_dict({"img": images, "label": small.labels.tolist()}, features=feats)
    DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "disk"))
    got = load_images(str(tmp_path / "disk"), "test")
    assert torch.equal(got.images, small.images) and torch.equal(got.labels, small.labels)
    ds.to_parquet(str(tmp_path / "data.parquet"))
    got = load_images(str(tmp_path / "data.parquet"), "train")
    assert torch.equal(got.images, small.images) and got.class_names == FASHION_MNIST_CLASSES
    from PIL import Image as PILImage

    for i, (im, y) in enumerate(zip(images[:20], small.labels[:20].tolist(), strict=True)):
        d = tmp_path / "folder" / FASHION_MNIST_CLASSES[y].replace("/", "-")
        d.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(np.asarray(im)).save(d / f"{i}.png")
    got = load_images(str(tmp_path / "folder"), "train")
    assert len(got) == 20 and got.images.shape[1:] == (1, 28, 28)


def test_unknown_split_lists_the_real_ones():
    with pytest.raises(NotFoundError, match="it has: train, test"):
        load_images("fashion-mnist", "validation")
