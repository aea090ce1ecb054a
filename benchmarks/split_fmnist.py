"""Benchmark: split Fashion-MNIST parents into class modules and compose them again.

    python benchmarks/split_fmnist.py                 # everything (about 1.5 hours on 2 cores)
    python benchmarks/split_fmnist.py --only disjoint # one part

Parts:
* ``full``: a resnet18 and a VGG-style parent trained by examples/train_parent.py on all ten classes,
  split with GradSplitter's defaults but no distillation (the modules keep the parent's weights);
  parent accuracy (raw and with its classifier refit on the split's data), composed accuracy on the
  test split, kept kernels per class, module params and MACs against the parent, and split wall
  time by phase.
* ``wide``: a VGG-style parent at VGG widths (64-128-256 channels, the narrow default is
  32-64-128), split with the reduced budget of ``WIDE_OPTIONS`` (a default-budget split of it
  would take about two hours here); reported like ``full``.
* ``distill``: the VGG-style parent of ``full`` split with a short search budget and the parent
  distilled into the chosen modules (GradSplitter's default; ``full`` and ``wide`` switch it off
  to measure the paper's frozen-weight modules).
* ``disjoint``: a 1-channel 28 px VGG trained on classes 0-4 and a 3-channel 32 px resnet18 trained
  on classes 5-9, split, and all ten modules composed on raw images, under each calibration.

Results go to benchmarks/results/*.json and into BENCHMARKS.md with this command and the machine.
"""

from __future__ import annotations

import argparse
import json
import time

from common import RESULTS, command, ensure_parent, machine, part_section, pct, setup_home

PARENTS = {
    "bench/resnet18-fmnist": ["--arch", "resnet18", "--epochs", "3"],
    "bench/vgg-fmnist": ["--arch", "hubmod_vgg", "--epochs", "3"],
}
WIDE_CFG = [64, 64, "M", 128, 128, "M", 256, 256, "M"]
WIDE = {"bench/vgg64-fmnist": ["--arch", "hubmod_vgg", "--epochs", "3", "--model-args", json.dumps({"cfg": WIDE_CFG})]}
WIDE_OPTIONS = {"train_per_class": 200, "val_per_class": 200, "mask_lr": 0.03, "max_cycles": 4, "tolerance": 1.5,
                "distill_epochs": 0}
# ``full``, ``wide`` and ``disjoint`` measure the paper's method: modules keep the parent's weights.
FULL_OPTIONS = {"distill_epochs": 0}
# ``distill``: the same search on a short budget, then the parent distilled into the modules.
DISTILL = {"bench/vgg-fmnist": PARENTS["bench/vgg-fmnist"]}
DISTILL_OPTIONS = {"train_per_class": 200, "val_per_class": 200, "mask_lr": 0.02, "max_cycles": 6, "tolerance": 2.0,
                   "distill_epochs": 3, "distill_slack": 4.5, "distill_per_class": 2000}
DISJOINT = {
    "bench/vgg-fmnist-0to4": ["--arch", "hubmod_vgg", "--epochs", "3", "--classes", "0-4"],
    "bench/resnet18-fmnist-5to9": ["--arch", "resnet18", "--epochs", "3", "--classes", "5-9", "--in-chans", "3",
                                   "--size", "32"],
}


def run_full(seed: int, parents: dict[str, list[str]] = PARENTS, options: dict | None = None,
             suffix: str = "") -> dict:
    """Split each parent; modules go to ``{parent}{suffix}-{class}``."""
    import hubmod

    out = {}
    for repo, args in parents.items():
        info = ensure_parent(repo, args)
        t = time.perf_counter()
        report = hubmod.split(repo, "fashion-mnist", seed=seed, hub="local", options=options,
                              repo_prefix=repo + suffix)
        wall = time.perf_counter() - t
        d = report.to_dict()
        d["wall_seconds"] = wall
        d["parent_train_seconds"] = info["train_seconds"]
        d["parent_args"] = args
        out[repo] = d
        print(f"{repo}: composed {report.composed_accuracy:.4f} parent {report.parent_accuracy:.4f} refit "
              f"{report.parent_refit_accuracy:.4f} kept {report.mean_kept_kernels:.3f} in {wall:.0f}s", flush=True)
    return out


def run_disjoint(seed: int) -> dict:
    import hubmod
    from hubmod.data import FASHION_MNIST_CLASSES

    reports = {}
    for repo, args in DISJOINT.items():
        ensure_parent(repo, args)
        t = time.perf_counter()
        r = hubmod.split(repo, "fashion-mnist", seed=seed, hub="local", options=FULL_OPTIONS)
        reports[repo] = {"composed_accuracy": r.composed_accuracy, "parent_accuracy": r.parent_accuracy,
                         "mean_kept_kernels": r.mean_kept_kernels, "wall_seconds": time.perf_counter() - t}
    (a, b) = DISJOINT
    refs = [f"{a}:{c}" for c in FASHION_MNIST_CLASSES[:5]] + [f"{b}:{c}" for c in FASHION_MNIST_CLASSES[5:]]
    results = {}
    for cal in ("platt", "minmax", "none"):
        model = hubmod.compose(refs, output=f"bench/disjoint-{cal}", calibration_method=cal, hub="local")
        rep = hubmod.evaluate(f"bench/disjoint-{cal}", "fashion-mnist", hub="local")
        recall = {k: v["recall"] for k, v in rep.per_class.items()}
        results[cal] = {"accuracy": rep.accuracy, "per_class_recall": recall, "calibration": model.calibration}
        print(f"disjoint {cal}: {rep.accuracy:.4f}", flush=True)
    return {"parents": reports, "compose": results, "refs": refs}


def render_full(data: dict, title: str, intro: str = "") -> str:
    lines = [
        f"## {title}",
        "",
        *([intro, ""] if intro else []),
        "| parent | parent acc. | parent, classifier refit | composed 10 modules | Δ vs parent | mean kept kernels | "
        "module params / parent | module MACs / parent | split wall time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for repo, d in data.items():
        rows = d["rows"]
        params = sum(r["params"] for r in rows) / len(rows) / d["parent_params"]
        macs = sum(r["macs"] for r in rows) / len(rows) / d["parent_macs"]
        lines.append(
            f"| `{repo}` | {pct(d['parent_accuracy'])} | {pct(d['parent_refit_accuracy'])} | "
            f"{pct(d['composed_accuracy'])} | {100 * (d['composed_accuracy'] - d['parent_accuracy']):+.2f} pt | "
            f"{pct(d['mean_kept_kernels'])} | {pct(params)} | {pct(macs)} | {d['wall_seconds']:.0f} s |")
    for repo, d in data.items():
        lines += ["", f"**{repo}** ({d['parent_kernels']:,} kernels, {d['parent_params']:,} params, "
                      f"{d['parent_macs']:,} MACs; parent trained in {d['parent_train_seconds']:.0f} s with "
                      f"`{' '.join(d['parent_args'])}`). Split phases: "
                      + ", ".join(f"{k} {v:.0f} s" for k, v in d["seconds"].items())
                      + f"; mask epochs run {d['method_metrics']['cycles_run']}, chosen "
                      f"{d['method_metrics']['chosen_cycle']}"
                      f"{', distilled' if d['method_metrics'].get('distilled') else ''}.", "",
                  "| class | kept kernels | params | MACs | MACs / parent | precision | recall | F1 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in d["rows"]:
            lines.append(f"| {r['class_name']} | {pct(r['kept_kernels'])} | {r['params']:,} | {r['macs']:,} | "
                         f"{pct(r['macs'] / d['parent_macs'])} | {pct(r['test_precision'])} | "
                         f"{pct(r['test_recall'])} | {pct(r['test_f1'])} |")
        hist = d["method_metrics"]["history"]
        lines += ["", "Validation accuracy / mean kept kernels after each mask epoch: "
                  + ", ".join(f"{h['cycle']}: {pct(h['val_accuracy'])} / {pct(h['retention'])}"
                              + (f" (distilled: {pct(h['distilled_val_accuracy'])})"
                                 if "distilled_val_accuracy" in h else "") for h in hist)
                  + f" (parent on the same validation images: {pct(d['method_metrics']['parent_val_accuracy'])})."]
    return "\n".join(lines)


def render_disjoint(data: dict) -> str:
    p = data["parents"]
    lines = ["## Composing modules of two parents trained on disjoint classes", "",
             "Classes 0-4 from a 1-channel 28 px `hubmod_vgg`, classes 5-9 from a 3-channel 32 px `resnet18`, "
             "split without distillation (`distill_epochs=0`); "
             "each module preprocesses the raw 28 px gray test images itself. All 10,000 test images.", "",
             "| parent | its own 5 classes: parent acc. | its modules composed | mean kept kernels | split time |",
             "|---|---:|---:|---:|---:|"]
    for repo, d in p.items():
        lines.append(f"| `{repo}` | {pct(d['parent_accuracy'])} | {pct(d['composed_accuracy'])} | "
                     f"{pct(d['mean_kept_kernels'])} | {d['wall_seconds']:.0f} s |")
    lines += ["", "| calibration | 10-class accuracy |", "|---|---:|"]
    for cal, d in data["compose"].items():
        lines.append(f"| {cal} | {pct(d['accuracy'])} |")
    return "\n".join(lines)


PARTS = ("full", "wide", "distill", "disjoint")


def _intro(part: str) -> tuple[str, str]:
    """The title and the sentence above a part's table (from the options this script runs it with)."""
    if part == "full":
        return ("GradSplitter on Fashion-MNIST parents", "The modules keep the parent's weights, as in the paper "
                "(`--option distill_epochs=0`); every other option at the default setting, whose mask search is "
                "short because distillation normally follows it and wins back what the masks lose. The "
                "published method's longer search is `-p preset=paper`.")
    if part == "wide":
        options = " ".join(f"--option {k}={v}" for k, v in WIDE_OPTIONS.items())
        widths = "-".join(map(str, WIDE_CFG))
        return ("GradSplitter on a wider VGG-style parent", f"The VGG-style parent at VGG widths: `hubmod_vgg` with "
                f"{widths} (the default above is 32-64-128), split with `{options}`.")
    options = " ".join(f"--option {k}={v}" for k, v in DISTILL_OPTIONS.items())
    return ("GradSplitter with distillation", "GradSplitter with distillation (its default): the masks may lose "
            "`distill_slack` more points on validation, then the parent is distilled into the chosen modules' "
            "backbones and heads and the result must be within `tolerance` again. Split with "
            f"`{options}`; all other options at their defaults.")


def _section(part: str, data: dict) -> str:
    if part == "disjoint":
        return render_disjoint(data)
    return render_full(data, *_intro(part))


def _measure(part: str, seed: int) -> dict:
    if part == "full":
        return run_full(seed, PARENTS, FULL_OPTIONS)
    if part == "wide":
        return run_full(seed, WIDE, WIDE_OPTIONS)
    if part == "distill":
        return run_full(seed, DISTILL, DISTILL_OPTIONS, suffix="-distilled")
    return run_disjoint(seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=PARTS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", action="store_true",
                    help="only re-render the sections whose results are saved (keeping their command and machine)")
    args = ap.parse_args()
    setup_home()
    header = f"Command: `{command()}`  \nMachine: {machine()}\n\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        if args.only in (None, part):
            part_section(f"split-{part}", RESULTS / f"split_fmnist_{part}.json", args.render, header,
                         lambda part=part: _measure(part, args.seed), lambda data, part=part: _section(part, data))


if __name__ == "__main__":
    main()
