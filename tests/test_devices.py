"""--device: auto picks what the machine has; a device that is missing is one clear line, not a torch crash."""

import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import hubmod
import hubmod.split_pipeline as splitting
from hubmod.devices import device_of, resolve_device
from hubmod.errors import HubmodError

HAS_CUDA = torch.cuda.is_available()


def _best() -> torch.device:
    if HAS_CUDA:
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    return torch.device("mps") if mps is not None and mps.is_available() else torch.device("cpu")


def test_auto_takes_the_best_device_here():
    assert resolve_device("auto") == _best()
    assert resolve_device(None) == _best()
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.parametrize("name, message", [("tpu9", "unknown device"), ("cuda:99", "cuda"), ("meta", "unsupported")])
def test_bad_devices_are_named(name, message):
    if name == "cuda:99" and HAS_CUDA and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(HubmodError, match=message):
        resolve_device(name)


def test_device_of_follows_the_parameters():
    assert device_of(nn.Linear(2, 2)) == torch.device("cpu")
    assert device_of(nn.ReLU()) == torch.device("cpu")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
def test_a_missing_gpu_is_one_line_in_the_cli(tiny_parent_dirs):
    run = subprocess.run([sys.executable, "-m", "hubmod.cli", "eval", str(tiny_parent_dirs["vgg"]), "--dataset",
                          "fashion-mnist", "--device", "cuda"], capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--device cpu" in lines[0], run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
def test_a_cpu_only_method_refuses_a_named_gpu_but_auto_runs_it_on_the_cpu(tiny_parent_dirs, monkeypatch):
    # Pretend a GPU exists, so "auto" resolves to it; the CPU-only methods must still run on the CPU.
    monkeypatch.setattr(splitting, "resolve_device", lambda choice=None: torch.device("cuda"))
    with pytest.raises(HubmodError, match="searches on the CPU only"):
        hubmod.split(str(tiny_parent_dirs["vgg"]), "fashion-mnist", method="activation", device="cuda",
                     publish=False, progress=False, classes=["Trouser"])
    report = hubmod.split(str(tiny_parent_dirs["vgg"]), "fashion-mnist", method="activation", device="auto",
                          publish=False, progress=False, classes=["Trouser"],
                          options={"train_per_class": 30, "val_per_class": 30})
    assert report.rows[0].test_f1 > 0.5 and next(report.modules[0].parameters()).device.type == "cpu"


def test_evaluating_on_an_explicit_cpu_matches_auto(vgg_split, small_fmnist_dir):
    model = hubmod.ComposedClassifier(vgg_split.modules, "none")
    from pathlib import Path

    from hubmod.evaluation import evaluate
    from hubmod.hub import Snapshot
    from hubmod.loading import COMPOSED, Loaded

    snap = Snapshot(path=Path("."), sha="", hub="memory", repo_id="tiny")
    a = evaluate(Loaded(COMPOSED, model, snap), str(small_fmnist_dir), device="cpu")
    b = evaluate(Loaded(COMPOSED, model, snap), str(small_fmnist_dir), device="auto")
    if _best().type == "cpu":
        assert a.to_dict() == b.to_dict()
    else:
        assert a.accuracy == pytest.approx(b.accuracy, abs=1e-3)
