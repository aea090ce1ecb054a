"""Benchmark: what a split costs as the parent's size, its class count and the classes extracted grow.

    python benchmarks/split_scaling.py            # every run not saved yet (cheapest first)
    python benchmarks/split_scaling.py --parts grouping,classes   # only some parts (of PARTS)
    python benchmarks/split_scaling.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

A small VGG-style parent (`hubmod_vgg`, 16-32-64 channels, 28 px gray) with 100 and with 1,000
output classes, from which `--classes` extracts the first 1, 10 and 100 classes with GradSplitter's
default setting; beside them the same parent on Fashion-MNIST's own ten classes. The labels of the
100- and 1,000-class parents are synthetic: real Fashion-MNIST training images, drawn with
replacement, 220 per class (10 per class for the test split), each class a random draw. They measure
cost only, so no accuracy is reported. Each split runs in a process of its own (its peak RSS is its
own) and is not published. The rows "every class drawn" run the same split with the sample of the
other classes switched off, as every split drew before (hubmod.split_data.class_plan). k = 100 runs as
ten searches of ten classes each (GradSplitter's `classes_per_search`).

Parent size: resnet18, resnet50 and mobilenetv3_small_100 trained by examples/train_parent.py on
Fashion-MNIST (200 images per class held out), one module and all ten split with the default
setting; their accuracy is reported in the sections that trained them (families), so here only cost.

What grouping costs in accuracy: all ten modules of a small Fashion-MNIST VGG-style parent (the same
16-32-64 channels, trained by examples/train_parent.py with 200 images per class held out), split in
one search of ten classes (the default), two of five and five of two, with three seeds each; composed
accuracy on the test split against the parent's.

Results go to benchmarks/results/split_scaling.json and BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, ensure_parent, pct, section_main

OUT = RESULTS / "split_scaling.json"
SECTION = "split-scaling"
WORK = ROOT / "benchmarks" / ".work" / "scaling"
CFG = [16, "M", 32, "M", 64, "M"]
PER_CLASS, TEST_PER_CLASS, PARENT_PER_CLASS = 220, 10, 20
# (parent classes, classes extracted, every class drawn?): what the issue asks (cost against k and
# against the parent's class count) runs first, then the parent-size rows, then the comparison with
# drawing every class; a run that is cut short leaves the earlier rows saved.
# k = 100 runs as ten searches of ten classes (GradSplitter's classes_per_search).
RUNS = [(10, 1, False), (10, 10, False), (100, 1, False), (100, 10, False), (1000, 1, False), (1000, 10, False),
        (100, 100, False), (1000, 100, False), (100, 1, True), (1000, 1, True)]


HO = ["--holdout-per-class", "200"]
SIZES = {  # parent size: the hub's parents (trained here if missing), cheapest split first
    "resnet18": ("bench/resnet18-fmnist-ho", ["--arch", "resnet18", "--epochs", "1", *HO]),
    "mobilenetv3_small_100": ("bench/mobilenetv3s-fmnist-ho",
                              ["--arch", "mobilenetv3_small_100", "--epochs", "1", *HO]),
    "resnet50": ("bench/resnet50-fmnist-ho", ["--arch", "resnet50", "--epochs", "1", *HO]),
}
SIZE_RUNS = [(arch, k) for arch in SIZES for k in (1, 10)]  # resnet50, the costliest to train and split, last
GROUP_PARENT = ("bench/vgg16to64-fmnist-ho", ["--arch", "hubmod_vgg", "--epochs", "3", "--model-args",
                                              json.dumps({"cfg": CFG}), *HO])
GROUP_RUNS = (10, 5, 2)  # classes_per_search for all ten classes of GROUP_PARENT
GROUP_SEEDS = (0, 1, 2)
PARTS = ("grouping", "classes", "sizes", "every-class")  # what a run measures (--parts), in this order


def _key(classes: int, k: int, whole: bool) -> str:
    return f"{classes} classes, {k} extracted" + (", every class drawn" if whole else "")


def dataset(classes: int) -> str:
    """A save_to_disk folder of ``classes`` synthetic classes of real Fashion-MNIST images (10: the real labels)."""
    if classes == 10:
        return "fashion-mnist"
    path = WORK / f"data-{classes}"
    if (path / "dataset_dict.json").exists():
        return str(path)
    import torch
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    from hubmod.data import load_images

    source = load_images("fashion-mnist", "train")
    gen = torch.Generator().manual_seed(classes)
    features = Features({"image": Image(), "label": ClassLabel(names=[f"class {i}" for i in range(classes)])})
    parts = {}
    for split, per_class in (("train", PER_CLASS), ("test", TEST_PER_CLASS)):
        rows = torch.randint(0, len(source), (classes * per_class,), generator=gen)
        labels = torch.arange(classes).repeat_interleave(per_class)
        parts[split] = Dataset.from_dict({"image": list(source.images[rows, 0].numpy()), "label": labels.tolist()},
                                         features=features)
    DatasetDict(parts).save_to_disk(str(path))
    return str(path)


def parent(classes: int) -> str:
    """The parent, trained for one epoch on PARENT_PER_CLASS images per class, saved as a timm-format dir."""
    path = WORK / f"parent-{classes}"
    if (path / "config.json").exists():
        return str(path)
    import torch

    from hubmod.data import load_images
    from hubmod.training import fashion_mnist_config, save_parent, train_parent

    data = load_images(dataset(classes), "train")
    data = data.subset(data.stratified(PARENT_PER_CLASS, torch.Generator().manual_seed(0)))
    trained = train_parent("hubmod_vgg", data, fashion_mnist_config(1, 28), epochs=1, seed=0, progress=False,
                           model_args={"cfg": CFG})
    save_parent(trained, path, dataset_id=None)
    return str(path)


def child(spec: dict) -> dict:
    """One split in this process: ``spec`` names the parent (a synthetic class count, or a hub parent by
    architecture), the classes extracted and whether every class is drawn."""
    import hubmod
    from hubmod import split_pipeline
    from hubmod.parents import load_parent
    from hubmod.split_data import ClassPlan

    if spec.get("whole"):  # as every split drew before the sample of the other classes
        split_pipeline.class_plan = lambda *args: ClassPlan()
    if "arch" in spec or "per_search" in spec:  # a hub parent trained on Fashion-MNIST
        source = SIZES[spec["arch"]][0] if "arch" in spec else GROUP_PARENT[0]
        data, hub = "fashion-mnist", "local"
        names = load_parent(source, hub=hub).class_names
    else:
        source, data, hub = parent(spec["classes"]), dataset(spec["classes"]), None
        names = json.loads((Path(source) / "config.json").read_text())["label_names"]
    t = time.perf_counter()
    options = {"classes_per_search": spec["per_search"]} if "per_search" in spec else None
    report = hubmod.split(source, data, classes=names[: spec["k"]], seed=spec.get("seed", 0), publish=False,
                          progress=False, hub=hub, options=options)
    d = report.to_dict()
    return {**spec, "parent_accuracy": report.parent_accuracy, "composed_accuracy": report.composed_accuracy,
            "classes": len(names), "extracted": spec["k"], "every_class_drawn": bool(spec.get("whole")),
            "wall_seconds": time.perf_counter() - t, "seconds": d["seconds"],
            "parent_params": d["parent_params"], "parent_macs": d["parent_macs"],
            "train_images": report.modules[0].config.dataset["train_samples"],
            "val_images": report.modules[0].config.dataset.get("val_samples"),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run(results: dict, part: str, key: str, spec: dict) -> None:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
    r = results[part][key] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{key}: {r['wall_seconds']:.0f} s, {r['train_images']} training images, {r['peak_rss_mb']:.0f} MB",
          flush=True)
    OUT.write_text(json.dumps(results, indent=1))


def measure() -> dict:
    WORK.mkdir(parents=True, exist_ok=True)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results.setdefault("runs", {})
    results.setdefault("sizes", {})
    results.setdefault("grouping", {})
    results.update({"parent_cfg": CFG, "per_class": PER_CLASS, "test_per_class": TEST_PER_CLASS,
                    "parent_per_class": PARENT_PER_CLASS})
    for seed in GROUP_SEEDS if "grouping" in PARTS else ():
        for per_search in GROUP_RUNS:
            key = f"{per_search} classes per search, seed {seed}"
            if key not in results["grouping"]:
                results["group_parent"] = ensure_parent(*GROUP_PARENT)
                _run(results, "grouping", key, {"per_search": per_search, "k": 10, "seed": seed})

    def class_runs(whole_ones: bool) -> None:
        for classes, k, whole in RUNS:
            key = _key(classes, k, whole)
            if whole == whole_ones and key not in results["runs"]:
                parent(classes)  # outside the timed child
                _run(results, "runs", key, {"classes": classes, "k": k, "whole": whole})

    if "classes" in PARTS:
        class_runs(whole_ones=False)
    for arch, k in SIZE_RUNS if "sizes" in PARTS else ():
        key = f"{arch}, {k} extracted"
        if key not in results["sizes"]:
            ensure_parent(*SIZES[arch])
            _run(results, "sizes", key, {"arch": arch, "k": k})
    if "every-class" in PARTS:
        class_runs(whole_ones=True)  # the comparison with drawing every class, last
    return results


def render(result: dict, header: str) -> str:
    phases = ("load_parent", "load_data", "search", "extract", "evaluate")
    widths = "-".join(str(c) for c in result["parent_cfg"] if c != "M")
    runs = result["runs"]
    lines = [header.rstrip(), "",
             f"GradSplitter's default setting on a `hubmod_vgg` parent ({widths} channels) with 10 "
             "(Fashion-MNIST's own labels), 100 and 1,000 output classes (synthetic labels on real Fashion-MNIST "
             f"images, {result['per_class']} per class: for cost only, no accuracy is reported). `--classes` takes "
             "the first k classes; each split runs alone in its own process, unpublished. The default budgets "
             "ask for 100 training, 200 validation and 1,000 distillation images per class; a synthetic class has "
             f"{result['per_class']}, so those splits scale the budgets down to what a class holds (the "
             "training and validation columns): compare the synthetic rows with each other, not with the "
             "ten-class ones. Times in seconds.", "",
             "| parent classes | extracted (k) | images drawn (each search) | training images (each search) | "
             "validation images | "
             + " | ".join(phases) + " | total | per module | peak RSS |",
             "|---:|---:|---|---:|---:|" + "---:|" * len(phases) + "---:|---:|---:|"]
    from hubmod.split_data import class_plan
    from hubmod.splitters import get_splitter

    per_search = get_splitter("gradsplitter", None).config.classes_per_search
    for r in sorted(runs.values(), key=lambda r: (r["every_class_drawn"], r["classes"], r["extracted"])):
        k = r["extracted"]
        searches, group = -(-k // per_search), min(k, per_search)
        plan = class_plan(r["classes"], list(range(group)), samples_others=not r["every_class_drawn"])
        drawn = "every class" if plan.targets is None else f"{group} + {plan.others} classes' worth"
        drawn = drawn if searches == 1 else f"{searches} searches, each {drawn}"
        lines.append(f"| {r['classes']:,} | {r['extracted']} | {drawn} | {r['train_images']:,} | "
                     f"{r['val_images']:,} | " + " | ".join(f"{r['seconds'].get(p, 0.0):.0f}" for p in phases)
                     + f" | {r['wall_seconds']:.0f} | {r['wall_seconds'] / r['extracted']:.1f} | "
                       f"{r['peak_rss_mb']:.0f} MB |")
    pairs = [(c, k) for c in (100, 1000) for k in (1, 10, 100) if _key(c, k, False) in runs]
    if pairs:
        lines += ["", "Search time against k: " + "; ".join(
            f"{c:,} classes, k={k}: {runs[_key(c, k, False)]['seconds']['search']:.0f} s" for c, k in pairs) + "."]
    if not any(r["extracted"] == 100 for r in runs.values()):
        lines += ["", f"k = 100 has not been measured yet. It runs as {-(-100 // per_search)} searches of "
                  f"{per_search} classes (`classes_per_search`), each drawing its own classes' images and a sample "
                  "of the others; before searches were grouped, one search of 100 modules would have trained "
                  "every module on 100 + 100 classes' worth of images, about 100 times the k = 10 search."]
    whole = [c for c in (100, 1000) if _key(c, 1, True) in runs and _key(c, 1, False) in runs]
    lines += [""] if whole else []
    for c in whole:
        a, b = runs[_key(c, 1, True)], runs[_key(c, 1, False)]
        lines.append(f"One module of the {c:,}-class parent: {a['wall_seconds']:.0f} s on {a['train_images']:,} "
                     f"training images when every class is drawn, {b['wall_seconds']:.0f} s on "
                     f"{b['train_images']:,} with the sample "
                     f"({pct(b['wall_seconds'] / a['wall_seconds'])} of the time).  ")
    grouping = result.get("grouping", {})
    if grouping:
        lines += ["", f"What grouping costs in accuracy: all ten modules of `{GROUP_PARENT[0]}` (the same {widths} "
                  "channels, trained on Fashion-MNIST for three epochs with 200 images per class held out, "
                  f"{pct(result['group_parent']['test_accuracy'])} on the test split), split with the default "
                  "setting but for `classes_per_search`; composed accuracy on the 10,000 test images, the mean "
                  "(lowest-highest) over the seeds run, times the mean:",
                  "", "| classes per search | searches | seeds | composed | vs parent | search | total |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        parent_acc = result["group_parent"]["test_accuracy"]
        for per_search in sorted({r["per_search"] for r in grouping.values()}, reverse=True):
            rs = [r for r in grouping.values() if r["per_search"] == per_search]
            acc = [r["composed_accuracy"] for r in rs]
            mean = sum(acc) / len(acc)
            lines.append(f"| {per_search} | {-(-10 // per_search)} | {len(rs)} | {pct(mean)} "
                         f"({pct(min(acc))}-{pct(max(acc))}) | {100 * (mean - parent_acc):+.2f} pt | "
                         f"{sum(r['seconds']['search'] for r in rs) / len(rs):.0f} s | "
                         f"{sum(r['wall_seconds'] for r in rs) / len(rs):.0f} s |")
    sizes = result.get("sizes", {})
    if sizes:
        lines += ["", "Parent size: Fashion-MNIST parents of `examples/train_parent.py` (see the section on timm CNN "
                  "families for their accuracy), the default setting, one module and all ten:", "",
                  "| parent | params | MACs per image | extracted (k) | " + " | ".join(phases)
                  + " | total | per module | peak RSS |",
                  "|---|---:|---:|---:|" + "---:|" * len(phases) + "---:|---:|---:|"]
        for r in sizes.values():
            lines.append(f"| {r['arch']} | {r['parent_params']:,} | {r['parent_macs']:,} | {r['extracted']} | "
                         + " | ".join(f"{r['seconds'].get(p, 0.0):.0f}" for p in phases)
                         + f" | {r['wall_seconds']:.0f} | {r['wall_seconds'] / r['extracted']:.1f} | "
                           f"{r['peak_rss_mb']:.0f} MB |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        os.environ.setdefault("HUBMOD_HOME", str(ROOT / "benchmarks" / ".work" / "hubmod-home"))
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        print(json.dumps(child(json.loads(sys.argv[2]))))
    else:
        if "--parts" in sys.argv:  # (not section_main's: taken out before it parses the rest)
            at = sys.argv.index("--parts")
            asked = tuple(sys.argv[at + 1].split(","))
            if unknown := sorted(set(asked) - set(PARTS)):
                sys.exit(f"--parts: no part named {', '.join(unknown)}; the parts are {', '.join(PARTS)}")
            PARTS = asked
            del sys.argv[at:at + 2]
        section_main(__doc__, SECTION, "What a split costs as the parent's classes grow", OUT, measure, render)
