"""Benchmark: the zero-shot rules and ``--adapt`` on a second pair of parents (regnety + mobilenetv3).

    python benchmarks/second_pair_fmnist.py            # measure (trains and splits the pair if the hub lacks it)
    python benchmarks/second_pair_fmnist.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

zero_shot_fmnist.py and adapt_fmnist.py chose ``auto``'s rule for modules of different parents
(``gated``, from ``--negatives`` splits) and the ``--adapt`` setting on one pair of architectures,
vgg + resnet18. This script measures the same rules, on the same problems and with the same code,
on reuse_fmnist.py's other pair: RegNetY (grouped convolutions, squeeze-and-excitation) trained on
Fashion-MNIST classes 0-4 and a 3-channel 32 px mobilenetv3_small_100 trained on 5-9, so a rule
chosen on one pair is checked on a pair it was not chosen on. The pair is trained four times with
the same recipe (seeds 0-3), as zero_shot_fmnist.py's is, and each rule is reported as the mean
and spread over the trainings. Results go to benchmarks/results/second_pair.json and BENCHMARKS.md.
longer_parents_fmnist.py measures the vgg + resnet18 pair trained for longer with these functions.
"""

from __future__ import annotations

import json

import adapt_fmnist
import zero_shot_fmnist
from common import RESULTS, ensure_parent, pct, section_main
from reuse_fmnist import LONGER
from zero_shot_fmnist import TRAININGS, mean_sd, minmax_errors

OUT = RESULTS / "second_pair.json"
SECTION = "second-pair"
PAIR = "regnety+mobilenetv3"
ADAPT_ROWS = ("`--adapt` (T", "`--adapt`, modules", "unequal shares")  # adapt.json's rows shown here (prefixes)
DESCRIPTIONS = {  # what each pair measured with these functions is, for the section's first sentence
    PAIR: "reuse_fmnist.py's second pair (RegNetY on classes 0-4, a 3-channel 32 px mobilenetv3_small_100 on 5-9)",
    LONGER: "reuse_fmnist.py's vgg+resnet18 pair given 12 epochs of training instead of 3",
}


def measure(pair: str = PAIR, trainings: tuple[int, ...] = TRAININGS) -> dict:
    """Every zero-shot rule and `--adapt` row on ``pair``, once per training seed."""
    zero = {str(seed): zero_shot_fmnist.measure_pair(seed, pair) for seed in trainings}
    adapt = {str(seed): adapt_fmnist.measure_pair(seed, pair) for seed in trainings}
    known = json.loads((RESULTS / "parents.json").read_text())  # which training of each parent was measured
    first = zero[str(trainings[0])]
    return {"pair": pair,
            "parents": {repo: known[repo]["revision"] for seed in trainings
                        for repo, _ in zero_shot_fmnist.trained_pair(seed, pair)},
            "zero_shot": {**{k: first[k] for k in ("negatives", "exposed_auto_rule", "held_out_source")},
                          "trainings": zero, "problems": zero_shot_fmnist.over_trainings(zero)},
            "adapt": {"trainings": adapt, "problems": zero_shot_fmnist.over_trainings(adapt),
                      "temperature": adapt[str(trainings[0])]["temperature"]}}


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

    def first_cell(kind: str, rule: str, problem: str) -> str:
        row = first[kind].get("problems", {}).get(problem, {}).get("accuracy", {})
        return f"{100 * row[rule]:.2f}" if rule in row else "-"

    trainings = zero["trainings"]
    lines = [header.rstrip(), "",
             f"Modules of {DESCRIPTIONS[result['pair']]}, trained {len(trainings)} times with the same recipe "
             "(`train_parent.py --seed` " + ", ".join(trainings) + "; parents " + "; ".join(
                 f"`{'`, `'.join(t['parents'])}`" for t in trainings.values()) + "), each split with the default "
             "setting and again with `--negatives` (scikit-learn's 8x8 digits). The rules and the `--adapt` rows are "
             "those of the zero-shot and adapt sections, computed by the same functions. Accuracy on the problem's "
             "Fashion-MNIST test images, mean ± standard deviation over the trainings, then the mean of "
             "those sections' vgg+resnet18 pair, trained for 3 epochs (\"-\" where that pair's rule has another "
             "name) (%):", "",
             "| rule | " + " | ".join(f"{p} | {p}, vgg+resnet18 (3 epochs)" for p in problems) + " |",
             "|---|" + "---:|" * (2 * len(problems))]
    for kind, rule in rules:
        lines.append(f"| {rule} | " + " | ".join(f"{mean_sd(result[kind], p, rule)} | {first_cell(kind, rule, p)}"
                                                 for p in problems) + " |")
    lines += ["", minmax_errors(trainings, problems), "",
        _best(result, problems), "",
        "Compose + adapt wall time (the slowest training): " + ", ".join(
            f"{p} {max(t['problems'][p]['seconds'] for t in adapt['trainings'].values()):.1f} s"
            for p in problems) + "."]
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
        rank = "the best zero-shot rule" if best[0] == auto[0] else \
            f"{100 * (best[1] - auto[1]):.2f} points below the best zero-shot rule, {best[0]} ({pct(best[1])})"
        cells.append(f"{p}: `auto` {pct(auto[1])}, {rank}; `--adapt` {pct(adapted[1])}")
    rule = result["zero_shot"]["exposed_auto_rule"]
    return f"On this pair (means over the trainings; `auto` composes the --negatives splits' modules with {rule}): " \
        + "; ".join(cells) + "."


def ensure_trainings(pair: str = PAIR, trainings: tuple[int, ...] = TRAININGS) -> None:
    """Train and publish each training of ``pair`` the hub lacks."""
    for seed in trainings:
        for spec in zero_shot_fmnist.trained_pair(seed, pair):
            ensure_parent(*spec)


def main() -> None:
    section_main(__doc__, SECTION, "Zero-shot and `--adapt` on a second pair of parents", OUT, measure, render,
                 prepare=ensure_trainings)


if __name__ == "__main__":
    main()
