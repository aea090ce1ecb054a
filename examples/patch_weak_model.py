"""Patch a weak Fashion-MNIST classifier with class modules split from a strong parent.

    python examples/patch_weak_model.py                                   # CNNSplitter modules
    python examples/patch_weak_model.py --method gradsplitter --classes Shirt,Coat

The scenario CNNSplitter was made for (Qi et al., ASE 2022). Step by step, on the embedded hub:

1. a strong parent (``--strong``, trained by examples/train_parent.py if the hub lacks it);
2. a weak model: a small VGG trained for one epoch on all images except that it saw only 20 of
   each of Shirt, Pullover and Coat, so it never predicts them (the classes to patch);
3. the strong parent split with ``--method`` for the ``--classes`` to patch;
4. ``hubmod patch WEAK --module STRONG:CLASS`` for each class;
5. precision / recall / F1 of the patched class and accuracy on the other classes, before and after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEAK_CLASSES = "Shirt,Pullover,Coat"
WEAK_ARGS = ["--arch", "hubmod_vgg", "--epochs", "1", "--model-args", '{"cfg": [16, "M", 32, "M"]}',
             "--scarce", WEAK_CLASSES, "--scarce-count", "20", "--seed", "1"]
STRONG_ARGS = ["--arch", "hubmod_vgg", "--epochs", "3"]


def ensure_parent(repo: str, args: list[str]) -> None:
    from hubmod.hub import LocalHub

    if not LocalHub().repo_exists(repo):
        print(f"training {repo} ({' '.join(args)}) ...", flush=True)
        subprocess.run([sys.executable, str(HERE / "train_parent.py"), "--repo", repo, *args], check=True,
                       stdout=subprocess.DEVNULL)


def other_accuracy(report, target: str) -> float:
    """Accuracy on the images of every class but ``target``, from per-class recall and support."""
    rows = [m for name, m in report.per_class.items() if name != target]
    return sum(m["recall"] * m["support"] for m in rows) / sum(m["support"] for m in rows)


def patch_and_measure(weak: str, strong: str, method: str, classes: list[str], options: dict | None = None,
                      strategy: str = "minmax", seed: int = 0) -> dict:
    """Split ``strong`` for ``classes`` with ``method``, then patch ``weak`` with each module and measure."""
    import time

    import hubmod

    prefix = f"{strong}-{method}"
    t = time.perf_counter()
    split = hubmod.split(strong, "fashion-mnist", method=method, classes=classes, repo_prefix=prefix,
                         options=options, seed=seed, hub="local")
    result = measure_patches(weak, prefix, classes, strategy)
    result.update(strong=strong, method=method, split_seconds=time.perf_counter() - t - result["seconds"],
                  split_composed_accuracy=split.composed_accuracy)
    return result


def measure_patches(weak: str, split_repo: str, classes: list[str], strategy: str = "minmax") -> dict:
    """Patch ``weak`` with ``split_repo:CLASS`` for each class; the patched class's metrics before and after."""
    import time

    import hubmod
    from hubmod.refs import slugify

    t = time.perf_counter()
    before = hubmod.evaluate(weak, "fashion-mnist", hub="local")
    rows = []
    for name in classes:
        out = f"{weak}-patched-{slugify(name)}-{slugify(split_repo.split('/')[-1])}"
        model = hubmod.patch(weak, f"{split_repo}:{name}", strategy=strategy, output=out, hub="local")
        after = hubmod.evaluate(out, "fashion-mnist", hub="local")
        row = {"class": name, "module": model.provenance["module_repo_id"], "patched_repo": out,
               "kept_kernels": model.module.config.metrics.get("kept_kernels")}
        for when, rep in (("before", before), ("after", after)):
            m = rep.per_class[name]
            row[when] = {"precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
                         "other_accuracy": other_accuracy(rep, name), "accuracy": rep.accuracy}
        rows.append(row)
    return {"weak": weak, "split_repo": split_repo, "strategy": strategy, "rows": rows,
            "seconds": time.perf_counter() - t}


def print_rows(result: dict) -> None:
    print(f"\n{result['weak']} patched with modules of {result['split_repo']} ({result['strategy']}):")
    print(f"{'class':<12} {'precision':>17} {'recall':>17} {'F1':>17} {'other classes acc.':>19}")
    for r in result["rows"]:
        b, a = r["before"], r["after"]
        cells = [f"{100 * b[k]:6.2f} -> {100 * a[k]:6.2f}" for k in ("precision", "recall", "f1", "other_accuracy")]
        print(f"{r['class']:<12} " + " ".join(f"{c:>17}" for c in cells))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strong", default="demo/vgg-fmnist", help="strong parent repo (trained if missing)")
    ap.add_argument("--weak", default="demo/weak-vgg-fmnist-scarce", help="weak model repo (trained if missing)")
    ap.add_argument("--method", default="cnnsplitter", help="splitting method for the modules")
    ap.add_argument("--classes", default=WEAK_CLASSES, help="classes to patch")
    ap.add_argument("--strategy", default="minmax", help="minmax (CNNSplitter's rule) or platt")
    ap.add_argument("-p", "--option", action="append", default=[], help="method option KEY=VALUE")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    ensure_parent(args.strong, STRONG_ARGS)
    ensure_parent(args.weak, WEAK_ARGS)
    options = dict(o.split("=", 1) for o in args.option)
    result = patch_and_measure(args.weak, args.strong, args.method, [c.strip() for c in args.classes.split(",")],
                               options, args.strategy)
    print(json.dumps(result, indent=1)) if args.json else print_rows(result)
    return result


if __name__ == "__main__":
    main()
