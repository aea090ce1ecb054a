"""Benchmark: the zero-shot rules and ``--adapt`` on a second pair of parents (regnety + mobilenetv3).

    python benchmarks/second_pair_fmnist.py            # measure (trains and splits the pair if the hub lacks it)
    python benchmarks/second_pair_fmnist.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

zero_shot_fmnist.py and adapt_fmnist.py chose ``auto``'s rule for modules of different parents
(``gated``, from ``--negatives`` splits) and the ``--adapt`` setting on one pair of architectures,
vgg + resnet18. This script measures the same rules, on the same problems and with the same code,
on reuse_fmnist.py's other pair: RegNetY (grouped convolutions, squeeze-and-excitation) trained on
Fashion-MNIST classes 0-4 and a 3-channel 32 px mobilenetv3_small_100 trained on 5-9, so a rule
chosen on one pair is checked on a pair it was not chosen on. One training of the pair (seed 0):
its parents and four splits take over an hour on 2 cores. Results go to
benchmarks/results/second_pair.json and BENCHMARKS.md.
"""

from __future__ import annotations

import json

import adapt_fmnist
import zero_shot_fmnist
from common import RESULTS, ensure_parent, pct, section_main
from reuse_fmnist import PAIRS

OUT = RESULTS / "second_pair.json"
SECTION = "second-pair"
PAIR = "regnety+mobilenetv3"
SEED = 0
ADAPT_ROWS = ("`--adapt` (T", "`--adapt`, modules", "unequal shares")  # adapt.json's rows shown here (prefixes)


def measure() -> dict:
    known = json.loads((RESULTS / "parents.json").read_text())
    zero = zero_shot_fmnist.measure_pair(SEED, PAIR)
    adapt = adapt_fmnist.measure_pair(SEED, PAIR)
    return {"pair": PAIR, "seed": SEED,
            "parents": {repo: known[repo]["revision"] for repo, _ in zero_shot_fmnist.trained_pair(SEED, PAIR)},
            "zero_shot": {**{k: zero[k] for k in ("negatives", "exposed_auto_rule", "held_out_source")},
                          "trainings": {str(SEED): zero},
                          "problems": zero_shot_fmnist.over_trainings({str(SEED): zero})},
            "adapt": {"trainings": {str(SEED): adapt}, "problems": zero_shot_fmnist.over_trainings({str(SEED): adapt}),
                      "temperature": adapt["temperature"]}}


def _reference() -> tuple[dict, dict]:
    """The first pair's means over its trainings (zero_shot.json, adapt.json), for the comparison column."""
    return tuple(json.loads(p.read_text()) if p.exists() else {}
                 for p in (RESULTS / "zero_shot.json", RESULTS / "adapt.json"))


def render(result: dict, header: str) -> str:
    zero, adapt = result["zero_shot"], result["adapt"]
    problems = list(zero["problems"])
    rules = [("zero_shot", r) for r in zero["problems"][problems[0]]["accuracy"]]
    rules += [("adapt", r) for r in adapt["problems"][problems[0]]["accuracy"] if r.startswith(ADAPT_ROWS)]
    first_zero, first_adapt = _reference()
    first = {"zero_shot": first_zero, "adapt": first_adapt}

    def cell(kind: str, rule: str, problem: str) -> str:
        return pct(result[kind]["problems"][problem]["accuracy"][rule])

    def first_cell(kind: str, rule: str, problem: str) -> str:
        row = first[kind].get("problems", {}).get(problem, {}).get("accuracy", {})
        return pct(row[rule]) if rule in row else "-"

    a, b = result["parents"]
    lines = [header.rstrip(), "",
             f"Modules of the {result['pair']} pair (`{a}` on classes 0-4, `{b}` on 5-9; one training, "
             f"`train_parent.py --seed {result['seed']}`), each split with the default setting and again with "
             "`--negatives` (scikit-learn's 8x8 digits); the rules and the `--adapt` rows are zero_shot_fmnist.py's "
             "and adapt_fmnist.py's, computed by the same functions. Beside each, the vgg+resnet18 pair's mean over "
             "its trainings (the two sections above; \"-\" where that pair's rule has another name). Accuracy on "
             "the problem's Fashion-MNIST test images (%, this pair / vgg+resnet18):", "",
             "| rule | " + " | ".join(problems) + " |", "|---|" + "---:|" * len(problems)]
    for kind, rule in rules:
        lines.append(f"| {rule} | " + " | ".join(f"{cell(kind, rule, p)} / {first_cell(kind, rule, p)}"
                                                 for p in problems) + " |")
    run = zero["trainings"][str(result["seed"])]
    lines += ["", "Where minmax goes wrong: " + "; ".join(
        f"{p}: {r['minmax_errors_across_parents']} of its {r['minmax_errors']} errors give an image to a module of "
        "the parent that never saw its class" for p, r in run["problems"].items()) + ".", "",
        _best(result, problems), "",
        "Compose + adapt wall time: " + ", ".join(
            f"{p} {adapt['trainings'][str(result['seed'])]['problems'][p]['seconds']:.1f} s" for p in problems) + "."]
    return "\n".join(lines)


def _best(result: dict, problems: list[str]) -> str:
    """The best zero-shot rule and the best `--adapt` row per problem, and what `auto` gives (computed, so a
    re-run can change the text)."""
    zero, adapt = result["zero_shot"]["problems"], result["adapt"]["problems"]
    cells = []
    for p in problems:
        auto = next((r, v) for r, v in zero[p]["accuracy"].items() if r.startswith("`auto`"))
        best = max(zero[p]["accuracy"].items(), key=lambda kv: kv[1])
        adapted = max(((r, v) for r, v in adapt[p]["accuracy"].items() if r.startswith("`--adapt`")),
                      key=lambda kv: kv[1])
        cells.append(f"{p}: `auto` {pct(auto[1])}, best zero-shot rule {best[0]} {pct(best[1])}, best `--adapt` "
                     f"{pct(adapted[1])}")
    return "On this pair: " + "; ".join(cells) + "."


def _parents() -> None:
    for spec in PAIRS[PAIR]:
        ensure_parent(*spec)


def main() -> None:
    section_main(__doc__, SECTION, "Zero-shot and `--adapt` on a second pair of parents", OUT, measure, render,
                 prepare=_parents)


if __name__ == "__main__":
    main()
