"""The summary table at the top of BENCHMARKS.md, and the README's headline rows of it, from the committed results.

    python benchmarks/summary.py          # rewrite both from benchmarks/results/*.json
    python benchmarks/summary.py --check  # exit 1 if either is out of date (the test suite runs this)

Rows come only from results JSON in benchmarks/results/ (written by the other scripts), so the
table is the same on every clone and never copied by hand. BENCHMARKS.md gets every row; the README
gets the headline rows only (``Row.headline``): the default split, the pairs of parents the
cross-parent benchmarks started from, today's zero-shot rule, and the architecture families, not
each longer-trained variant or superseded measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import NamedTuple

from common import weak_module_means, without_labels

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
README = ROOT / "README.md"
START, END = "<!-- summary:start -->", "<!-- summary:end -->"
# The pairs of parents the README shows (the issue's own pair, the cross-domain one, the non-VGG non-ResNet one);
# the same pairs trained longer stay in BENCHMARKS.md.
HEADLINE_PAIRS = ("vgg+resnet18", "digits+vgg", "regnety+mobilenetv3")
HEADLINE_PROBLEMS = ("all ten", "upper body", "digits + fashion")  # the hard ones; "mixed" is easy for every rule


class Row(NamedTuple):
    """One line of the summary: what was measured, its result, what it is measured against, where."""

    what: str
    result: str
    against: str
    source: str
    headline: bool  # also in the README


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def rows() -> list[Row]:
    """The summary's rows, from whichever results files exist."""
    out = []
    cost = RESULTS / "split_cost_labels.json"
    if cost.exists():
        r = json.loads(cost.read_text())["rows"].get("labels-b256-ho")
        if r:
            out.append(Row("Split a resnet18 Fashion-MNIST parent with the default setting, all ten modules composed",
                           f"{_pct(r['composed_accuracy'])}; modules keep {_pct(r['mean_kept_kernels'])} of the "
                           f"kernels, {_pct(r['module_macs'])} of the MACs; {r['wall_seconds']:.0f} s on 2 CPU cores",
                           f"parent {_pct(r['parent_accuracy'])}", "split-cost-labels", True))
    curve = RESULTS / "split_size_curve.json"
    if curve.exists():
        from split_size_curve import SMALL

        for r in json.loads(curve.read_text())["rows"].values():
            if r["setting"] == SMALL:
                out.append(Row(f"Split the `{r['parent']}` parent with `-p preset=small`, all ten modules composed",
                               f"{_pct(r['composed_accuracy'])}; modules keep {_pct(r['mean_kept_kernels'])} of the "
                               f"kernels, {_pct(r['module_macs'])} of the MACs; {r['wall_seconds']:.0f} s on 2 CPU "
                               "cores", f"parent {_pct(r['parent_accuracy'])}", "split-size-curve", True))
    reuse = RESULTS / "reuse.json"
    if reuse.exists():
        for r in json.loads(reuse.read_text()).values():
            fitted = r.get("fit", {}).get("affine", {}).get("10")  # the default combiner
            if not fitted:
                continue
            best_zero = max(r["zero_shot"].values())
            out.append(Row(f"Modules of two parents ({r['pair']}), {r['problem']}: compose `--fit` with 10 labelled "
                           "images per class",
                           f"{_pct(statistics.mean(fitted))} (no labels: {_pct(r['zero_shot'][r['auto_rule']])} with "
                           f"`{r['auto_rule']}`, best rule {_pct(best_zero)})",
                           f"CNN from scratch on the same images "
                           f"{_pct(statistics.mean(r['baselines']['scratch_cnn']['10']))}; trained on all images "
                           f"{_pct(r['reference'])}", "reuse",
                           r["pair"] in HEADLINE_PAIRS and r["problem"] in HEADLINE_PROBLEMS))
    for found in without_labels():
        pair, z, saved = found["pair"], found["zero_shot"], found["adapt"]
        acc = z["problems"].get("all ten", {}).get("accuracy", {})
        exposed = next((v for k, v in acc.items() if k.startswith("`auto`")), None)
        if exposed is not None:
            out.append(Row(f"Modules of two parents ({pair}), all ten, no labels: both split with `--negatives` "
                           "(scikit-learn's digits; measured with `max_auc_loss=1`, before `--negatives` gave weak "
                           "modules' classes the whole parent)",
                           f"{_pct(exposed)} with the `{z['exposed_auto_rule']}` rule `auto` picks"
                           + (f" (mean of {len(z['trainings'])} trainings of the pair)" if "trainings" in z else ""),
                           f"split without negatives: {_pct(acc['minmax'])} (minmax)", z["section"], False))
        if not saved:
            continue
        a, runs = saved["problems"], len(saved["trainings"])
        hard = [p for p in ("all ten", "upper body") if p in a]
        adapted = ", ".join(f"{p} {_pct(_adapt_row(a, p, '`--adapt`'))}" for p in hard)
        plain = ", ".join(_pct(_adapt_row(a, p, "`--adapt`", plain=True)) for p in hard)
        unadapted = ", ".join(f"{p} {_pct(_adapt_row(a, p, '`auto` ('))}" for p in hard)
        out.append(Row(f"Modules of two parents ({pair}), no labels but unlabelled images of the task: compose "
                       "`--adapt` (200 per class)",
                       f"{adapted} (mean of {runs} trainings; modules split without `--negatives`: {plain})",
                       f"`auto` on the same modules: {unadapted}", saved["section"], pair in HEADLINE_PAIRS))
    weak = RESULTS / "weak_modules.json"
    for pair, w in (json.loads(weak.read_text())["pairs"].items() if weak.exists() else ()):
        limited, unlimited = weak_module_means(w, "0.05"), weak_module_means(w, "1")
        runs = len(w["trainings"])
        out.append(Row(f"Modules of two parents ({pair}), no labels: both split with `--negatives`, which gives a "
                       "class whose module hardly tells it apart alone the whole parent (`max_auc_loss=0.05`)",
                       f"all ten {_pct(limited['all ten'])}, upper body {_pct(limited['upper body'])} "
                       f"with `auto` ({f'mean of {runs} trainings' if runs > 1 else 'one training'}); modules keep "
                       f"{_pct(limited['mean_kept_kernels'])} of the kernels",
                       f"without that limit: all ten {_pct(unlimited['all ten'])}, "
                       f"{_pct(unlimited['mean_kept_kernels'])} of the kernels", "weak-modules",
                       pair in HEADLINE_PAIRS))
    by_name = RESULTS / "compose_from_hub.json"
    if by_name.exists():
        b = json.loads(by_name.read_text())
        p = b["problems"].get("all ten")
        if p:
            fitted = statistics.mean(r["accuracy"] for r in p["by_fit"])
            fixed = statistics.mean(r["accuracy"] for r in p["fixed_fit"])
            out.append(Row(f"All ten classes composed by class name from a hub of {len(b['splits'])} parents' modules "
                           "(`compose --from-hub --fit`, 10 labelled images per class)",
                           f"{_pct(fitted)} (no labels: {_pct(p['by_splits']['accuracy'])} by fewest splits, "
                           f"{_pct(p['by_f1']['accuracy'])} by recorded F1)",
                           f"one fixed parent, same fit: {_pct(fixed)}", "compose-from-hub", True))
    families = RESULTS / "families.json"
    if families.exists():
        for r in json.loads(families.read_text()).values():
            if "composed_accuracy" in r:
                args = r["parent_args"]
                narrowed = " (narrowed: --model-args)" if "--model-args" in args else ""
                out.append(Row(f"Split a {args[1]}{narrowed} parent ({r['couplings']}) with the default setting, "
                               "all ten modules composed",
                               f"{_pct(r['composed_accuracy'])}; modules keep {_pct(r['mean_kept_kernels'])} of the "
                               "kernels",
                               f"parent {_pct(r['parent_accuracy'])}", "families", True))
    return out


def _adapt_row(problems: dict, problem: str, start: str, plain: bool = False) -> float:
    """The first row of an adapt result starting with ``start``, of the modules split with `--negatives`
    or (``plain``) without."""
    rows = problems[problem]["accuracy"].items()
    return next(v for k, v in rows if k.startswith(start) and ("without" in k) == plain)


def table(headline_only: bool = False) -> str:
    """The rows as a Markdown table: every row, or (``headline_only``) the README's."""
    lines = ["| what | result | against | BENCHMARKS.md section |", "|---|---|---|---|"]
    lines += [f"| {r.what} | {r.result} | {r.against} | `{r.source}` |" for r in rows()
              if r.headline or not headline_only]
    return "\n".join(lines)


def _replace(text: str, block: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"markers {START} ... {END} missing")
    return text[: text.index(START)] + f"{START}\n{block}\n{END}" + text[text.index(END) + len(END):]


def render() -> dict[Path, str]:
    bench_text = BENCHMARKS_MD.read_text()
    if START not in bench_text:
        head, _, rest = bench_text.partition("\n")
        bench_text = f"{head}\n\n## Summary\n\n{START}\n{END}\n{rest}"
    return {BENCHMARKS_MD: _replace(bench_text, table()),
            README: _replace(README.read_text(), table(headline_only=True))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    stale = []
    for path, text in render().items():
        if path.read_text() != text:
            stale.append(path.name)
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run python benchmarks/summary.py", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
