"""Benchmark: composing modules of different parents with unlabelled images of the task (``compose --adapt``).

    python benchmarks/adapt_fmnist.py            # measure (uses zero_shot_fmnist.py's parents and splits)
    python benchmarks/adapt_fmnist.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

Between zero-shot (nothing of the task) and ``--fit`` (labelled images of it) lies the common case
of images of the task that nobody labelled. ``--adapt`` offsets each module's calibrated score so
that the composition shares those images evenly between its classes (hubmod.adaptation). On the
four trainings of the vgg+resnet18 pair of zero_shot_fmnist.py, for each problem of reuse_fmnist.py:

* the shipped setting, through ``hubmod.compose(..., adapt=FOLDER)`` on a folder of the train split's
  images none of the parents trained on (200 per class), labels dropped; timed;
* beside it ``auto``'s zero-shot rule on the same modules, and ``--adapt`` on modules split without
  ``--negatives`` (``auto`` then composes them with minmax);
* what the setting depends on, from the same modules' scores: the temperature, how many images per
  class, and images whose classes are not equally common (each class's share drawn from a Dirichlet
  distribution; accuracy then weighs each class's test recall by its share, as a user whose images
  come in those shares would see it, for the adapted and the unadapted composition alike).

Accuracy is on the problem's classes of the Fashion-MNIST test split. Results go to
benchmarks/results/adapt.json and BENCHMARKS.md.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time

from common import RESULTS, pct, section_main
from reuse_fmnist import PROBLEMS, WORK, _outputs, ensure_split
from zero_shot_fmnist import PAIR, TRAININGS, _parents, ensure_exposed_split, mean_sd_rows, over_trainings, trained_pair

OUT = RESULTS / "adapt.json"
SECTION = "adapt"
TEMPERATURES = (0.03, 0.1, 0.3, 1.0)
PER_CLASS = (5, 20, 50)  # images per class drawn (3 draws each) for the "how many" rows
DRAWS = 3
ALPHAS = (10.0, 2.0)  # Dirichlet concentration of the class shares: 10 about even, 2 far from it
SHARE_DRAWS = 5


def _accuracy(scores, labels) -> float:
    return float((scores.argmax(1) == labels).double().mean())


def _weighted(scores, labels, shares) -> float:
    """Accuracy on images whose classes come in ``shares``: each class's recall weighed by its share."""
    import torch

    pred = scores.argmax(1)
    recall = torch.stack([(pred[labels == c] == c).double().mean() for c in range(len(shares))])
    return float((recall * shares.double()).sum() / shares.double().sum())


def _unlabelled_folder(images, name: str):
    """A save_to_disk folder holding only an image column: what a user's unlabelled images look like."""
    from datasets import Array2D, Dataset, Features

    path = WORK / "adapt" / name
    if path.exists():
        shutil.rmtree(path)
    Dataset.from_dict({"image": images[:, 0].numpy()},
                      features=Features({"image": Array2D(tuple(images.shape[2:]), "uint8")})).save_to_disk(str(path))
    return path


def measure() -> dict:
    runs = {str(seed): measure_pair(seed) for seed in TRAININGS}
    first = runs[str(TRAININGS[0])]
    out: dict = {"trainings": runs, "problems": over_trainings(runs), "temperature": first["temperature"]}
    for problem, row in out["problems"].items():
        row["seconds"] = max(r["problems"][problem]["seconds"] for r in runs.values())
    return out


def measure_pair(seed: int, pair: str = PAIR) -> dict:
    import torch

    import hubmod
    from hubmod.adaptation import TEMPERATURE, balancing_offsets
    from hubmod.data import load_images
    from hubmod.fitting import draw_fit_images

    (a_repo, _), (b_repo, _) = trained_pair(seed, pair)
    exposed = [ensure_exposed_split(a_repo)[0], ensure_exposed_split(b_repo)[0]]
    plain = [ensure_split(a_repo), ensure_split(b_repo)]
    out: dict = {"pair": pair, "parents": [a_repo, b_repo], "exposed_splits": exposed, "temperature": TEMPERATURE,
                 "problems": {}}
    test_all = load_images("fashion-mnist", "test")
    for problem, classes in PROBLEMS.items():
        names = classes[0] + classes[1]
        refs = {kind: [f"{idx[0]}:{c}" for c in classes[0]] + [f"{idx[1]}:{c}" for c in classes[1]]
                for kind, idx in (("exposed", exposed), ("plain", plain))}
        test = test_all.for_classes(names, problem)
        model = hubmod.compose(refs["exposed"], hub="local")
        pool, _ = draw_fit_images(list(model.class_modules), "fashion-mnist", 200, 0)  # every untouched image
        folder = _unlabelled_folder(pool.images, f"seed{seed}-{problem.replace(' ', '-')}")
        t = time.perf_counter()
        adapted = hubmod.compose(refs["exposed"], hub="local", adapt=str(folder))
        seconds = time.perf_counter() - t
        assert adapted.fit_info["images"] == len(pool)
        (test_scores, test_features), pool_scores = _outputs(model, test.images), _outputs(model, pool.images)[0]
        assert adapted.calibration == model.calibration  # the same modules under the same rule: the same outputs
        with torch.no_grad():
            adapted_test = adapted.combine(test_scores, test_features)
        plain_model = hubmod.compose(refs["plain"], hub="local")
        plain_test, plain_pool = _outputs(plain_model, test.images)[0], _outputs(plain_model, pool.images)[0]
        acc = {f"`auto` ({model.calibration})": _accuracy(test_scores, test.labels),
               f"`--adapt` (T = {TEMPERATURE})": _accuracy(adapted_test, test.labels),
               f"`auto` ({plain_model.calibration}), modules split without --negatives": _accuracy(plain_test,
                                                                                                   test.labels),
               "`--adapt`, modules split without --negatives":
                   _accuracy(plain_test + balancing_offsets(plain_pool), test.labels)}
        for temperature in TEMPERATURES:
            acc[f"T = {temperature}"] = _accuracy(test_scores + balancing_offsets(pool_scores, temperature),
                                                  test.labels)
        for n in PER_CLASS:
            runs = []
            for draw in range(DRAWS):
                rows = pool.stratified(n, torch.Generator().manual_seed(draw))
                runs.append(_accuracy(test_scores + balancing_offsets(pool_scores[rows]), test.labels))
            acc[f"{n} images per class"] = statistics.mean(runs)
        for alpha in ALPHAS:
            adapted_runs, unadapted_runs = [], []
            for draw in range(SHARE_DRAWS):
                g = torch.Generator().manual_seed(draw)
                torch.manual_seed(draw)  # Dirichlet samples with torch's global generator
                shares = torch.distributions.Dirichlet(torch.full((len(names),), alpha)).sample()
                rows = torch.cat([
                    (idx := (pool.labels == c).nonzero().flatten())[torch.randperm(len(idx), generator=g)][
                        : max(1, round(float(shares[c] / shares.max()) * len(idx)))] for c in range(len(names))])
                offsets = balancing_offsets(pool_scores[rows])
                adapted_runs.append(_weighted(test_scores + offsets, test.labels, shares))
                unadapted_runs.append(_weighted(test_scores, test.labels, shares))
            acc[f"unequal shares (Dirichlet {alpha:g}), `auto`"] = statistics.mean(unadapted_runs)
            acc[f"unequal shares (Dirichlet {alpha:g}), `--adapt`"] = statistics.mean(adapted_runs)
        out["problems"][problem] = {"accuracy": acc, "seconds": seconds, "images": len(pool),
                                    "test_images": len(test)}
        print(f"seed {seed} / {problem}:", ", ".join(f"{r} {pct(a)}" for r, a in acc.items()), flush=True)
    return out


def _against_fit() -> dict:
    """reuse_fmnist.py's K = 10 affine fit on the seed-0 training, per problem, if measured on the same parents."""
    reuse = RESULTS / "reuse.json"
    fits = json.loads(reuse.read_text()) if reuse.exists() else {}
    first = trained_pair(TRAININGS[0])
    return {problem: statistics.mean(r["fit"]["affine"]["10"]) for problem in PROBLEMS
            if (r := fits.get(f"vgg+resnet18 / {problem}", {})).get("parents") == [first[0][0], first[1][0]]
            and r.get("fit", {}).get("affine", {}).get("10")}


def render(result: dict, header: str) -> str:
    problems = list(result["problems"])
    rules = list(result["problems"][problems[0]]["accuracy"])
    trainings = result["trainings"]
    lines = [header.rstrip(), "",
             f"Modules of zero_shot_fmnist.py's vgg+resnet18 pair (trained {len(trainings)} times, "
             "`train_parent.py --seed` " + ", ".join(trainings) + "), split with `--negatives` unless the row says "
             "otherwise. `--adapt` reads a folder of the train split's images of the problem's classes that none of "
             "the parents trained on (200 per class), labels dropped; the rows below the first four set the "
             "offsets from the same modules' scores with one thing changed. Accuracy on the problem's Fashion-MNIST "
             "test images, mean ± standard deviation over the trainings (%):", "",
             "| | " + " | ".join(problems) + " |", "|---|" + "---:|" * len(problems)]
    lines += mean_sd_rows(result, rules, problems)
    fit = _against_fit()
    shipped = next(r for r in rules if r.startswith("`--adapt` (T"))
    lines += ["", "Compose + adapt wall time (the slowest training): " + ", ".join(
        f"{p} {result['problems'][p]['seconds']:.1f} s" for p in problems) + "."]
    if fit:
        lines += ["", "Beside `--fit` with 10 labelled images per class (affine, seed-0 training, the reuse section): "
                  + "; ".join(f"{p} {pct(trainings[str(TRAININGS[0])]['problems'][p]['accuracy'][shipped])} adapted "
                              f"against {pct(v)} fitted" for p, v in fit.items()) + "."]
    lines += ["", "Rows \"unequal shares\": each class's share of the unlabelled images drawn from a Dirichlet "
              f"distribution ({SHARE_DRAWS} draws; concentration 10: shares within about a factor of two, 2: up to "
              "ten or more), and accuracy weighs each class's test recall by its share, for the unadapted "
              "composition too. `--adapt` assumes equal shares. " + _unequal(result)]
    return "\n".join(lines)


def _unequal(result: dict) -> str:
    """Where unequal shares made --adapt worse than `auto` on the same modules (computed, so a re-run can
    change the text)."""
    cells = []
    for alpha in ALPHAS:
        adapted, unadapted = (f"unequal shares (Dirichlet {alpha:g}), {rule}" for rule in ("`--adapt`", "`auto`"))
        worse = [f"{p} ({100 * (r['accuracy'][adapted] - r['accuracy'][unadapted]):+.2f} points)"
                 for p, r in result["problems"].items() if r["accuracy"][adapted] < r["accuracy"][unadapted]]
        cells.append(f"Dirichlet {alpha:g}: " + (", ".join(worse) if worse else "none"))
    return "Problems where it then did worse than `auto`: " + "; ".join(cells) + "."


def main() -> None:
    section_main(__doc__, SECTION, "Without labels, with unlabelled images of the task (`compose --adapt`)", OUT,
                 measure, render, prepare=_parents)


if __name__ == "__main__":
    main()
