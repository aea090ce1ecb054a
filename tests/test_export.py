"""ONNX export: one graph from raw uint8 images to one calibrated score per class, equal to PyTorch."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

import hubmod
from hubmod.cli import app
from hubmod.errors import HubmodError
from hubmod.hub import LocalHub
from hubmod.onnx_export import export_onnx


def test_composed_classifier_exports_to_one_checked_graph(vgg_split, fmnist_test, tmp_path):
    modules = [vgg_split.modules[i] for i in (1, 5, 8)]
    composed = hubmod.ComposedClassifier(modules, "minmax")
    info = export_onnx(composed, tmp_path / "c.onnx", check_images=fmnist_test.images[:32])
    assert info["max_abs_diff"] < 1e-4 and info["same_argmax"]
    graph = onnx.load(str(tmp_path / "c.onnx"))
    onnx.checker.check_model(graph)
    assert [o.name for o in graph.graph.output] == ["score_trouser", "score_sandal", "score_bag"]
    # a batch size the export never saw, on real images
    images = fmnist_test.images[100:177]
    out = ort.InferenceSession(str(tmp_path / "c.onnx")).run(None, {"images": images.numpy()})
    assert np.allclose(np.stack(out, 1), composed(images).numpy(), atol=1e-4)


def test_export_command_takes_a_repo_and_other_raw_sizes(vgg_split, tmp_path):
    hub = LocalHub()
    for i in (0, 9):
        vgg_split.modules[i].push_to_hub(f"ex/m{i}", hub)
    hubmod.compose(["ex/m0", "ex/m9"], output="ex/pair", hub=hub)
    res = CliRunner().invoke(app, ["export", "ex/pair", "-o", str(tmp_path / "p.onnx"), "--input-size", "3,20,20",
                                   "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["input"] == ["batch", 3, 20, 20] and info["max_abs_diff"] < 1e-4  # RGB 20 px in, resized inside
    shrink = CliRunner().invoke(app, ["export", "ex/pair", "-o", str(tmp_path / "s.onnx"), "--input-size", "1,56,56"])
    assert shrink.exit_code == 1 and "antialiased resizing" in shrink.output
    res = CliRunner().invoke(app, ["export", "ex/m0", "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0 and "1 outputs" in res.output
    bad = CliRunner().invoke(app, ["export", "ex/pair", "-o", str(tmp_path / "x.onnx"), "--input-size", "28,28"])
    assert bad.exit_code == 1 and "must be C,H,W" in bad.output
    assert not (tmp_path / "x.onnx").exists()


def test_a_failed_check_writes_nothing(vgg_split, tmp_path):
    composed = hubmod.ComposedClassifier([vgg_split.modules[2]], "none")
    with pytest.raises(HubmodError, match="differs from PyTorch"):
        export_onnx(composed, tmp_path / "never.onnx", atol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_exported_scores_need_no_torch_preprocessing(vgg_split, fmnist_test, tmp_path):
    """The graph resizes and normalises by itself: a 14 px image in matches PyTorch on that image."""
    composed = hubmod.ComposedClassifier([vgg_split.modules[4], vgg_split.modules[6]], "platt")
    small = fmnist_test.images[:8, :, ::2, ::2].contiguous()
    info = export_onnx(composed, tmp_path / "small.onnx", input_size=(1, 14, 14), check_images=small)
    assert info["max_abs_diff"] < 1e-4
