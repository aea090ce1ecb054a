"""Shared fixtures: isolated hubmod/HF homes, the loopback hub, real Fashion-MNIST, tiny trained parents.

The environment is fixed here, before anything imports huggingface_hub (whose constants are read
at import): no Xet, no telemetry, caches in a temp dir, nothing pointing at the real Hub.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
from pathlib import Path

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="hubmod-tests-"))
_ROOT = Path(__file__).resolve().parent.parent
os.environ.update({
    "HF_HUB_DISABLE_XET": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HOME": str(_SESSION_TMP / "hf-home"),
    "HF_DATASETS_OFFLINE": "1",
    "HUBMOD_HOME": str(_SESSION_TMP / "hubmod-home"),
    "TQDM_DISABLE": "1",
    # loopback traffic never goes to a proxy from the environment; gloo talks over the loopback interface
    "NO_PROXY": ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"])),
    "no_proxy": ",".join(filter(None, [os.environ.get("no_proxy"), "127.0.0.1,localhost"])),
    "GLOO_SOCKET_IFNAME": "lo",
})
for var in ("HF_ENDPOINT", "HF_TOKEN", "HUBMOD_HUB", "HF_HUB_OFFLINE"):
    os.environ.pop(var, None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

# The same examples on every run, so a red CI is a regression and not a new draw. Explore more with
# HYPOTHESIS_PROFILE=explore (fresh random draws each run) when hunting for new failures.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# The same thread count on every machine (a one-CPU runner included): the thread count changes how sums
# are split, and with it the rounding of every trained quantity. The default run uses two pytest-xdist
# workers of one thread each (most tests run tiny models, where a second thread gains little); a run
# without workers (-n 0) uses two threads.
TEST_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
torch.set_num_threads(TEST_THREADS)

# Tiny GradSplitter budget for tests: real masks and heads, trained for seconds.
TINY_SPLIT = {"train_per_class": 40, "val_per_class": 30, "warmup_epochs": 3, "refit_epochs": 5, "max_cycles": 3,
              "batch_size": 32, "mask_lr": 0.05, "head_lr": 0.01, "tolerance": 5.0, "patience": 3,
              "distill_epochs": 1, "distill_per_class": 60, "distill_tries": 1,
              # the distillation settings the tests' margins were measured with (the defaults before 0.1.0)
              "distill_lr": 3e-4, "distill_slack": 3.0, "distill_batch_size": 64, "distill_label_weight": 0.0}


def free_port() -> int:
    """A loopback port nothing listens on now, for a test that starts a server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def same_draws():
    """Every test starts from the same global random state, whichever tests ran before it on its worker:
    pytest-xdist hands tests out in another order on every run, and a test that draws from the global
    generator (random inputs, a model's initial weights) must not depend on that order."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def hubmod_home(tmp_path, monkeypatch):
    """Every test gets its own embedded hub."""
    home = tmp_path / "hubmod-home"
    monkeypatch.setenv("HUBMOD_HOME", str(home))
    return home


@pytest.fixture
def loopback(monkeypatch, tmp_path):
    """The strict loopback hub, with huggingface_hub and timm pointed at it for this test."""
    from huggingface_hub import constants
    from loopback_hub import LoopbackHub

    with LoopbackHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        template = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        yield hub
        assert hub.unexpected == [], f"hubmod or huggingface_hub called endpoints the hub lacks: {hub.unexpected}"


@pytest.fixture(scope="session")
def fmnist_train():
    from hubmod.data import load_images

    return load_images("fashion-mnist", "train")


@pytest.fixture(scope="session")
def fmnist_test():
    from hubmod.data import load_images

    return load_images("fashion-mnist", "test")


def _balanced(data, per_class: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return data.subset(data.stratified(per_class, g))


# Every tiny parent is trained with this seed. The margins of tests that judge a trained quantity were set
# from its spread over several seeds: HUBMOD_TEST_PARENT_SEED=1 (2, ...) pytest ... measures it again.
PARENT_SEED = int(os.environ.get("HUBMOD_TEST_PARENT_SEED", "0"))


def train_tiny(arch: str, data, epochs: float = 2.0, model_args: dict | None = None, in_chans: int = 1,
               size: int = 28, seed: int | None = None):
    from hubmod.training import fashion_mnist_config, train_parent

    return train_parent(arch, data, fashion_mnist_config(in_chans, size), epochs=epochs, batch_size=64, lr=3e-3,
                        seed=PARENT_SEED if seed is None else seed, model_args=model_args, progress=False)


TINY_ARCHS = {
    "vgg": ("hubmod_vgg", {"cfg": [8, 8, "M", 16, 16, "M", 32, "M"]}),
    "resnet": ("resnet18", {"channels": [8, 16, 24, 32], "stem_width": 8}),
    "mobilenet": ("mobilenetv3_small_050", {}),
}


def _run_dir() -> Path:
    """A directory every pytest-xdist worker of this run shares (the process's own one without workers)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        return _SESSION_TMP
    shared = Path(tempfile.gettempdir()) / f"hubmod-tests-run-{run}"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session")
def tiny_parent_dirs(fmnist_train):
    """Tiny parents trained for seconds on 5,000 real Fashion-MNIST images, saved as timm-format dirs.

    Workers share them: each trains the parents no other worker has started (in its own order, so two
    workers train two parents at once) and reads the rest, which the same seed and thread count would
    have made identical anyway."""
    import fcntl

    from hubmod.training import save_parent

    data = _balanced(fmnist_train, 500, seed=1)
    root = _run_dir() / f"parents-seed{PARENT_SEED}"
    root.mkdir(exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    keys = list(TINY_ARCHS)[:: -1 if worker[-1:] in "13579" else 1]
    for key in keys:
        with open(root / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not (root / f"{key}.done").exists():
                arch, args = TINY_ARCHS[key]  # no test measures the mobilenet's accuracy: one epoch will do
                parent = train_tiny(arch, data, epochs=1.0 if key == "mobilenet" else 2.0, model_args=args)
                save_parent(parent, root / key, dataset_id="zalando-datasets/fashion_mnist")
                (root / f"{key}.done").touch()
    return {key: root / key for key in TINY_ARCHS}


@pytest.fixture(scope="session")
def vgg_split(tiny_parent_dirs):
    """One tiny split of the VGG parent, measured but not published."""
    import hubmod

    return hubmod.split(f"{tiny_parent_dirs['vgg']}", "fashion-mnist", options=TINY_SPLIT, seed=0,
                        publish=False, progress=False)


def publish_dir(directory: Path, repo_id: str, hub="local") -> str:
    from hubmod.hub import get_hub

    return get_hub(hub).push_folder(repo_id, directory, "parent")


def save_fmnist_folder(name: str, train, test, per_class: int, test_per_class: int, seeds=(5, 6)) -> Path:
    """A balanced Fashion-MNIST subset saved with datasets' save_to_disk (Image + ClassLabel features),
    with only train and test splits, like a user's own small dataset. Made once per session."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    from hubmod.data import FASHION_MNIST_CLASSES

    feats = Features({"image": Image(), "label": ClassLabel(names=FASHION_MNIST_CLASSES)})

    def to_ds(data):
        return Dataset.from_dict({"image": [im[0].numpy() for im in data.images], "label": data.labels.tolist()},
                                 features=feats)

    path = _SESSION_TMP / name
    if not path.exists():
        DatasetDict({"train": to_ds(_balanced(train, per_class, seed=seeds[0])),
                     "test": to_ds(_balanced(test, test_per_class, seed=seeds[1]))}).save_to_disk(str(path))
    return path


@pytest.fixture(scope="session")
def small_fmnist_dir(fmnist_train, fmnist_test):
    """A small Fashion-MNIST copy: 120 training and 60 test images per class."""
    return save_fmnist_folder("small-fmnist", fmnist_train, fmnist_test, 120, 60, seeds=(2, 3))


@pytest.fixture(scope="session")
def digits_dir():
    """scikit-learn's real 8x8 digits upscaled to 28 px, as a save_to_disk folder with classes 'digit 0'..'digit 9'."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_dataset", _ROOT / "examples" / "digits_dataset.py")
    digits = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(digits)
    return digits.save_digits(_SESSION_TMP / "digits")
