"""Benchmark: composed-classifier inference against its parent (throughput at batch 256, latency at batch 1).

    python benchmarks/inference_fmnist.py

Classifiers composed of k = 2, 5, 10 GradSplitter modules of each Fashion-MNIST parent of split_fmnist.py
(run ``split_fmnist.py --only full`` first), on raw uint8 test images; every figure includes
preprocessing, as a user calling the model on raw images pays it. The parent's modules are the first k
classes. Results go to benchmarks/results/inference_fmnist.json and BENCHMARKS.md, with peak RSS.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource

from common import (
    RESULTS,
    command,
    machine,
    median_seconds,
    section_header,
    setup_home,
    throughput_and_latency,
    write_section,
)
from split_fmnist import PARENTS

KS = (2, 5, 10)


def measure(repo: str, images, repeats: int, modules: str | None = None) -> dict:
    """The parent ``repo`` against classifiers composed of its modules (``modules``: a split's index repo)."""
    import torch

    import hubmod
    from hubmod.loading import load
    from hubmod.preprocess import preprocess

    parent = load(repo, hub="local").obj
    modules = modules or repo
    names = parent.class_names
    batch, one = images[:256], images[:1]

    def timed(model: str, k: int, call) -> dict:
        """Throughput of ``call`` on a batch of 256 and its latency on one image."""
        return {"model": model, "k": k, **throughput_and_latency(call, batch, one, repeats)}

    def run_parent(x):
        with torch.no_grad():
            return parent.model(preprocess(x, parent.data_config))

    fast = copy.deepcopy(parent.model).to(memory_format=torch.channels_last)  # modules run channels-last too

    def run_fast_parent(x):
        with torch.no_grad():
            return fast(preprocess(x, parent.data_config).contiguous(memory_format=torch.channels_last))

    rows = [timed("parent", len(names), run_parent), timed("parent, channels-last", len(names), run_fast_parent)]
    composed = {k: hubmod.compose([f"{modules}:{c}" for c in names[:k]], hub="local") for k in KS}
    rows += [timed(f"composed, {k} modules", k, model) for k, model in composed.items()]
    if modules != repo:  # what shared stems and inference copies buy: the same modules without them
        everything = composed[max(KS)]

        def run_apart(x):
            everything.share_stems = False
            try:
                return everything(x)
            finally:
                everything.share_stems = True

        rows.append(timed(f"composed, {max(KS)} modules, each running its own stem", max(KS), run_apart))

        def run_plain(x):
            with torch.no_grad():
                inputs = preprocess(x, parent.data_config)
                return [m.calibrated(m.head(m.backbone(inputs)), everything.calibration)
                        for m in everything.class_modules]

        rows.append(timed(f"composed, {max(KS)} modules, plain NCHW backbones", max(KS), run_plain))
    best = max(r["throughput"] for r in rows if r["model"].startswith("parent"))
    for r in rows:
        r["vs_parent"] = r["throughput"] / best
        print(f"{repo} {r['model']}: {r['throughput']:.0f} img/s ({r['vs_parent']:.2f}x parent), "
              f"batch-1 {r['latency_ms']:.1f} ms", flush=True)
    return {"rows": rows}


def grouped_vs_separate(repeats: int) -> list[dict]:
    """Would one batched computation help? k = 10 same-shape 3x3 convolutions as one grouped convolution
    (what stacking modules of one parent, zero-padded to equal widths, turns each layer into) against
    10 separate ones, at resnet18-on-28px layer shapes, batch 256."""
    import torch
    import torch.nn.functional as F

    k, out = 10, []
    for c, hw in ((32, 14), (64, 7), (128, 4)):
        x, w = torch.randn(256, k * c, hw, hw), torch.randn(k * c, c, 3, 3)
        xs = [x[:, i * c : (i + 1) * c].contiguous() for i in range(k)]
        ws = [w[i * c : (i + 1) * c] for i in range(k)]
        with torch.no_grad():
            grouped = median_seconds(lambda x=x, w=w: F.conv2d(x, w, padding=1, groups=k), repeats)
            pairs = list(zip(xs, ws, strict=True))
            separate = median_seconds(lambda pairs=pairs: [F.conv2d(a, b, padding=1) for a, b in pairs], repeats)
        out.append({"channels": c, "size": hw, "grouped_ms": 1000 * grouped, "separate_ms": 1000 * separate})
        print(f"conv {c} ch {hw}px: grouped {1000 * grouped:.1f} ms, separate {1000 * separate:.1f} ms", flush=True)
    return out


def _timing_lines(lead: str, rows: list[dict]) -> list[str]:
    """Table rows of timed models, each after the cells ``lead`` gives (ending in " | ")."""
    return [f"| {lead}{r['model']} | {r['throughput']:.0f} | {r['vs_parent']:.2f}× | {r['latency_ms']:.1f} ms |"
            for r in rows]


def render_modules(data: dict) -> str:
    lines = ["## Composed inference with smaller (distilled) modules", "",
             "As above (raw uint8 images, preprocessing included, median after a warm-up, modules run one after "
             "another), for classifiers composed of the modules of the splits named; module MACs are the mean "
             "of all ten modules of the split, as a fraction of the parent's. Modules run as inference copies "
             "(BatchNorm folded into the convolutions, channels-last memory; `hubmod/fast_inference.py`), so "
             "the parent is also timed in channels-last, and \"vs parent\" is against the faster of its two "
             "rows. Modules that kept the parent's stem (`share_stem`) run it once for all of them; the "
             "\"own stem\" row turns that off, the \"plain\" row turns off both.", "",
             "| modules | parent | module MACs / parent | model | images/s at batch 256 | vs parent "
             "| latency at batch 1 |",
             "|---|---|---:|---|---:|---:|---:|"]
    for prefix, d in data["splits"].items():
        lines += _timing_lines(f"`{prefix}` | `{d['parent']}` | {100 * d['module_macs']:.2f} % | ", d["rows"])
    lines += ["", f"Peak RSS of the whole run: {data['peak_rss_mb']:.0f} MB."]
    return "\n".join(lines)


def measure_split(prefix: str, images, repeats: int) -> dict:
    """A published split (its index repo), against the parent its index names."""
    from hubmod.loading import load
    from hubmod.split_index import SplitIndex

    index = load(prefix, hub="local").obj
    if not isinstance(index, SplitIndex):
        raise SystemExit(f"{prefix} is not a split index repo; name a split's --repo-prefix")
    parent = index.parent["repo_id"]
    ratios = [entry.macs_ratio for entry in index.modules]
    out = measure(parent, images, repeats, modules=prefix)
    out.update(parent=parent, module_macs=sum(ratios) / len(ratios))
    return out


def render(data: dict) -> str:
    lines = ["## Composed inference against the parent", "",
             "Raw uint8 28 px test images, preprocessing included, median of repeated runs after a warm-up; "
             "modules are those of split_fmnist.py's `full` part (GradSplitter without distillation, so they "
             "keep many of the parent's channels; \"Composed inference with smaller (distilled) modules\" times "
             "smaller ones), run one after another; \"vs parent\" is against the faster of the parent's rows.", "",
             "| parent | model | images/s at batch 256 | vs parent | latency at batch 1 |",
             "|---|---|---:|---:|---:|"]
    for repo, d in data["parents"].items():
        lines += _timing_lines(f"`{repo}` | ", d["rows"])
    lines += ["", "Why the modules of one parent are not stacked into one batched computation: 10 same-shape "
              "3×3 convolutions as one grouped convolution (what zero-padding the modules to equal widths and "
              "stacking them makes of every layer) against 10 separate ones, batch 256:", "",
              "| channels per module | feature map | grouped (one call) | separate (10 calls) |",
              "|---:|---:|---:|---:|"]
    for r in data["grouped_conv"]:
        lines.append(f"| {r['channels']} | {r['size']}×{r['size']} | {r['grouped_ms']:.1f} ms | "
                     f"{r['separate_ms']:.1f} ms |")
    lines += ["", f"Peak RSS of the whole run: {data['peak_rss_mb']:.0f} MB."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--modules", action="append", metavar="SPLIT_REPO",
                    help="measure the modules of this published split (its index repo, e.g. "
                         "bench/vgg-fmnist-distilled) instead of split_fmnist.py's; repeatable; section "
                         "inference-modules")
    ap.add_argument("--render", action="store_true",
                    help="only re-render the sections whose results are saved (keeping their command and machine)")
    args = ap.parse_args()
    setup_home()
    header = f"Command: `{command()}`  \nMachine: {machine()}\n\n"
    if args.render:
        for section, name, draw in (("inference", "inference_fmnist.json", render),
                                    ("inference-modules", "inference_modules.json", render_modules)):
            if (RESULTS / name).exists():
                write_section(section, (section_header(section) or header)
                              + draw(json.loads((RESULTS / name).read_text())))
        return
    from hubmod.data import load_images

    images = load_images("fashion-mnist", "test").images[:256]
    if args.modules:
        data = {"splits": {prefix: measure_split(prefix, images, args.repeats) for prefix in args.modules}}
        data["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "inference_modules.json").write_text(json.dumps(data, indent=1))
        write_section("inference-modules", header + render_modules(data))
        return
    data = {"parents": {repo: measure(repo, images, args.repeats) for repo in PARENTS}}
    data["grouped_conv"] = grouped_vs_separate(args.repeats)
    data["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "inference_fmnist.json").write_text(json.dumps(data, indent=1))
    write_section("inference", header + render(data))


if __name__ == "__main__":
    main()
