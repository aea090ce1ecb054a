"""Benchmark: zero-shot rules for modules of different parents, beyond the calibration rules hubmod ships.

    python benchmarks/zero_shot_fmnist.py            # measure (uses reuse_fmnist.py's parents and splits)
    python benchmarks/zero_shot_fmnist.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

Issue 23 asks whether a module can say "not mine" to an image of another parent's world without
labels of the new task. This script measures the candidates on the vgg+resnet18 pair of
reuse_fmnist.py (parents trained on Fashion-MNIST classes 0-4 and 5-9), using only what a split
could store: each module's head-input features and raw scores on held-out images of its *own*
class, from the 200 per class that its parent did not train on (100 fit the statistics, the other
100 turn a distance into a conformal p-value). Candidates:

* typicality, Gaussian: Mahalanobis distance to the own-class mean under a shrunk covariance;
* typicality, nearest neighbour: distance to the k-th nearest own-class feature (L2-normalised);
* a parent gate: per split, the p-value of the split's energy (log-sum-exp of its modules' raw
  scores) or of its best minmax score, against the split's own held-out images; it weighs that
  split's minmax scores;
* outlier exposure, as shipped: both parents split again with ``--negatives`` (scikit-learn's 8x8
  digits, a real dataset with none of their classes) and composed with the ``gated`` rule that
  ``auto`` then picks (the ``means`` score times each module's gate; hubmod.exposure).

Beside them, the shipped rules ``none``, ``platt`` and ``means`` (other classes' mean score to 0,
own class's to 1), ``exposed`` (minmax times the gate, ``auto``'s choice for exposed modules before
``gated``), and a candidate rescaling from the statistics every module already stores, less
sensitive than minmax's extremes: ``quantile`` (own-class 5th and 95th percentiles to 0 and 1).

Each typicality p-value is scored alone and multiplied with the minmax score (the shipped
``auto`` rule for modules of different splits). Accuracy is on the problem's classes of the
Fashion-MNIST test split. The pair is trained four times with the same recipe (seeds 0-3;
each seed also draws other held-out images), since one training of the pair can land far from
another: every rule is reported per training and as the mean. The script also counts how many of
minmax's errors cross parents (an image given to a module of the parent that never saw its class). Results go to
benchmarks/results/zero_shot.json and BENCHMARKS.md.
"""

from __future__ import annotations

import json
import statistics
import time

from common import RESULTS, ensure_parent, pct, section_main
from reuse_fmnist import (
    PAIRS,
    PROBLEMS,
    SPLIT_OPTIONS,
    _calibrated,
    _outputs,
    digits_dataset,
    ensure_split,
    feature_edges,
    problem_view,
)

OUT = RESULTS / "zero_shot.json"
SECTION = "zero-shot"
PAIR = "vgg+resnet18"
TRAININGS = (0, 1, 2, 3)  # train_parent.py --seed of each training of the pair (0: reuse_fmnist.py's parents)
STAT_IMAGES = 100  # of the 200 held-out images per class; the rest calibrate the p-value
SHRINK = 0.1  # covariance shrinkage toward a scaled identity (features are 20-110 wide, 100 images)
NEIGHBOURS = 1
SEED = 0


def _p_value(reference, values, larger_is_typical: bool):
    """Conformal p-value of each value against reference values of the module's own class."""
    import torch

    ref = reference.sort().values.contiguous()
    n = len(ref)
    if larger_is_typical:
        return (torch.searchsorted(ref, values.contiguous(), right=True) + 1) / (n + 1)
    return (n - torch.searchsorted(ref, values.contiguous()) + 1) / (n + 1)


def _gaussian(fit, cal, test):
    import torch

    mu = fit.mean(0)
    cov = torch.atleast_2d(torch.cov(fit.T))  # (a 0-d tensor when a module reads a single feature)
    scale = max(float(cov.trace()) / cov.shape[0], 1e-8)  # (a module whose features are all zero has trace 0)
    cov = (1 - SHRINK) * cov + SHRINK * scale * torch.eye(cov.shape[0], dtype=cov.dtype)
    precision = torch.linalg.inv(cov)

    def dist(x):
        z = x - mu
        return ((z @ precision) * z).sum(1)

    return _p_value(dist(cal), dist(test), larger_is_typical=False)


def _nearest(fit, cal, test):
    import torch

    def unit(x):
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def dist(x):
        return torch.cdist(unit(x), unit(fit)).topk(NEIGHBOURS, largest=False).values[:, -1]

    return _p_value(dist(cal), dist(test), larger_is_typical=False)


def ensure_exposed_split(repo: str, max_auc_loss: float | None = None) -> tuple[str, float | None]:
    """The same split as ensure_split's, with the digits as negatives (and ``max_auc_loss`` when given,
    named in the repo: ``-auc05`` for 0.05): its index repo, and the seconds the split took (None when it
    was already on the hub)."""
    import hubmod
    from hubmod.hub import LocalHub

    limit = {} if max_auc_loss is None else {"max_auc_loss": max_auc_loss}
    prefix = f"{repo}-fast-digits" + ("" if max_auc_loss is None else f"-auc{round(100 * max_auc_loss):02d}")
    if LocalHub().repo_exists(prefix):
        return prefix, None
    t = time.perf_counter()
    hubmod.split(repo, "fashion-mnist", hub="local", options={**SPLIT_OPTIONS, **limit}, repo_prefix=prefix,
                 negatives=str(digits_dataset()), progress=False)
    return prefix, time.perf_counter() - t


def trained_pair(seed: int, pair: str = PAIR) -> list[tuple[str, list[str]]]:
    """A pair's parents (repo, train_parent.py arguments) for one training seed."""
    if seed == 0:
        return list(PAIRS[pair])
    return [(f"{repo}-s{seed}", [*args, "--seed", str(seed)]) for repo, args in PAIRS[pair]]


def _quantile(raw, calibration: dict):
    """A candidate rescaling from a module's stored statistics: own-class 5th and 95th percentiles to 0 and 1."""
    lo, hi = calibration["own"]["q05"], calibration["own"]["q95"]
    return (raw - lo) / max(hi - lo, 1e-12)


def measure() -> dict:
    runs = {str(seed): measure_pair(seed) for seed in TRAININGS}
    first = runs[str(TRAININGS[0])]
    out = {k: first[k] for k in ("pair", "negatives", "held_out_source", "stat_images", "shrink", "neighbours",
                                 "exposed_auto_rule")}
    out.update(trainings=runs, problems=over_trainings(runs))
    return out


def over_trainings(runs: dict) -> dict:
    """Per problem, each rule's accuracy as the mean and standard deviation over the trainings' runs
    (no spread from one training)."""
    first = next(iter(runs.values()))
    out = {}
    for problem in first["problems"]:
        rules = first["problems"][problem]["accuracy"]
        values = {rule: [r["problems"][problem]["accuracy"][rule] for r in runs.values()] for rule in rules}
        out[problem] = {"accuracy": {rule: statistics.mean(v) for rule, v in values.items()},
                        "spread": {rule: statistics.stdev(v) if len(v) > 1 else None for rule, v in values.items()}}
    return out


def mean_sd(result: dict, problem: str, rule: str) -> str:
    """A rule's 'mean ± sd' (in %) on a problem, over_trainings' result ('mean' alone from one training)."""
    mean, sd = (result["problems"][problem][k][rule] for k in ("accuracy", "spread"))
    return f"{100 * mean:.2f}" + ("" if sd is None else f" ± {100 * sd:.2f}")


def mean_sd_rows(result: dict, rules: list[str], problems: list[str]) -> list[str]:
    """Table rows: one per rule, mean_sd per problem."""
    return [f"| {rule} | " + " | ".join(mean_sd(result, p, rule) for p in problems) + " |" for rule in rules]


def minmax_errors(trainings: dict, problems: list[str]) -> str:
    """How many of minmax's errors, summed over the trainings' runs, cross parents."""
    return "Where minmax goes wrong (all trainings): " + "; ".join(
        f"{p}: {sum(t['problems'][p]['minmax_errors_across_parents'] for t in trainings.values())} of its "
        f"{sum(t['problems'][p]['minmax_errors'] for t in trainings.values())} errors give an image to a module "
        "of the parent that never saw its class" for p in problems) + "."


def measure_pair(seed: int, pair: str = PAIR) -> dict:
    import torch

    import hubmod
    from hubmod.calibration import apply
    from hubmod.data import load_images
    from hubmod.fitting import draw_fit_images

    (a_repo, _), (b_repo, _) = trained_pair(seed, pair)
    a_index, b_index = ensure_split(a_repo), ensure_split(b_repo)
    firsts, lasts = PROBLEMS["all ten"]
    names = firsts + lasts
    model = hubmod.compose([f"{a_index}:{c}" for c in firsts] + [f"{b_index}:{c}" for c in lasts], hub="local")
    modules = list(model.class_modules)
    model.calibration = "none"
    t = time.perf_counter()
    test = load_images("fashion-mnist", "test").for_classes(names, "all ten")
    held, info = draw_fit_images(modules, "fashion-mnist", 200, SEED)  # every untouched image of each class
    test_raw, test_feat = (t.double() for t in _outputs(model, test.images))
    held_raw, held_feat = (t.double() for t in _outputs(model, held.images))
    edges = feature_edges(modules)
    parent_of = torch.tensor([0] * len(firsts) + [1] * len(lasts))
    gen = torch.Generator().manual_seed(SEED)
    minmax = torch.stack([apply("minmax", test_raw[:, i], m.config.calibration) for i, m in enumerate(modules)], 1)
    held_minmax = torch.stack([apply("minmax", held_raw[:, i], m.config.calibration)
                               for i, m in enumerate(modules)], 1)
    typical = {"gaussian": torch.zeros_like(minmax), "nearest": torch.zeros_like(minmax)}
    for i in range(len(modules)):
        own = (held.labels == i).nonzero().flatten()
        own = own[torch.randperm(len(own), generator=gen)]
        fit_rows, cal_rows = own[:STAT_IMAGES], own[STAT_IMAGES:]
        f = held_feat[:, edges[i]:edges[i + 1]]
        tf = test_feat[:, edges[i]:edges[i + 1]]
        typical["gaussian"][:, i] = _gaussian(f[fit_rows], f[cal_rows], tf)
        typical["nearest"][:, i] = _nearest(f[fit_rows], f[cal_rows], tf)

    def gated(kind: str, subset: list[int]):
        out = minmax[:, subset].clone()
        for p in (0, 1):
            cols = [j for j, c in enumerate(subset) if parent_of[c] == p]
            members = [subset[j] for j in cols]
            if kind == "energy":
                value, ref = torch.logsumexp(test_raw[:, members], 1), torch.logsumexp(held_raw[:, members], 1)
            else:
                value, ref = minmax[:, members].max(1).values, held_minmax[:, members].max(1).values
            ref = ref[torch.isin(held.labels, torch.tensor(members))]
            out[:, cols] *= _p_value(ref, value, larger_is_typical=True)[:, None]
        return out

    (a_exposed, a_seconds), (b_exposed, b_seconds) = ensure_exposed_split(a_repo), ensure_exposed_split(b_repo)
    # None: both were made before this run, so not timed
    split_seconds = None if a_seconds is None and b_seconds is None else (a_seconds or 0.0) + (b_seconds or 0.0)
    exposed = hubmod.compose([f"{a_exposed}:{c}" for c in firsts] + [f"{b_exposed}:{c}" for c in lasts], hub="local")
    auto_rule = exposed.calibration
    exposed.calibration = "none"  # the modules run once; each rule then calibrates their raw scores
    exposed_raw, exposed_feat = _outputs(exposed, test.images)
    exposed_scores, exposed_minmax, minmax_gated = (_calibrated(exposed, exposed_raw, exposed_feat, rule).double()
                                                    for rule in (auto_rule, "minmax", "exposed"))

    shipped = {rule: torch.stack([apply(rule, test_raw[:, i], m.config.calibration) for i, m in enumerate(modules)], 1)
               for rule in ("none", "platt", "means")}
    quantile = torch.stack([_quantile(test_raw[:, i], m.config.calibration) for i, m in enumerate(modules)], 1)
    rules = {
        "none": lambda s: shipped["none"][:, s],
        "platt": lambda s: shipped["platt"][:, s],
        "minmax": lambda s: minmax[:, s],
        "quantile": lambda s: quantile[:, s],
        "means": lambda s: shipped["means"][:, s],
        "minmax, modules of the --negatives splits": lambda s: exposed_minmax[:, s],
        f"`auto` ({auto_rule}), modules of the --negatives splits": lambda s: exposed_scores[:, s],
        "exposed (minmax x gate, `auto` before), modules of the --negatives splits": lambda s: minmax_gated[:, s],
        "typicality (gaussian)": lambda s: typical["gaussian"][:, s],
        "minmax x typicality (gaussian)": lambda s: (minmax * typical["gaussian"])[:, s],
        "typicality (nearest)": lambda s: typical["nearest"][:, s],
        "minmax x typicality (nearest)": lambda s: (minmax * typical["nearest"])[:, s],
        "minmax x parent gate (energy)": lambda s: gated("energy", s),
        "minmax x parent gate (best minmax)": lambda s: gated("best", s),
    }
    out: dict = {"pair": pair, "seed": seed, "parents": [a_repo, b_repo], "splits": [a_index, b_index],
                 "exposed_splits": [a_exposed, b_exposed],
                 "exposed_auto_rule": auto_rule, "exposed_split_seconds": split_seconds,
                 "negatives": exposed.class_modules[0].config.exposure, "held_out_source": info["source"],
                 "stat_images": STAT_IMAGES, "shrink": SHRINK, "neighbours": NEIGHBOURS,
                 "problems": {}}
    for problem, (a_classes, b_classes) in PROBLEMS.items():
        subset, mask, labels = problem_view(test.labels, names, a_classes + b_classes)
        row = {rule: float((score(subset)[mask].argmax(1) == labels).double().mean()) for rule, score in rules.items()}
        pred = minmax[:, subset][mask].argmax(1)
        wrong = pred != labels
        crossing = parent_of[torch.tensor(subset)][pred] != parent_of[torch.tensor(subset)][labels]
        out["problems"][problem] = {"accuracy": row, "test_images": int(mask.sum()),
                                    "minmax_errors": int(wrong.sum()),
                                    "minmax_errors_across_parents": int((wrong & crossing).sum())}
        print(f"seed {seed} / {problem}:", ", ".join(f"{r} {pct(a)}" for r, a in row.items()), flush=True)
    out["seconds"] = time.perf_counter() - t
    return out


def _verdict(result: dict) -> str:
    """Which rules beat minmax on the look-alike problems, on the mean over trainings (computed, so a
    re-run can change the text)."""
    hard = [p for p in ("all ten", "upper body") if p in result["problems"]]
    def beats(rule: str, p: str) -> bool:
        acc = result["problems"][p]["accuracy"]
        return acc[rule] > acc["minmax"]

    rules = [r for r in result["problems"][hard[0]]["accuracy"] if r != "minmax"]
    everywhere = [r for r in rules if all(beats(r, p) for p in hard)]
    somewhere = [f"{r} (on {', '.join(p for p in hard if beats(r, p))} only)" for r in rules
                 if r not in everywhere and any(beats(r, p) for p in hard)]
    text = (f"Above minmax on both {' and '.join(hard)} (means): {', '.join(everywhere)}." if everywhere else
            f"No rule beats minmax on both {' and '.join(hard)} (means).")
    best = {p: max(result["problems"][p]["accuracy"].items(), key=lambda kv: kv[1]) for p in hard}
    text += (f" Above it on one of them: {'; '.join(somewhere)}." if somewhere else "")
    return text + " Best mean: " + "; ".join(f"{p}: {rule} {pct(acc)}" for p, (rule, acc) in best.items()) + "."


def _against_fit(result: dict) -> str:
    """`auto`'s rule for exposed modules beside ten labelled images per class (reuse_fmnist.py's affine
    combiner, on the seed-0 training), if measured on the same parents."""
    reuse = RESULTS / "reuse.json"
    fits = json.loads(reuse.read_text()) if reuse.exists() else {}
    first = result["trainings"][str(TRAININGS[0])]
    rule = next(r for r in next(iter(first["problems"].values()))["accuracy"] if r.startswith("`auto`"))
    cells = []
    for problem, p in first["problems"].items():
        fitted = fits.get(f"{result['pair']} / {problem}", {})
        if fitted.get("parents") == first["parents"] and fitted.get("fit", {}).get("affine", {}).get("10"):
            cells.append(f"{problem} {pct(p['accuracy'][rule])} without labels against "
                         f"{pct(statistics.mean(fitted['fit']['affine']['10']))} with them")
    return ("Beside `--fit` with 10 labelled images per class on the seed-0 training (affine, the section above): "
            + "; ".join(cells) + "." if cells else "")


def _exposed_split_times(trainings: dict) -> str:
    timed = [f"{t['exposed_split_seconds']:.0f} s" for t in trainings.values()
             if t["exposed_split_seconds"] is not None]
    same = "the same search, so the same modules: minmax is unchanged; the gates fit in seconds"
    if not timed:
        return f"Splitting both parents again with `--negatives` ({same}) was not timed: those splits predate the run."
    return f"Splitting both parents again with `--negatives` took {', '.join(timed)} ({same})."


def render(result: dict, header: str) -> str:
    problems = list(result["problems"])
    rules = list(result["problems"][problems[0]]["accuracy"])
    trainings = result["trainings"]
    lines = [header.rstrip(), "",
             f"Modules of the {result['pair']} pair, trained {len(trainings)} times with the same recipe "
             f"(`train_parent.py --seed` {', '.join(trainings)}; parents "
             + "; ".join(f"`{'`, `'.join(t['parents'])}`" for t in trainings.values())
             + f"), each split with the default setting; own-class statistics from {result['held_out_source']} "
             f"({result['stat_images']} per class fit them, the rest calibrate the p-value). Accuracy on the "
             "problem's Fashion-MNIST test images, mean ± standard deviation over the trainings:", "",
             "| rule | " + " | ".join(problems) + " |", "|---|" + "---:|" * len(problems)]
    lines += mean_sd_rows(result, rules, problems)
    hard = [p for p in ("all ten", "upper body") if p in problems]
    lines += ["", f"Each training ({' / '.join(hard)}):", "",
              "| rule | " + " | ".join(f"seed {s}" for s in trainings) + " |", "|---|" + "---:|" * len(trainings)]
    for rule in rules:
        lines.append(f"| {rule} | " + " | ".join(
            " / ".join(pct(t["problems"][p]["accuracy"][rule]) for p in hard) for t in trainings.values()) + " |")
    lines += ["", minmax_errors(trainings, problems), "",
        _verdict(result), "",
        "Typicality asks whether an image looks like the module's class *as the module sees it*, and the "
        "modules' features were learnt to separate a class from its own parent's other classes only (the "
        "resnet18 parent's Shirt module was trained against footwear and bags), so to them a coat is about as "
        "typical a shirt as a shirt is. Outlier exposure instead fits each module's gate with images of "
        f"another world ({result['negatives']['images']} of scikit-learn's 8x8 digits, none of them clothing) "
        "among its negatives, so the gate learns what in the features means \"this is my class\" rather than "
        "\"this is not one of my parent's other classes\". " + _exposed_split_times(trainings), "",
        _against_fit(result)]
    return "\n".join(lines)


def _parents() -> None:
    for seed in TRAININGS:
        for spec in trained_pair(seed):
            ensure_parent(*spec)


def main() -> None:
    section_main(__doc__, SECTION, "Zero-shot rules beyond calibration (modules of different parents)", OUT, measure,
                 render, prepare=_parents)


if __name__ == "__main__":
    main()
