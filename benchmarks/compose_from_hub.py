"""Benchmark: compose by class name (`hubmod compose CLASS... --from-hub`) from a hub of four parents' modules.

    python benchmarks/compose_from_hub.py            # measure (uses the splits the other benchmarks made)
    python benchmarks/compose_from_hub.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

Every module of four splits already on the benchmark hub is published again, with today's cards
(class tags and `hubmod` metadata), to a fresh embedded hub: the VGG parent of classes 0-4 and the
resnet18 parent of classes 5-9 (reuse_fmnist.py), and the ten-class regnety_002 and
mobilenetv3_small_100 parents (families_fmnist.py). Every class then has three modules on the hub
(its five-class parent's and the two ten-class parents'). Three problems are composed by class name
only: without labels (by the fewest splits that cover the classes, the default, and by each class's
best recorded F1) and with `--fit fashion-mnist --shots 10` (chosen by measurement from the default
start, affine combiner; seeds 0-2), against composing from one fixed parent (the regnety parent, the
best ten-class parent here) with and without the same fit. Accuracy is on the problem's classes of
the Fashion-MNIST test split; the fit images come from the training split. Results go to
benchmarks/results/compose_from_hub.json and BENCHMARKS.md.
"""

from __future__ import annotations

import statistics
import time

from common import RESULTS, ROOT, pct, section_main
from reuse_fmnist import PROBLEMS

OUT = RESULTS / "compose_from_hub.json"
SECTION = "compose-from-hub"
SPLITS = ("bench/vgg-fmnist-0to4-ho-fast", "bench/resnet18-fmnist-5to9-ho-fast", "bench/regnety002-fmnist-ho-fast",
          "bench/mobilenetv3s-fmnist-ho-fast")
FIXED = "bench/regnety002-fmnist-ho-fast"
SHOTS = 10
SEEDS = (0, 1, 2)
DATASET = "fashion-mnist"


def _pool_hub():
    """The fresh hub holding every module of SPLITS, published again by this hubmod (so with tags)."""
    import hubmod
    from hubmod.hub import LocalHub
    from hubmod.split_index import SplitIndex

    source = LocalHub()
    pool = LocalHub(ROOT / "benchmarks" / ".work" / "fromhub-home" / "hub")
    for split in SPLITS:
        index = SplitIndex.from_snapshot(source.snapshot(split))
        for entry in index.modules:
            repo = "pool/" + entry.repo_id.split("/")[1]
            if not pool.repo_exists(repo):
                module = hubmod.compose([entry.repo_id], hub=source).class_modules[0]
                module.push_to_hub(repo, hub=pool)
    return source, pool


def _accuracy(model, test) -> float:

    return float((model(test.images).argmax(1) == test.labels).float().mean())


def _timed(call):
    t = time.perf_counter()
    model = call()
    return model, time.perf_counter() - t


def _chosen(model) -> dict:
    return {e["class_name"]: e["candidates"][e["chosen"]]["repo_id"] for e in model.selection["classes"]}


def run_problem(name: str, classes: list[str], source, pool) -> dict:
    import hubmod
    from hubmod.data import load_images

    test = load_images(DATASET, "test").for_classes(classes, name)
    out: dict = {"classes": classes, "test_images": len(test)}
    for key, rule in (("by_splits", "splits"), ("by_f1", "f1")):
        model, secs = _timed(lambda r=rule: hubmod.compose_from_hub(classes, hub=pool, unlabelled=r))
        out[key] = {"accuracy": _accuracy(model, test), "seconds": secs, "chosen": _chosen(model),
                    "calibration": model.calibration, "selection": model.selection}
    fits = []
    for seed in SEEDS:
        model, secs = _timed(lambda s=seed: hubmod.compose_from_hub(classes, hub=pool, fit=DATASET, shots=SHOTS,
                                                                    seed=s))
        fits.append({"seed": seed, "accuracy": _accuracy(model, test), "seconds": secs, "chosen": _chosen(model),
                     "calibration": model.calibration, "selection": model.selection})
    out["by_fit"] = fits
    refs = [f"{FIXED}:{c}" for c in classes]
    model, secs = _timed(lambda: hubmod.compose(refs, hub=source))
    out["fixed"] = {"accuracy": _accuracy(model, test), "seconds": secs, "calibration": model.calibration}
    out["fixed_fit"] = []
    for seed in SEEDS:
        model, secs = _timed(lambda s=seed: hubmod.compose(refs, hub=source, fit=DATASET, shots=SHOTS, seed=s))
        out["fixed_fit"].append({"seed": seed, "accuracy": _accuracy(model, test), "seconds": secs})
    return out


def measure() -> dict:
    t = time.perf_counter()
    source, pool = _pool_hub()
    out: dict = {"splits": list(SPLITS), "fixed": FIXED, "shots": SHOTS, "seeds": list(SEEDS),
                 "pool_seconds": time.perf_counter() - t, "problems": {}}
    for name, (first, second) in PROBLEMS.items():
        out["problems"][name] = run_problem(name, first + second, source, pool)
        print(name, {k: v.get("accuracy") for k, v in out["problems"][name].items() if isinstance(v, dict)},
              flush=True)
    out["seconds"] = time.perf_counter() - t
    return out


def _mean(rows: list[dict], key: str = "accuracy") -> float:
    return statistics.mean(r[key] for r in rows)


def _parents_used(chosen: dict) -> str:
    counts: dict[str, int] = {}
    for repo in chosen.values():
        parent = repo.split("/")[1].split("-fmnist")[0]
        counts[parent] = counts.get(parent, 0) + 1
    return ", ".join(f"{p} {n}" for p, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _verdict(result: dict) -> str:
    """What measuring the choice on ten images per class bought over the default without labels (computed)."""
    cells, spreads = [], []
    for name, p in result["problems"].items():
        cells.append(f"{name} {100 * (_mean(p['by_fit']) - p['by_splits']['accuracy']):+.2f}")
        accs = [r["accuracy"] for r in p["by_fit"]]
        spreads.append(f"{name} {100 * (max(accs) - min(accs)):.2f}")
    return ("`--fit` with K=10 against the default without labels, in points: " + ", ".join(cells) + ". Between "
            "the three draws of fit images the measured choice's accuracy spans " + ", ".join(spreads) + " points: "
            "ten images per class tell near-equal modules apart only roughly, so where one parent has every class "
            "the measured choice gains little over covering the classes with that parent, and what matters most "
            "without labels is not to choose by recorded F1.")


def render(result: dict, header: str) -> str:
    lines = [header.rstrip(), "",
             f"Modules of four splits (`{'`, `'.join(result['splits'])}`) published again to one fresh embedded hub: "
             "every class has three candidates (its five-class parent's and the two ten-class parents'). Composed by "
             f"class name only; `--fit` draws {result['shots']} images per class from the training split (seeds "
             f"{', '.join(map(str, result['seeds']))}, mean shown; from the whole split, since fewer than ten images "
             "of a class were held out by every candidate's parent at once, which compose says in a warning). "
             "Accuracy on the problem's Fashion-MNIST test images:", "",
             "| problem | from hub, no labels: fewest splits (default) | no labels: best recorded F1 | from hub, "
             f"`--fit` K=10 | one fixed parent (`{result['fixed'].split('/')[1]}`) | fixed parent, `--fit` K=10 | "
             "candidates | wall time: no labels / `--fit` |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, p in result["problems"].items():
        tried = sum(len(e["candidates"]) for e in p["by_f1"]["selection"]["classes"])
        lines.append(f"| {name} | {pct(p['by_splits']['accuracy'])} | {pct(p['by_f1']['accuracy'])} | "
                     f"{pct(_mean(p['by_fit']))} | {pct(p['fixed']['accuracy'])} | {pct(_mean(p['fixed_fit']))} | "
                     f"{tried} | {p['by_splits']['seconds']:.1f} s / {_mean(p['by_fit'], 'seconds'):.1f} s |")
    lines += ["", "Which parents' modules were chosen (modules per parent):", ""]
    for name, p in result["problems"].items():
        fit_choices = "; ".join(f"seed {r['seed']}: {_parents_used(r['chosen'])} ({pct(r['accuracy'])})"
                                for r in p["by_fit"])
        lines.append(f"- {name}: fewest splits: {_parents_used(p['by_splits']['chosen'])} "
                     f"({p['by_splits']['calibration']} calibration); best recorded F1: "
                     f"{_parents_used(p['by_f1']['chosen'])} ({p['by_f1']['calibration']}); `--fit`: {fit_choices}.")
    lines += ["", "Without labels the recorded F1 favours the modules of the parents with five classes: their F1 "
              "was measured against four other classes, not nine, so it says little about this task, and modules "
              "of different parents compose worse than modules of one (the sections above). Covering the classes "
              "with as few splits as possible avoids that where one parent has every class. With ten labelled "
              "images per class the choice is measured on the task itself, starting from the fewest-splits choice. "
              "Wall time includes loading every candidate from the embedded hub" +
              (f"; republishing the 40 modules took {result['pool_seconds']:.0f} s." if result["pool_seconds"] >= 1
               else " (the pool hub was built by an earlier run of this script)."), "", _verdict(result)]
    return "\n".join(lines)


def main() -> None:
    section_main(__doc__, SECTION, "Composing by class name from a hub of four parents", OUT, measure, render)


if __name__ == "__main__":
    main()
