"""Benchmark: zero-shot composition across parents when weak modules get the whole parent (``max_auc_loss``).

    python benchmarks/weak_modules_fmnist.py                       # the LONGER pair, trainings 0 and 1
    python benchmarks/weak_modules_fmnist.py --pair vgg+resnet18 --training 0
    python benchmarks/weak_modules_fmnist.py --render              # rebuild the section from the saved JSON

A split can leave a module that sees the image yet hardly tells its class from the parent's others
on its own (a path of a channel or two per layer): its split's other modules make up for it, other
parents' modules do not. The ``max_auc_loss`` split option gives such a class the whole parent (a
split with ``--negatives`` uses 0.05 unless told otherwise). This script splits both parents of a
pair of reuse_fmnist.py (each training asked for) with ``--negatives`` as zero_shot_fmnist.py does,
once with each value in ``LOSSES``, and measures the `auto` zero-shot rule on the same problems and
test images, with the modules' mean size. A run adds its pair's trainings to what
benchmarks/results/weak_modules.json holds, and BENCHMARKS.md gets the section again.
"""

from __future__ import annotations

import argparse
import json

from common import RESULTS, pct, run_header, setup_home, weak_module_means, write_section
from longer_parents_fmnist import TRAININGS
from reuse_fmnist import LONGER, PAIRS, PROBLEMS, _calibrated, _outputs, problem_view
from second_pair_fmnist import ensure_trainings
from zero_shot_fmnist import ensure_exposed_split, trained_pair

OUT = RESULTS / "weak_modules.json"
SECTION = "weak-modules"
LOSSES = (1.0, 0.05)  # the AUC loss allowed: 1 = no limit; good modules of these parents lose 0.00-0.03


def _measure_setting(pair: str, seed: int, loss: float) -> dict:
    import hubmod
    from hubmod.data import load_images

    (a_repo, _), (b_repo, _) = trained_pair(seed, pair)
    (a_index, a_s), (b_index, b_s) = ensure_exposed_split(a_repo, loss), ensure_exposed_split(b_repo, loss)
    firsts, lasts = PROBLEMS["all ten"]
    names = firsts + lasts
    model = hubmod.compose([f"{a_index}:{c}" for c in firsts] + [f"{b_index}:{c}" for c in lasts], hub="local")
    rule, modules = model.calibration, list(model.class_modules)
    model.calibration = "none"
    test = load_images("fashion-mnist", "test").for_classes(names, "all ten")
    raw, feats = _outputs(model, test.images)
    scores = _calibrated(model, raw, feats, rule).double()
    problems = {}
    for problem, (a_classes, b_classes) in PROBLEMS.items():
        subset, mask, labels = problem_view(test.labels, names, a_classes + b_classes)
        problems[problem] = float((scores[:, subset][mask].argmax(1) == labels).double().mean())
    out = {"splits": [a_index, b_index], "rule": rule, "problems": problems,
           "whole_parent": {m.class_name: m.config.method["whole_parent"] for m in modules
                            if "whole_parent" in m.config.method},
           "mean_kept_kernels": sum(m.config.metrics["kept_kernels"] for m in modules) / len(modules),
           "split_seconds": None if a_s is None and b_s is None else (a_s or 0.0) + (b_s or 0.0)}
    print(f"{pair}, seed {seed}, max_auc_loss {loss}: " + ", ".join(f"{p} {pct(a)}" for p, a in problems.items())
          + f"; whole parent for {', '.join(out['whole_parent']) or 'none'}", flush=True)
    return out


def measure(pair: str, trainings: tuple[int, ...]) -> dict:
    """One pair's trainings, each split and measured with every value in LOSSES."""
    return {"losses": list(LOSSES),
            "trainings": {str(seed): {f"{loss:g}": _measure_setting(pair, seed, loss) for loss in LOSSES}
                          for seed in trainings}}


def render(result: dict, header: str) -> str:
    lines = [header, "Each training of a pair of reuse_fmnist.py split with `--negatives` (the digits), GradSplitter's "
             "fast preset, once with each `max_auc_loss`; modules composed with the `auto` rule (no labels), "
             "accuracy on every Fashion-MNIST test image of each problem's classes. Kept kernels: the mean over the "
             "ten modules of the all-ten composition, as a share of each module's parent.", ""]
    first = next(iter(result["pairs"].values()))
    settings = [f"{loss:g}" for loss in first["losses"]]
    problems = list(next(iter(first["trainings"].values()))[settings[0]]["problems"])
    label = {s: f"`max_auc_loss={s}`" + {"1": " (no limit)", "0.05": " (the default with --negatives)"}.get(s, "")
             for s in settings}
    lines += ["| pair | training | split | " + " | ".join(problems) + " | kept kernels | classes given the whole "
              "parent |", "|---|---|---|" + "---:|" * len(problems) + "---:|---|"]
    for pair, entry in result["pairs"].items():
        for seed, runs in entry["trainings"].items():
            for s in settings:
                r = runs[s]
                lines.append(f"| {pair} | {seed} | {label[s]} | " + " | ".join(pct(r["problems"][p]) for p in problems)
                             + f" | {pct(r['mean_kept_kernels'])} | {', '.join(r['whole_parent']) or 'none'} |")
    lines.append("")
    for pair, entry in result["pairs"].items():
        means = []
        for s in settings:
            m = weak_module_means(entry, s)
            means.append(f"{label[s]}: " + ", ".join(f"{p} {pct(m[p])}" for p in problems)
                         + f", kept kernels {pct(m['mean_kept_kernels'])}")
        count = len(entry["trainings"])
        lines.append(f"- {pair}, " + (f"means over {count} trainings" if count > 1 else "one training")
                     + ": " + "; ".join(means) + ".")
    reasons = [f"- {pair}, training {seed}, {label[s]}, {name}: {why}." for pair, entry in result["pairs"].items()
               for seed, runs in entry["trainings"].items() for s in settings
               for name, why in runs[s]["whole_parent"].items()]
    if reasons:
        lines += ["", "Why each class got the whole parent (the split's words):", "", *reasons]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", choices=list(PAIRS), default=LONGER)
    ap.add_argument("--training", type=int, action="append", help=f"training seed (default: {TRAININGS})")
    ap.add_argument("--render", action="store_true", help="rebuild the BENCHMARKS.md section from the saved JSON")
    args = ap.parse_args()
    setup_home()
    result = json.loads(OUT.read_text()) if OUT.exists() else {"pairs": {}}
    if not args.render:
        trainings = tuple(args.training or TRAININGS)
        ensure_trainings(args.pair, trainings)
        entry = result["pairs"].setdefault(args.pair, {"losses": list(LOSSES), "trainings": {}})
        entry["trainings"].update(measure(args.pair, trainings)["trainings"])
        OUT.write_text(json.dumps(result, indent=1))
    write_section(SECTION, "## Weak modules given the whole parent, across parents\n\n"
                  + render(result, run_header(SECTION, args.render)))


if __name__ == "__main__":
    main()
