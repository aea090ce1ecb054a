"""Benchmark: where composed inference spends its time, and the same models under ONNX Runtime.

    python benchmarks/inference_profile.py            # measure
    python benchmarks/inference_profile.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

The issue on smaller modules asks for composed inference at least as fast as the parent (ten modules
of one split >= 1.0x its throughput, two >= 3x, one module's score >= 5x) and for the time to be
profiled per stage, with ONNX Runtime beside PyTorch. Models: two splits of the resnet18
Fashion-MNIST parent `bench/resnet18-fmnist-ho` that split_size_curve.py publishes (the default
setting, `-fast`, and the `small` preset, named after its candidate), and for each the parent, one
module, two and ten modules composed. Raw uint8 28 px test images in, preprocessing included,
median of repeated runs after a warm-up, at batch 256 (throughput) and batch 1 (latency). PyTorch
runs the modules as hubmod does (inference copies, one shared stem). ONNX Runtime runs what
`hubmod export` writes (preprocessing in the graph) and the parent exported the same way, on the same
2 threads. The per-stage profile times, at batch 256 in PyTorch, preprocessing, the shared stem, each
module's backbone after the stem, and the heads with calibration.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

from common import RESULTS, pct, section_main, throughput_and_latency
from split_size_curve import SMALL

OUT = RESULTS / "inference_profile.json"
SECTION = "inference-profile"
PARENT = "bench/resnet18-fmnist-ho"
# setting -> its split of PARENT, published by split_size_curve.py
SPLITS = {"the default setting": f"{PARENT}-fast", "the small preset": f"{PARENT}-{SMALL}"}
REPEATS = 10
TARGETS = {"10 modules": 1.0, "2 modules": 3.0, "1 module": 5.0}


def _ort_session(path: Path):
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export_parent(parent, path: Path) -> None:
    """The parent as ONNX with the same uint8-in preprocessing the composed graphs have."""
    import torch

    from hubmod.preprocess import preprocess

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = copy.deepcopy(parent.model).eval()

        def forward(self, images):
            return self.model(preprocess(images, parent.data_config))

    example = torch.zeros(2, *parent.data_config.input_size, dtype=torch.uint8)
    with torch.no_grad():
        torch.onnx.export(Graph().eval(), (example,), str(path), dynamo=False, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17)


def _timed(call, batch, one) -> dict:
    return throughput_and_latency(call, batch, one, REPEATS)


def _profile(model, batch) -> dict:
    """Seconds per stage for one batch (median over REPEATS), PyTorch, the way SharedStems runs it."""
    import torch

    from hubmod.fast_inference import channels_last
    from hubmod.preprocess import preprocess

    mods = list(model.class_modules)
    cfg = mods[0].data_config
    model(batch[:2])  # plans the shared stems
    plan = model._shared_stems
    fast = [m.fast_backbone for m in mods]
    stages: dict[str, list[float]] = {"preprocess": [], "shared stem": [], "module backbones after the stem": [],
                                      "heads and calibration": []}
    for _ in range(REPEATS + 1):
        with torch.no_grad():
            t0 = time.perf_counter()
            x = preprocess(batch, cfg)
            t1 = time.perf_counter()
            stem_outs = []
            for g in plan._groups:
                y = g.conv(channels_last(x))
                for layer in g.after:
                    y = layer(y)
                stem_outs.append(y)
            t2 = time.perf_counter()
            features: dict[int, torch.Tensor] = {}
            for g, y in zip(plan._groups, stem_outs, strict=True):
                for i, channels, rest in g.members:
                    features[i] = rest(channels_last(y.index_select(1, channels)))
            for i in plan._alone:
                features[i] = fast[i].net(channels_last(x))
            t3 = time.perf_counter()
            [m.calibrated(m.head(features[i]), model.calibration, features[i]) for i, m in enumerate(mods)]
            t4 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[key].append(dt)
    out = {k: statistics.median(v[1:]) for k, v in stages.items()}
    out["modules sharing one stem"] = sum(len(g.members) for g in plan._groups)
    return out


def measure() -> dict:
    return {"runs": {setting: measure_split(split) for setting, split in SPLITS.items()}}


def measure_split(split: str) -> dict:
    import torch

    import hubmod
    from hubmod.data import load_images
    from hubmod.loading import load
    from hubmod.onnx_export import export_onnx

    images = load_images("fashion-mnist", "test").images[:256]
    batch, one = images, images[:1]
    parent = load(PARENT, hub="local").obj
    names = parent.class_names
    fast_parent = copy.deepcopy(parent.model).to(memory_format=torch.channels_last)
    from hubmod.preprocess import preprocess

    def run_parent(x):
        with torch.no_grad():
            return fast_parent(preprocess(x, parent.data_config).contiguous(memory_format=torch.channels_last))

    composed = {k: hubmod.compose([f"{split}:{c}" for c in names[:k]], hub="local") for k in (1, 2, 10)}
    module = composed[1].class_modules[0]
    out: dict = {"split": split, "parent": PARENT, "threads": torch.get_num_threads(), "torch": {}, "ort": {}}
    out["torch"]["parent"] = _timed(run_parent, batch, one)
    out["torch"]["1 module"] = _timed(module.score, batch, one)
    for k in (2, 10):
        out["torch"][f"{k} modules"] = _timed(composed[k], batch, one)
    with tempfile.TemporaryDirectory() as d:
        _export_parent(parent, Path(d) / "parent.onnx")
        paths = {"parent": Path(d) / "parent.onnx"}
        for k in (1, 2, 10):
            export_onnx(composed[k], Path(d) / f"{k}.onnx", check_images=images[:16])
            paths["1 module" if k == 1 else f"{k} modules"] = Path(d) / f"{k}.onnx"
        for key, path in paths.items():
            session = _ort_session(path)
            out["ort"][key] = _timed(lambda x, s=session: s.run(None, {"images": x.numpy()}), batch, one)
    out["profile_10"] = _profile(composed[10], batch)
    out["module_macs"] = [m.config.metrics["macs"] / m.config.metrics["parent_macs"]
                          for m in composed[10].class_modules]
    return out


def render(result: dict, header: str) -> str:
    lines = [header.rstrip()]
    for setting, run in result["runs"].items():
        lines += ["", f"### Modules of {setting}", "", *render_split(run, setting)]
    lines += ["", "What has been tried for ten modules (each measured in the sections named): inference copies "
              "with BatchNorm folded in and channels-last memory, and the parent's stem run once for all modules "
              "(\"Composed inference with smaller (distilled) modules\"); stacking the modules of one parent as one "
              "grouped convolution per layer, slower than separate convolutions on this CPU (\"Composed inference "
              "against the parent\"); smaller modules (the `small` preset, \"Module size against accuracy\"). "
              "ONNX Runtime, which runs the modules' graphs one after another too, is slower than PyTorch for ten "
              "modules of either split."]
    return "\n".join(lines)


def _vs_parent(runs: dict, measure: str) -> dict[str, float]:
    """How many times better than the parent each model of ``runs`` is in ``measure`` (throughput: more
    images per second; latency_ms: less time per image)."""
    parent = runs["parent"][measure]
    return {key: (run[measure] / parent if measure == "throughput" else parent / run[measure])
            for key, run in runs.items()}


def _misses(vs_parent: dict[str, float]) -> str:
    """The targets ``vs_parent`` falls short of, each with its measured ratio ("" when none)."""
    return ", ".join(f"{key} {vs_parent[key]:.2f}× (target ≥ {target:.1f}×)" for key, target in TARGETS.items()
                     if vs_parent[key] < target)


def render_split(result: dict, setting: str) -> list[str]:
    lines = [f"Modules of `{result['split']}` ({setting}) against their parent `{result['parent']}`; raw "
             f"uint8 images, preprocessing included, {result['threads']} threads, median of {REPEATS} runs after a "
             "warm-up. \"vs parent\" compares each runtime with the parent in the same runtime.", "",
             "| model | PyTorch images/s (batch 256) | vs parent | batch-1 latency | ONNX Runtime images/s | vs parent "
             "| batch-1 latency | target |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    vs_torch, vs_ort = _vs_parent(result["torch"], "throughput"), _vs_parent(result["ort"], "throughput")
    for key in ("parent", "1 module", "2 modules", "10 modules"):
        t, o = result["torch"][key], result["ort"][key]
        target = f"≥ {TARGETS[key]:.1f}×" if key in TARGETS else ""
        lines.append(f"| {key} | {t['throughput']:.0f} | {vs_torch[key]:.2f}× | {t['latency_ms']:.1f} ms | "
                     f"{o['throughput']:.0f} | {vs_ort[key]:.2f}× | {o['latency_ms']:.1f} ms | {target} |")
    short = _misses(vs_torch)
    lines += ["", "Short of the throughput targets in PyTorch: " + short + "." if short
              else "Every throughput target is met in PyTorch."]
    for runtime, name in (("torch", "PyTorch"), ("ort", "ONNX Runtime")):  # the same targets at batch 1
        slow = _misses(_vs_parent(result[runtime], "latency_ms"))
        lines.append(f"At batch 1 (the parent's latency over the model's), short of the same targets in {name}: "
                     + slow + "." if slow else f"At batch 1 every target is met in {name}.")
    prof = {k: v for k, v in result["profile_10"].items() if k != "modules sharing one stem"}
    total = sum(prof.values())
    lines += ["", "Where ten composed modules spend a batch of 256 in PyTorch:", "",
              "| stage | time | share |", "|---|---:|---:|"]
    lines += [f"| {stage} | {1000 * s:.1f} ms | {pct(s / total)} |" for stage, s in prof.items()]
    lines += ["", f"{result['profile_10']['modules sharing one stem']} of the 10 modules share one stem convolution."]
    macs = [m for m in result["module_macs"] if m is not None]
    if len(macs) == len(result["module_macs"]):
        lines += ["", f"The one- and two-module rows run the modules of the parent's first classes, which hold "
                  f"{pct(macs[0])} and {pct(macs[1])} of its MACs; the ten modules hold {pct(min(macs))} to "
                  f"{pct(max(macs))} each (median {pct(statistics.median(macs))})."]
    if macs:
        share = prof["module backbones after the stem"] / total
        measured = vs_torch["10 modules"]
        lines += ["", f"The ten modules together hold {pct(sum(macs))} of the parent's MACs (each {pct(min(macs))} "
                  f"to {pct(max(macs))}), so at the parent's arithmetic speed they would reach "
                  f"{1 / sum(macs):.2f}× its throughput; they reach {measured:.2f}×, "
                  f"{pct(measured * sum(macs))} of that. {pct(share)} of their time is in the module backbones "
                  "after the stem (not in preprocessing, the shared stem or the heads)."]
    return lines


def main() -> None:
    section_main(__doc__, SECTION, "Composed inference, stage by stage, in PyTorch and ONNX Runtime", OUT, measure,
                 render)


if __name__ == "__main__":
    main()
