"""Benchmark: other ways to use K labelled images, tried against the ``--fit`` targets (not shipped).

    python benchmarks/fit_alternatives.py            # measure (the pair's parents and splits are made if missing)
    python benchmarks/fit_alternatives.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

The `--fit` targets (K = 10 labelled images per class: all ten >= 89 %, upper body >= 80 %) sit at
the most any combiner gets from these modules with every held-out image (reuse_fmnist.py's (d)).
This script asks whether a different use of the same ten images per class gets closer, on
reuse_fmnist.py's ``LONGER`` pair (training 0), seeds 0-2, beside the shipped probe:

* mirrored fit images: each fit image and its left-right mirror (Fashion-MNIST's classes are
  mirror-symmetric; the parents were trained with mirrors);
* test-time mirroring: the probe's softmax averaged over each test image and its mirror;
* shrinkage LDA on the standardised features (class means, one shared covariance shrunk toward its
  mean variance) for each shrinkage in ``SHRINKAGES``, and nearest class mean (cosine);
* a cache of the fit images' features (as Tip-Adapter: the probe's log-probabilities plus
  ``alpha * exp(-beta (1 - cosine))`` toward each fit image's class) for each (alpha, beta) in a grid;
* the probe on the modules of the same parents' ``--negatives`` splits (scikit-learn's digits,
  ``max_auc_loss`` 0.05), composed with their ``gated`` rule: the best zero-shot composition as the
  "no change" the probe's penalty pulls toward, instead of min-max scores;
* balancing offsets: the probe's logits shifted, per class, so that its softmax at temperature T
  shares the other images none of the parents trained on (labels not read) evenly between the
  classes (``--adapt``'s offsets, on top of the fit), for T in ``BALANCE_TEMPERATURES``;
* the probe on each module's features scaled to unit length first (a linear classifier on
  L2-normalised embeddings, as Tian et al. recommend for few-shot);
* a ReLU + linear head over the same unit-length features and the scores (as MwT fits on a
  sub-task), ``MLP_WIDTH`` hidden units, ``MLP_STEPS`` full-batch AdamW steps, seeded;
* self-training: the probe labels the other images none of the parents trained on (labels not
  read), the ``m`` it is surest of per class join the fit images, and the probe is fitted again;
* fine-tuning: every module's backbone and the fitted probe trained together on the fit images
  (Adam, learning rate ``FINE_TUNE_LR``, mirrors and 2-px shifts, BatchNorm in inference mode) for
  ``FINE_TUNE_STEPS`` steps, timed;
* whether other features of the parents would do better: baseline (b), the probe on the two parents'
  penultimate features, beside the probe on every stage's pooled output concatenated, and (b) on
  the 3-epoch pair's parents beside the same parents trained without label smoothing (which is
  said to make features transfer worse to unseen classes; the parents are trained once if missing).

Grids are reported row by row, and their best row is marked as chosen on the test images (an
upper bound, not a method). Results go to benchmarks/results/fit_alternatives.json and BENCHMARKS.md.
"""

from __future__ import annotations

import statistics

from common import RESULTS, ensure_parent, pct, section_main
from reuse_fmnist import (
    FIT_TARGETS,
    LONGER,
    PAIRS,
    PROBLEMS,
    _outputs,
    ensure_split,
    feature_edges,
    parent_features,
    parents_probe,
)
from second_pair_fmnist import ensure_trainings
from zero_shot_fmnist import ensure_exposed_split

OUT = RESULTS / "fit_alternatives.json"
SECTION = "fit-alternatives"
SHOTS = 10
SEEDS = (0, 1, 2)
SHRINKAGES = (0.3, 0.7, 0.9, 0.99)
CACHE_GRID = tuple((alpha, beta) for beta in (1.0, 5.0, 20.0) for alpha in (0.3, 1.0, 3.0))
SELF_TRAINING = (20, 50, 150)  # pseudo-labelled images per class
BALANCE_TEMPERATURES = (0.3, 1.0)
MLP_WIDTH, MLP_STEPS, MLP_LR, MLP_DECAY = 256, 300, 1e-3, 1e-2
FINE_TUNE_STEPS = (25, 50)
FINE_TUNE_LR = 1e-4
PLAIN = "probe (shipped)"
SHORT = "vgg+resnet18"  # reuse_fmnist.py's 3-epoch pair, for the label-smoothing rows
EVERY_STAGE = "(b), every stage's pooled output"
GATED = "probe on the --negatives splits' modules (gated)"


def smooth_free(spec: tuple[str, list[str]]) -> tuple[str, list[str]]:
    """A parent of ``SHORT`` trained the same way but without label smoothing."""
    repo, args = spec
    return repo + "-ls0", [*args, "--label-smoothing", "0"]


def _lda(features, labels, classes: int, shrinkage: float):
    """Linear discriminant scores from class means and one covariance shrunk toward its mean variance."""
    import torch

    x = features.double()
    means = torch.stack([x[labels == c].mean(0) for c in range(classes)])
    residual = x - means[labels]
    cov = residual.T @ residual / len(x)
    cov = (1 - shrinkage) * cov + shrinkage * cov.diagonal().mean() * torch.eye(x.shape[1], dtype=x.dtype)
    weight = torch.linalg.solve(cov, means.T).T
    bias = -0.5 * (weight * means).sum(1)
    return lambda z: z.double() @ weight.T + bias


def _fine_tuned(refs: list[str], fit, test, seed: int) -> dict[int, tuple[float, float]]:
    """Steps -> (accuracy, seconds of fitting): every module's backbone and the probe trained on the fit images."""
    import time

    import torch
    import torch.nn.functional as F

    import hubmod
    from hubmod.augment import apply_augment, draw_augment
    from hubmod.combiners import build
    from hubmod.preprocess import preprocess

    model = hubmod.compose(refs, hub="local")
    mods = list(model.class_modules)
    start = time.perf_counter()
    scores, features = _outputs(model, fit.images)
    probe = build("probe", len(mods), model.feature_width).fit(scores, features, fit.labels,
                                                               torch.Generator().manual_seed(seed))

    def logits(images, gen=None):
        drawn = draw_augment(len(images), gen) if gen is not None else None  # one draw: each image alike for all
        feats, outs = [], []
        for m in mods:
            x = preprocess(images, m.data_config)
            f = m.backbone(apply_augment(x, *drawn) if drawn is not None else x)
            feats.append(f)
            outs.append(m.calibrated(m.head(f), model.calibration, f))
        return probe(torch.stack(outs, 1), torch.cat(feats, 1))

    params = [p for m in mods for p in m.backbone.parameters()] + [probe.weight, probe.bias]
    for p in params:
        p.requires_grad_(True)
    for m in mods:
        m.backbone.eval()  # BatchNorm keeps its statistics: ten images per class are too few to replace them
    opt = torch.optim.Adam(params, lr=FINE_TUNE_LR)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    out, step, spent = {}, 0, 0.0
    for steps in FINE_TUNE_STEPS:
        while step < steps:
            loss = F.cross_entropy(logits(fit.images, gen), fit.labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        spent += time.perf_counter() - start
        with torch.no_grad():
            test_logits = torch.cat([logits(test.images[i : i + 1000]) for i in range(0, len(test), 1000)])
        out[steps] = (float((test_logits.argmax(1) == test.labels).double().mean()), spent)
        start = time.perf_counter()
    return out


def _mlp_head(x, labels, classes: int, seed: int):
    """A ReLU + linear head fitted on standardised ``x`` (full batch, AdamW); returns the fitted function."""
    import torch
    import torch.nn.functional as F

    mean, spread = x.mean(0), x.std(0).clamp_min(1e-6)
    with torch.random.fork_rng():  # seeded initial weights, and the other rows' draws left as they were
        torch.manual_seed(seed)
        head = torch.nn.Sequential(torch.nn.Linear(x.shape[1], MLP_WIDTH), torch.nn.ReLU(),
                                   torch.nn.Linear(MLP_WIDTH, classes))
    opt = torch.optim.AdamW(head.parameters(), MLP_LR, weight_decay=MLP_DECAY)
    for _ in range(MLP_STEPS):
        opt.zero_grad()
        F.cross_entropy(head((x - mean) / spread), labels).backward()
        opt.step()
    head.eval()
    return lambda z: head((z - mean) / spread).detach()


def _problem(model, gated, names: list[str], refs: list[str], parents: dict[str, list[str]]) -> dict:
    import torch
    import torch.nn.functional as F

    from hubmod.adaptation import balancing_offsets
    from hubmod.combiners import build
    from hubmod.data import load_images
    from hubmod.fitting import draw_fit_images, untouched_rows
    from hubmod.preprocess import largest_input_size

    k, edges = len(names), feature_edges(model.class_modules)
    test = load_images("fashion-mnist", "test").for_classes(names, "test")
    test_scores, test_features = _outputs(model, test.images)
    mirror_scores, mirror_features = _outputs(model, test.images.flip(-1))
    modules = list(model.class_modules)
    train = load_images("fashion-mnist", "train", largest_input_size(m.data_config for m in modules))
    train = train.for_classes(names, "pool")
    pool = train.subset(untouched_rows(modules, train, "fashion-mnist"))  # what --fit draws from
    pool_scores, pool_features = _outputs(model, pool.images)
    test_parents = {row: parent_features(repos, test.images, row == EVERY_STAGE)
                    for row, repos in parents.items()}
    seconds: dict[str, list[float]] = {}

    def accuracy(logits) -> float:
        return float((logits.argmax(1) == test.labels).double().mean())

    def unit_blocks(f):
        return torch.cat([F.normalize(f[:, a:b], dim=1) for a, b in zip(edges[:-1], edges[1:], strict=True)], 1)

    test_units = unit_blocks(test_features)
    gated_test = _outputs(gated, test.images)
    rows: dict[str, list[float]] = {}
    for seed in SEEDS:
        fit, _ = draw_fit_images(list(model.class_modules), "fashion-mnist", SHOTS, seed)
        scores, features = _outputs(model, fit.images)
        fit_units = unit_blocks(features)
        gen = torch.Generator().manual_seed(seed)
        probe = build("probe", k, model.feature_width).fit(scores, features, fit.labels, gen)
        with torch.no_grad():
            plain = probe(test_scores, test_features)
            rows.setdefault(PLAIN, []).append(accuracy(plain))
            rows.setdefault("probe, test-time mirroring", []).append(
                accuracy(plain.softmax(1) + probe(mirror_scores, mirror_features).softmax(1)))
            m_scores, m_features = _outputs(model, fit.images.flip(-1))
            mirrored = build("probe", k, model.feature_width).fit(
                torch.cat([scores, m_scores]), torch.cat([features, m_features]), fit.labels.repeat(2),
                torch.Generator().manual_seed(seed))
            rows.setdefault("probe, fit images and their mirrors", []).append(
                accuracy(mirrored(test_scores, test_features)))
            mean, spread = features.mean(0), features.std(0).clamp_min(1e-6)
            standard, test_standard = (features - mean) / spread, (test_features - mean) / spread
            for shrinkage in SHRINKAGES:
                rows.setdefault(f"shrinkage LDA ({shrinkage:g})", []).append(
                    accuracy(_lda(standard, fit.labels, k, shrinkage)(test_standard)))
            centres = torch.stack([standard[fit.labels == c].mean(0) for c in range(k)])
            rows.setdefault("nearest class mean", []).append(
                accuracy(F.normalize(test_standard, dim=1) @ F.normalize(centres, dim=1).T))
            affinity = test_units @ fit_units.T / (len(edges) - 1)
            onehot = F.one_hot(fit.labels, k).double()
            for alpha, beta in CACHE_GRID:
                cache = torch.exp(-beta * (1 - affinity.double())) @ onehot
                rows.setdefault(f"probe + cache (alpha {alpha:g}, beta {beta:g})", []).append(
                    accuracy(plain.double().log_softmax(1) + alpha * cache))
            others = ~torch.isin(pool.rows, fit.rows)  # the images of the pool not drawn for the fit
            unlabelled_scores, unlabelled_features = pool_scores[others], pool_features[others]
            unlabelled_logits = probe(unlabelled_scores, unlabelled_features)
            sure = unlabelled_logits.softmax(1)
            for t in BALANCE_TEMPERATURES:
                offsets = balancing_offsets(unlabelled_logits.double(), t)
                rows.setdefault(f"probe + balancing offsets (T {t:g})", []).append(
                    accuracy(plain.double() + offsets))
            gated_fit, _ = draw_fit_images(list(gated.class_modules), "fashion-mnist", SHOTS, seed)
            gated_probe = build("probe", k, gated.feature_width).fit(
                *_outputs(gated, gated_fit.images), gated_fit.labels, torch.Generator().manual_seed(seed))
            rows.setdefault(GATED, []).append(accuracy(gated_probe(*gated_test)))
            unit_probe = build("probe", k, model.feature_width).fit(
                scores, fit_units, fit.labels, torch.Generator().manual_seed(seed))
            rows.setdefault("probe on unit-length module features", []).append(
                accuracy(unit_probe(test_scores, test_units)))
        rows.setdefault("ReLU + linear head (as MwT)", []).append(
            accuracy(_mlp_head(torch.cat([fit_units, scores], 1), fit.labels, k, seed)(
                torch.cat([test_units, test_scores], 1))))
        for m in SELF_TRAINING:
            picked = torch.cat([torch.argsort(sure[:, c], descending=True)[:m] for c in range(k)])
            guessed = torch.arange(k).repeat_interleave(m)
            again = build("probe", k, model.feature_width).fit(
                torch.cat([scores, unlabelled_scores[picked]]), torch.cat([features, unlabelled_features[picked]]),
                torch.cat([fit.labels, guessed]), torch.Generator().manual_seed(seed))
            with torch.no_grad():
                rows.setdefault(f"self-training ({m} per class)", []).append(
                    accuracy(again(test_scores, test_features)))
        for steps, (acc, spent) in _fine_tuned(refs, fit, test, seed).items():
            rows.setdefault(f"fine-tuning modules and probe ({steps} steps)", []).append(acc)
            seconds.setdefault(str(steps), []).append(spent)
        for row, repos in parents.items():
            fit_x = parent_features(repos, fit.images, row == EVERY_STAGE)
            rows.setdefault(row, []).append(parents_probe(fit_x, fit.labels, test_parents[row], test.labels, k, seed))
    return {"rows": rows, "test_images": len(test), "fine_tune_seconds": seconds}


def measure() -> dict:
    import hubmod
    from hubmod.split_pipeline import NEGATIVES_MAX_AUC_LOSS  # what a split with --negatives uses by default

    (a_repo, _), (b_repo, _) = PAIRS[LONGER]
    a_index, b_index = ensure_split(a_repo), ensure_split(b_repo)
    a_gated, b_gated = (ensure_exposed_split(repo, NEGATIVES_MAX_AUC_LOSS)[0] for repo in (a_repo, b_repo))
    short = [repo for repo, _ in PAIRS[SHORT]]
    parents = {"(b) probe on the parents' features": [a_repo, b_repo],
               EVERY_STAGE: [a_repo, b_repo],
               f"(b), {SHORT} (3 epochs)": short,
               f"(b), {SHORT} (3 epochs) without label smoothing": [smooth_free(s)[0] for s in PAIRS[SHORT]]}
    out = {"pair": LONGER, "shots": SHOTS, "seeds": list(SEEDS), "splits": [a_index, b_index],
           "gated_splits": [a_gated, b_gated], "problems": {},
           "fine_tune_lr": FINE_TUNE_LR, "parents": parents}
    for problem in ("all ten", "upper body"):
        firsts, lasts = PROBLEMS[problem]
        refs = [f"{a_index}:{c}" for c in firsts] + [f"{b_index}:{c}" for c in lasts]
        gated = hubmod.compose([f"{a_gated}:{c}" for c in firsts] + [f"{b_gated}:{c}" for c in lasts], hub="local")
        out["problems"][problem] = _problem(hubmod.compose(refs, hub="local"), gated, firsts + lasts, refs, parents)
        print(problem + ": " + ", ".join(f"{r} {pct(statistics.mean(v))}"
                                         for r, v in out["problems"][problem]["rows"].items()), flush=True)
    return out


def _cell(values: list[float]) -> str:
    return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def render(result: dict, header: str) -> str:
    problems = list(result["problems"])
    names = list(result["problems"][problems[0]]["rows"])

    def mean(p: str, n: str) -> float:
        return statistics.mean(result["problems"][p]["rows"][n])

    best = {p: max((n for n in names if n != PLAIN), key=lambda n: mean(p, n)) for p in problems}
    lines = [header, f"Parents: `{result['pair']}` (reuse_fmnist.py), training 0, GradSplitter's fast preset; "
             f"{result['shots']} labelled images per class drawn as `--fit` draws them, seeds "
             f"{', '.join(map(str, result['seeds']))}; accuracy on every Fashion-MNIST test image of each problem's "
             "classes, mean ± standard deviation over the seeds (%). Grid rows (shrinkage, alpha and beta, T) are "
             "each one setting; the best row of each problem, marked *, was chosen on the test images, so it is "
             "an upper bound for that idea, not a method.", "",
             "| use of the images | " + " | ".join(problems) + " |", "|---|" + "---:|" * len(problems)]
    for n in names:
        cells = [_cell(result["problems"][p]["rows"][n]) + (" *" if best[p] == n else "") for p in problems]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    for p in problems:
        shipped, top = mean(p, PLAIN), mean(p, best[p])
        lines.append(f"- {p}: the best alternative, {best[p]}, scores {100 * (top - shipped):+.2f} points against "
                     f"the shipped probe ({pct(top)} against {pct(shipped)}).")
    both = [n for n in names if n != PLAIN and all(mean(p, n) > mean(p, PLAIN) for p in problems)]
    reach = [f"{n} on {p}" for n in names for p in problems if p in FIT_TARGETS and mean(p, n) >= FIT_TARGETS[p]]
    lines += ["", ("Above the shipped probe on every problem: " + "; ".join(
        f"{n} (" + ", ".join(f"{100 * (mean(p, n) - mean(p, PLAIN)):+.2f}" for p in problems) + " points)"
        for n in both) + "." if both else "No row is above the shipped probe on every problem.")
        + " " + ("At or above the `--fit` target (the reuse section): " + "; ".join(reach) + "." if reach
                 else "No row reaches the `--fit` target of either problem (the reuse section: " + ", ".join(
                     f"{p} {pct(FIT_TARGETS[p])}" for p in problems if p in FIT_TARGETS) + ").")]
    lines += ["", "Fitting with fine-tuning (the probe, then the steps; composing not counted), mean over the "
              "seeds: " + "; ".join(f"{p}: " + ", ".join(
                  f"{steps} steps {statistics.mean(v):.1f} s" for steps, v in
                  result["problems"][p]["fine_tune_seconds"].items()) for p in problems)
              + f" (learning rate {result['fine_tune_lr']:g}). The shipped probe fits in seconds (the reuse section)."]
    pairs = [(row, base) for row, base in ((EVERY_STAGE, "(b) probe on the parents' features"),
                                           (f"(b), {SHORT} (3 epochs) without label smoothing",
                                            f"(b), {SHORT} (3 epochs)")) if row in names and base in names]
    if pairs:
        lines += ["", "Other features of the parents, against (b) on the same parents: " + "; ".join(
            f"{row} " + ", ".join(f"{p} {100 * (mean(p, row) - mean(p, base)):+.2f}" for p in problems) + " points"
            for row, base in pairs) + "."]
    gaps = {p: FIT_TARGETS[p] - mean(p, PLAIN) for p in problems if p in FIT_TARGETS}
    if not reach and gaps:
        lines.append("")
        lines.append("None of them ships: the best gain on each problem (" + ", ".join(
            f"{p} {100 * (mean(p, best[p]) - mean(p, PLAIN)):+.2f}" for p in gaps) + " points, each chosen on the "
            "test images) is a fraction of the probe's distance to the target (" + ", ".join(
                f"{p} {100 * g:.2f}" for p, g in gaps.items()) + " points); the targets are at the most a combiner "
            "gets from these modules with every held-out image, (d) in the reuse section.")
    return "\n".join(lines) + "\n"


def main() -> None:
    def prepare() -> None:
        ensure_trainings(LONGER, (0,))
        for spec in PAIRS[SHORT]:
            ensure_parent(*spec)
            ensure_parent(*smooth_free(spec))

    section_main(__doc__, SECTION, "Other uses of K labelled images, tried against the `--fit` targets", OUT,
                 measure, render, prepare=prepare)


if __name__ == "__main__":
    main()
