import numpy as np
import pytest
import torch
from PIL import Image

from hubmod.errors import HubmodError
from hubmod.preprocess import DataConfig, prepare_input, preprocess, to_uint8_batch

GRAY28 = DataConfig((1, 28, 28), (0.5,), (0.5,))
RGB32 = DataConfig((3, 32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_image_inputs_become_uint8_batches():
    arr = np.random.randint(0, 255, (28, 28), dtype=np.uint8)
    assert to_uint8_batch(arr).shape == (1, 1, 28, 28)
    assert to_uint8_batch(Image.fromarray(arr)).shape == (1, 1, 28, 28)
    assert to_uint8_batch([Image.fromarray(arr)] * 3).shape == (3, 1, 28, 28)
    assert to_uint8_batch(np.zeros((4, 28, 28, 3), np.uint8)).shape == (4, 3, 28, 28)
    assert to_uint8_batch(torch.zeros(4, 28, 28, dtype=torch.uint8)).shape == (4, 1, 28, 28)
    with pytest.raises(HubmodError, match="differ in size"):
        to_uint8_batch([Image.fromarray(arr), Image.fromarray(np.zeros((30, 30), np.uint8))])


def test_each_config_gets_its_own_channels_size_and_normalisation():
    raw = torch.full((2, 1, 28, 28), 255, dtype=torch.uint8)
    g = preprocess(raw, GRAY28)
    assert g.shape == (2, 1, 28, 28) and torch.allclose(g, torch.ones_like(g))
    c = preprocess(raw, RGB32)
    assert c.shape == (2, 3, 32, 32) and torch.allclose(c, torch.full_like(c, 2.0))
    rgb = torch.zeros(1, 3, 28, 28, dtype=torch.uint8)
    rgb[:, 0] = 255
    assert torch.allclose(preprocess(rgb, GRAY28), torch.full((1, 1, 28, 28), (0.299 - 0.5) / 0.5), atol=1e-6)


def test_preprocessed_tensors_pass_through_when_they_fit():
    x = torch.randn(2, 1, 28, 28)
    assert prepare_input(x, GRAY28) is x
    with pytest.raises(HubmodError, match="expects"):
        prepare_input(torch.randn(2, 3, 32, 32), GRAY28)


def test_bad_data_configs_are_rejected():
    with pytest.raises(HubmodError, match="do not fit 1 channel"):
        DataConfig.from_dict({"input_size": [1, 28, 28], "mean": [0.5, 0.5], "std": [0.5]})
    with pytest.raises(HubmodError, match="input_size"):
        DataConfig.from_dict({"input_size": [1, 28], "mean": [0.5], "std": [0.5]})
    with pytest.raises(HubmodError, match="do not fit"):  # would scale every image to infinity
        DataConfig.from_dict({"input_size": [1, 28, 28], "mean": [0.5], "std": [1e-300]})
