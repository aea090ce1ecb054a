"""Adapting a composition to unlabelled images of its task (hubmod.adaptation, ``compose --adapt``)."""

import numpy as np
import pytest
import torch
from PIL import Image

from hubmod.adaptation import TEMPERATURE, balancing_offsets, check_adapt_images
from hubmod.data import load_unlabelled_images
from hubmod.errors import HubmodError, InvalidRepoError
from hubmod.fitting import checked_fit_record


def _over_claimed(n: int, seed: int):
    """Three modules; module 2 over-claims: raw argmax gives it most images of classes 0 and 1 too."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n)
    centres = torch.tensor([[0.9, 0.1, 0.95], [0.1, 0.9, 0.95], [0.1, 0.1, 1.2]])
    return centres[y] + 0.05 * torch.randn(3 * n, 3, generator=g), y


def test_offsets_share_the_images_evenly_and_undo_an_over_claiming_module():
    scores, y = _over_claimed(100, seed=0)
    assert float((scores.argmax(1) == y).float().mean()) < 0.5  # module 2 takes most of classes 0 and 1
    b = balancing_offsets(scores)
    assert abs(float(b.mean())) < 1e-6
    shares = torch.softmax((scores + b) / TEMPERATURE, dim=1).mean(0)
    assert torch.allclose(shares, torch.full((3,), 1 / 3), atol=1e-4), shares  # what the offsets are defined by
    test, test_y = _over_claimed(300, seed=1)  # labels were never given to the fit
    assert float(((test + b).argmax(1) == test_y).float().mean()) > 0.95
    assert torch.equal(balancing_offsets(scores), b)  # deterministic
    assert torch.allclose(balancing_offsets(scores + 5.0), b, atol=1e-4)  # a shift common to every module: none


def test_offsets_need_two_classes_and_enough_images():
    with pytest.raises(ValueError, match="two classes"):
        balancing_offsets(torch.zeros(4, 1))
    with pytest.raises(HubmodError, match="needs at least 15"):
        check_adapt_images(14, 3, "./photos")
    check_adapt_images(15, 3, "./photos")


def test_a_flat_folder_of_images_is_a_dataset_without_labels(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):  # photos of two sizes: resized to the size asked for
        Image.fromarray(rng.integers(0, 255, (30, 20 + 10 * (i % 2)), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    images, hub_id = load_unlabelled_images(str(tmp_path), "train", (28, 28))
    assert images.shape == (4, 1, 28, 28) and images.dtype == torch.uint8 and hub_id is None
    with pytest.raises(HubmodError, match="no split 'test'"):
        load_unlabelled_images(str(tmp_path), "test")


def test_a_dataset_without_an_image_column_is_one_line(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"text": ["a", "b"]}).save_to_disk(str(tmp_path / "text"))
    with pytest.raises(HubmodError, match="no image column"):
        load_unlabelled_images(str(tmp_path / "text"))


GOOD_ADAPT = {"method": "adapt", "dataset": "./photos", "split": "train", "source": "unlabelled images", "images": 40,
              "seed": 0, "combiner": "affine", "calibration": "gated", "temperature": 0.3, "rows": [0, 1, 2]}


@pytest.mark.parametrize("record", [{**GOOD_ADAPT, "method": "magic"}, {**GOOD_ADAPT, "images": 0},
                                    {k: v for k, v in GOOD_ADAPT.items() if k != "temperature"},
                                    {**GOOD_ADAPT, "temperature": -1.0}])
def test_an_adapt_record_from_a_repo_is_checked_field_by_field(record):
    assert checked_fit_record(GOOD_ADAPT, "me/x") == GOOD_ADAPT
    with pytest.raises(InvalidRepoError, match="me/x config.json fit"):
        checked_fit_record(record, "me/x")
