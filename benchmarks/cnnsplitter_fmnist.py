"""Benchmark: CNNSplitter beside GradSplitter, and patching a weak model with modules of either.

    python benchmarks/cnnsplitter_fmnist.py                  # both parts
    python benchmarks/cnnsplitter_fmnist.py --only patch     # one part

Parts:
* ``compare``: CNNSplitter (defaults) splits the Fashion-MNIST parents of split_fmnist.py into modules
  published under ``<parent>-cnnsplitter``; the table puts it beside GradSplitter's figures from
  benchmarks/results/split_fmnist_full.json (run ``split_fmnist.py --only full`` first).
* ``patch``: a weak model (small VGG, one epoch, only 20 images of each of three classes) patched for them
  with the VGG parent's CNNSplitter modules and with its GradSplitter modules (examples/patch_weak_model.py).

Results go to benchmarks/results/*.json and into BENCHMARKS.md with this command and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from common import (
    RESULTS,
    ROOT,
    command,
    ensure_parent,
    machine,
    method_row,
    pct,
    section_header,
    setup_home,
    write_section,
)
from split_fmnist import PARENTS

sys.path.insert(0, str(ROOT / "examples"))
from patch_weak_model import WEAK_ARGS, measure_patches  # noqa: E402

PATCH_CLASSES = ["Shirt", "Pullover", "Coat"]
WEAK = "bench/weak-vgg-fmnist-scarce"
STRONG = "bench/vgg-fmnist"


def run_compare(seed: int) -> dict:
    import hubmod

    out = {}
    for repo, args in PARENTS.items():
        info = ensure_parent(repo, args)
        t = time.perf_counter()
        report = hubmod.split(repo, "fashion-mnist", method="cnnsplitter", repo_prefix=f"{repo}-cnnsplitter",
                              seed=seed, hub="local")
        d = report.to_dict()
        d["wall_seconds"] = time.perf_counter() - t
        d["parent_train_seconds"] = info["train_seconds"]
        out[repo] = d
        print(f"{repo}: cnnsplitter composed {report.composed_accuracy:.4f} parent {report.parent_accuracy:.4f} "
              f"kept {report.mean_kept_kernels:.3f} in {d['wall_seconds']:.0f}s", flush=True)
    return out


def run_patch() -> dict:
    ensure_parent(STRONG, PARENTS[STRONG])
    ensure_parent(WEAK, WEAK_ARGS)
    out = {}
    for method, split_repo in (("cnnsplitter", f"{STRONG}-cnnsplitter"), ("gradsplitter", STRONG)):
        out[method] = measure_patches(WEAK, split_repo, PATCH_CLASSES)
        print(f"patched with {method}: " + ", ".join(
            f"{r['class']} F1 {r['before']['f1']:.3f}->{r['after']['f1']:.3f}" for r in out[method]["rows"]),
              flush=True)
    return out


def render_compare(cnn: dict, grad: dict) -> str:
    lines = ["## CNNSplitter beside GradSplitter", "",
             "Same parents, same seed, same test split (all 10,000 images); GradSplitter's row is from "
             "`split_fmnist.py --only full`.", "",
             "| parent | method | parent acc. | composed 10 modules | Δ vs parent | mean kept kernels | "
             "module MACs / parent | module params / parent | split wall time |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for repo in cnn:
        for name, d in (("GradSplitter", grad.get(repo)), ("CNNSplitter", cnn[repo])):
            if d is None:
                continue
            lines.append(method_row(repo, name, d))
    for repo, d in cnn.items():
        m = d["method_metrics"]
        lines += ["", f"**{repo}, CNNSplitter**: {m['generations_run']} generations, {m['candidates_scored']} "
                      f"candidates scored; validation accuracy of the best {pct(m['val_accuracy'])} (parent "
                      f"{pct(m['parent_val_accuracy'])}); phases: "
                      + ", ".join(f"{k} {v:.0f} s" for k, v in d["seconds"].items())
                      + "; initial keep ratios from the sensitivity analysis: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in m["initial_keep_ratio"].items()) + "."]
        lines += ["", "| class | kept kernels | MACs / parent | precision | recall | F1 |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in d["rows"]:
            lines.append(f"| {r['class_name']} | {pct(r['kept_kernels'])} | {pct(r['macs'] / d['parent_macs'])} | "
                         f"{pct(r['test_precision'])} | {pct(r['test_recall'])} | {pct(r['test_f1'])} |")
    return "\n".join(lines)


def render_patch(data: dict, weak_info: dict) -> str:
    lines = ["## Patching a weak model with modules", "",
             f"Weak model `{WEAK}`: `examples/train_parent.py {' '.join(WEAK_ARGS)}` (test accuracy "
             f"{pct(weak_info['test_accuracy'])}). Strong parent `{STRONG}`. Each row patches one class with the "
             "strong parent's module (min-max calibration, CNNSplitter's rule); other classes: accuracy on the "
             "test images of the 9 other classes; all: accuracy on all 10. Test split, 10,000 images.", "",
             "| module method | class | module kept kernels | precision | recall | F1 | other classes acc. | all |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for method, result in data.items():
        for r in result["rows"]:
            b, a = r["before"], r["after"]
            keys = ("precision", "recall", "f1", "other_accuracy", "accuracy")
            cells = " | ".join(f"{pct(b[k])} → {pct(a[k])}" for k in keys)
            lines.append(f"| {method} | {r['class']} | {pct(r['kept_kernels'] or 0.0)} | {cells} |")
    for method, result in data.items():
        rows = result["rows"]
        mean = {k: sum(r["after"][k] - r["before"][k] for r in rows) / len(rows)
                for k in ("precision", "recall", "f1", "other_accuracy")}
        lines.append("")
        changes = ", ".join(f"{k} {100 * v:+.2f} pt" for k, v in mean.items())
        lines.append(f"Mean change with {method} modules: {changes}.")
    return "\n".join(lines)


def _saved(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["compare", "patch"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", action="store_true",
                    help="only re-render the sections whose results are saved (keeping their command and machine)")
    args = ap.parse_args()
    setup_home()
    header = f"Command: `{command()}`  \nMachine: {machine()}\n\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "compare"):
        cnn = _saved("cnnsplitter_fmnist.json") if args.render else run_compare(args.seed)
        if cnn is not None:
            if not args.render:
                (RESULTS / "cnnsplitter_fmnist.json").write_text(json.dumps(cnn, indent=1))
            head = (section_header("cnnsplitter-compare") or header) if args.render else header
            write_section("cnnsplitter-compare", head + render_compare(cnn, _saved("split_fmnist_full.json") or {}))
    if args.only in (None, "patch"):
        data = _saved("patch_fmnist.json") if args.render else run_patch()
        if data is not None:
            if not args.render:
                (RESULTS / "patch_fmnist.json").write_text(json.dumps(data, indent=1))
            weak_info = json.loads((RESULTS / "parents.json").read_text())[WEAK]
            write_section("patch", ((section_header("patch") or header) if args.render else header)
                          + render_patch(data, weak_info))


if __name__ == "__main__":
    main()
