"""ONNX export of a composed classifier: one graph, raw images in, one score out per class.

The graph holds everything ``ComposedClassifier.forward`` does for one raw image size: each
distinct preprocessing (channels, resize and crop, normalisation) once, every module, each
module's calibration and a fitted combiner, so a runtime without hubmod or torch reproduces the PyTorch scores. The
export is checked with onnxruntime against PyTorch before the file is kept.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from .composed import ComposedClassifier
from .errors import HubmodError, first_line
from .preprocess import preprocess
from .refs import class_slugs


class _Graph(nn.Module):
    """uint8 images [B, C, H, W] -> a tuple of k calibrated scores [B]."""

    def __init__(self, composed: ComposedClassifier):
        super().__init__()
        self.composed = composed

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        modules = self.composed.class_modules
        inputs = {cfg: preprocess(images, cfg) for cfg in dict.fromkeys(m.data_config for m in modules)}
        features = [m.head_input(inputs[m.data_config]) for m in modules]
        scores = torch.stack([m.calibrated(m.head(f), self.composed.calibration, f)
                              for m, f in zip(modules, features, strict=True)], dim=1)
        out = self.composed.combine(scores, torch.cat(features, dim=1))  # a fitted combiner is in the graph too
        return tuple(out[:, i] for i in range(len(modules)))


def export_onnx(composed: ComposedClassifier, output: str | Path, input_size: tuple[int, int, int] | None = None,
                check_images: torch.Tensor | None = None, atol: float = 1e-4) -> dict:
    """Write ``composed`` to ``output`` as ONNX and check it against PyTorch; returns what was checked.

    ``input_size`` is the raw image size (C, H, W) the graph takes (default: the first module's);
    the batch dimension is dynamic. Output ``i`` is named after class ``i``'s slug.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise HubmodError("ONNX export needs onnx and onnxruntime: pip install 'hubmod[onnx]'") from None
    size = tuple(input_size or composed.class_modules[0].data_config.input_size)
    graph = _Graph(composed).eval()
    names = [f"score_{s}" for s in class_slugs(composed.class_names)]
    example = torch.zeros(2, *size, dtype=torch.uint8)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}-", dir=output.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            try:
                torch.onnx.export(graph, (example,), tmp, dynamo=False, input_names=["images"], output_names=names,
                                  dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
                                  opset_version=17)
            except torch.onnx.errors.UnsupportedOperatorError as e:
                hint = (" (antialiased resizing, used to shrink images, has no ONNX export: give --input-size "
                        "no larger than the modules' input sizes)" if "_aa" in str(e) else "")
                raise HubmodError(f"cannot export to ONNX: {first_line(e)}{hint}") from None
        images = check_images if check_images is not None else torch.randint(0, 256, (8, *size), dtype=torch.uint8)
        if tuple(images.shape[1:]) != size or images.dtype != torch.uint8:
            raise HubmodError(f"check images must be uint8 [B, {', '.join(map(str, size))}]")
        session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        got = torch.stack([torch.from_numpy(o) for o in session.run(None, {"images": images.numpy()})], dim=1)
        want = composed(images)
        diff = float((got - want).abs().max())
        if diff > atol:
            raise HubmodError(f"the ONNX graph differs from PyTorch by {diff:.2e} (> {atol:.0e}); not written")
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"path": str(output), "input": ["batch", *size], "outputs": names, "max_abs_diff": diff,
            "checked_images": len(images), "same_argmax": bool((got.argmax(1) == want.argmax(1)).all())}


def export(source: str, output: str | Path, input_size: tuple[int, int, int] | None = None,
           hub=None) -> dict:
    """Export a composed classifier or a single module (as a one-class graph) named by SOURCE."""
    from .loading import COMPOSED, MODULE, load

    loaded = load(source, hub)
    if loaded.kind == COMPOSED:
        composed = loaded.obj
    elif loaded.kind == MODULE:
        composed = ComposedClassifier([loaded.obj], "none")
    else:
        raise HubmodError(f"{loaded.snapshot.name} is a {loaded.kind.replace('_', ' ')}; export takes a composed "
                          "classifier or a module (compose one first with `hubmod compose`)")
    return export_onnx(composed, output, input_size)
