"""Benchmark: composing modules of different parents, without labels and with a few.

    python benchmarks/reuse_fmnist.py               # everything (parents are trained and split once)
    python benchmarks/reuse_fmnist.py --pair vgg+resnet18 --problem "all ten"
    python benchmarks/reuse_fmnist.py --render      # rebuild the BENCHMARKS.md section from the saved JSON

Parents trained on disjoint class sets, two pairs of different architectures: a 1-channel 28 px
VGG-style net on Fashion-MNIST classes 0-4 with a 3-channel 32 px resnet18 on classes 5-9, and a
RegNetY (grouped convolutions) on 0-4 with a 3-channel 32 px mobilenetv3_small_100 on 5-9; each
trained for 3 epochs, holding 200 images per class out of training, and split with GradSplitter's
fast preset. The first pair is also trained for 12 epochs (``LONGER``), to show how far better
parents move every number, and for 24 (``LONGEST``), to show whether twice as long again still
pays (measured on the all-ten and upper-body problems, those with `--fit` targets). A third
parent is trained on a different real dataset, scikit-learn's 8x8 handwritten digits (upscaled to
28 px), for a cross-domain problem. Problems: all ten classes; T-shirt/top, Pullover, Coat + Shirt
(look-alikes of the two parents); T-shirt/top, Trouser + Sandal, Sneaker; and digits 0, 1 (digits
parent) + Trouser, Pullover (the VGG parent).

For each problem: every zero-shot rule; ``--fit`` with K = 1, 5, 10, 50 labelled images per class
(drawn from images none of the parents trained on) for each combiner, mean and spread over seeds
0-2; and, on the same K images, the baselines a user would pick instead: (a) a small CNN trained
from scratch on them, (b) a linear probe on the two parents' full penultimate features
concatenated; the reference (c), a VGG-style net trained on all training images of the
problem's classes; and (d), each combiner fitted on every image none of the parents trained on
(the most the combiners get out of these modules, whatever K). Accuracy is on the problem's
classes of the test split (the fit images come from the train split, so none is scored).
Results go to benchmarks/results/reuse.json and BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from common import (
    RESULTS,
    ROOT,
    command,
    ensure_parent,
    machine,
    pct,
    section_header,
    setup_home,
    weak_modules_zero_shot,
    without_labels,
    write_section,
)

sys.path.insert(0, str(ROOT / "examples"))
from digits_dataset import save_digits  # noqa: E402

FIRST5 = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
LAST5 = ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
HO = ["--epochs", "3", "--holdout-per-class", "200"]
LONGER = "vgg+resnet18 (12 epochs)"  # the first pair trained four times longer: how much better parents give
LONGEST = "vgg+resnet18 (24 epochs)"  # and eight times longer: does it go on paying?


def _vgg_resnet(schedule: list[str], suffix: str = "") -> tuple:
    """The first pair's parents (repo, train_parent.py arguments), trained with ``schedule``."""
    return (("bench/vgg-fmnist-0to4-ho" + suffix, ["--arch", "hubmod_vgg", "--classes", "0-4", *schedule]),
            ("bench/resnet18-fmnist-5to9-ho" + suffix, ["--arch", "resnet18", "--classes", "5-9", "--in-chans", "3",
                                                       "--size", "32", *schedule]))


PAIRS = {
    "vgg+resnet18": _vgg_resnet(HO),
    LONGER: _vgg_resnet(["--epochs", "12", "--holdout-per-class", "200"], "-e12"),
    LONGEST: _vgg_resnet(["--epochs", "24", "--holdout-per-class", "200"], "-e24"),
    "regnety+mobilenetv3": (("bench/regnety-fmnist-0to4-ho", ["--arch", "regnety_002", "--classes", "0-4", *HO]),
                            ("bench/mobilenetv3-fmnist-5to9-ho", ["--arch", "mobilenetv3_small_100", "--classes",
                                                                  "5-9", "--in-chans", "3", "--size", "32", *HO])),
}
PROBLEMS = {
    "all ten": (FIRST5, LAST5),
    "upper body": (["T-shirt/top", "Pullover", "Coat"], ["Shirt"]),
    "mixed": (["T-shirt/top", "Trouser"], ["Sandal", "Sneaker"]),
}
DIGITS_REPO = "bench/vgg-digits"
CROSS = {"digits + fashion": (["digit 0", "digit 1"], ["Trouser", "Pullover"])}  # digits parent, then the VGG parent
SHOTS = (1, 5, 10, 50)
SEEDS = (0, 1, 2)
COMBINERS = ("affine", "stack", "probe")
ZERO_SHOT = ("none", "minmax", "means", "platt", "vote")
SPLIT_OPTIONS = {"preset": "fast"}
REFERENCE_EPOCHS = 1  # on 2 CPU cores an epoch over all ten classes takes minutes; the table says how many
OUT = RESULTS / "reuse.json"
REFERENCES: dict = {}  # (classes, dataset) -> accuracy: one reference per problem, whichever pair asks first
SECTION = "reuse"
WORK = ROOT / "benchmarks" / ".work"


# --------------------------------------------------------------------------- data and parents


def digits_dataset() -> Path:
    """scikit-learn's 8x8 digits as a save_to_disk folder (examples/digits_dataset.py): 28 px uint8 images,
    classes 'digit 0'..'digit 9', 30 % of them in a test split."""
    return save_digits(WORK / "digits", test_fraction=0.3, seed=0)


def cross_dataset(digit_classes: list[str], fashion_classes: list[str]) -> Path:
    """A labelled folder holding the digits classes and the Fashion-MNIST classes of the cross-domain problem."""
    path = WORK / ("cross-" + "-".join(c.replace(" ", "").replace("/", "") for c in digit_classes + fashion_classes))
    if (path / "dataset_dict.json").exists():
        return path
    import torch
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    from hubmod.data import load_images

    names = digit_classes + fashion_classes
    feats = Features({"image": Image(), "label": ClassLabel(names=names)})
    parts = {}
    for split in ("train", "test"):
        d = load_images(str(digits_dataset()), split).for_classes(digit_classes, "cross")
        f = load_images("fashion-mnist", split).for_classes(fashion_classes, "cross")
        images = torch.cat([d.images, f.images])
        labels = torch.cat([d.labels, f.labels + len(digit_classes)])
        parts[split] = Dataset.from_dict({"image": [im[0].numpy() for im in images], "label": labels.tolist()},
                                         features=feats)
    DatasetDict(parts).save_to_disk(str(path))
    return path


def ensure_digits_parent() -> None:
    from hubmod.data import load_images
    from hubmod.hub import LocalHub
    from hubmod.training import fashion_mnist_config, hold_out, publish_parent, train_parent

    if LocalHub().repo_exists(DIGITS_REPO):
        return
    data = load_images(str(digits_dataset()), "train")
    train, validation = hold_out(data, 20, 0, str(digits_dataset()))
    parent = train_parent("hubmod_vgg", train, fashion_mnist_config(1, 28), epochs=30, batch_size=64, lr=3e-3,
                          seed=0, validation=validation, progress=False)
    publish_parent(parent, DIGITS_REPO, "local", notes="8x8 digits of scikit-learn, upscaled to 28 px")


def ensure_split(repo: str) -> str:
    """Split a parent once (GradSplitter, fast preset); returns the split's index repo."""
    import hubmod
    from hubmod.hub import LocalHub

    prefix = f"{repo}-fast"
    if not LocalHub().repo_exists(prefix):
        hubmod.split(repo, _dataset_of(repo), hub="local", options=SPLIT_OPTIONS, repo_prefix=prefix, progress=False)
    return prefix


def _dataset_of(repo: str) -> str:
    return str(digits_dataset()) if repo == DIGITS_REPO else "fashion-mnist"


# --------------------------------------------------------------------------- measurements


def _accuracy(logits, labels) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def _outputs(model, images):
    import torch

    parts = list(model.module_outputs(images))
    return torch.cat([s for s, _ in parts]), torch.cat([f for _, f in parts])


def feature_edges(modules) -> list[int]:
    """Where each module's head inputs start (and the last ends) in ``module_outputs``' concatenated features."""
    edges = [0]
    for m in modules:
        edges.append(edges[-1] + m.head_width)
    return edges


def _calibrated(model, raw, features, rule: str):
    """[B, k] the modules' raw scores under calibration ``rule``, as ``model.module_outputs`` gives them."""
    import torch

    cuts = feature_edges(model.class_modules)
    return torch.stack([m.calibrated(raw[:, i], rule, features[:, cuts[i]:cuts[i + 1]])
                        for i, m in enumerate(model.class_modules)], 1)


def problem_view(test_labels, names: list[str], classes: list[str]):
    """A problem inside a composition of ``names``: its columns (``classes``' places in ``names``), which
    test images are of its classes, and their labels renumbered in the problem's order. A problem's
    accuracy is then that of ``scores[:, columns][mask]`` against ``labels``."""
    import torch

    columns = [names.index(c) for c in classes]
    mask = torch.isin(test_labels, torch.tensor(columns))
    labels = torch.tensor([columns.index(int(v)) for v in test_labels[mask]])
    return columns, mask, labels


def scratch_cnn(images, labels, classes: int, seed: int):
    """Baseline (a): a small VGG-style CNN trained from scratch on the K labelled images."""

    from hubmod.data import LabeledImages
    from hubmod.training import fashion_mnist_config, train_parent

    data = LabeledImages(images, labels, [str(c) for c in range(classes)], "fit", "train")
    epochs = max(20, min(200, 4000 // max(1, len(labels))))  # about 4,000 image-steps, at least 20 epochs
    parent = train_parent("hubmod_vgg", data, fashion_mnist_config(1, 28), epochs=epochs,
                          batch_size=min(64, len(labels)), lr=3e-3, seed=seed, progress=False,
                          model_args={"cfg": [16, "M", 32, "M", 64, "M"]})
    return parent.model, parent.data_config


def _stages(model) -> list:
    """The layers whose outputs end each stage of the parent architectures of these pairs."""
    import torch

    if hasattr(model, "layer4"):  # resnet
        return [model.layer1, model.layer2, model.layer3, model.layer4]
    return [m for m in model.features if isinstance(m, torch.nn.MaxPool2d)]  # hubmod_vgg


def parent_features(repos: list[str], images, every_stage: bool = False):
    """The parents' full penultimate features, concatenated (baseline (b)); with ``every_stage``, each
    stage's output average-pooled instead (fit_alternatives.py: would earlier features do better?)."""
    import torch

    from hubmod.metrics import pre_logits
    from hubmod.parents import load_parent
    from hubmod.preprocess import preprocess

    out = []
    for repo in repos:
        p = load_parent(repo, hub="local")
        pooled: list = []
        hooks = [layer.register_forward_hook(lambda _m, _i, o, pooled=pooled: pooled.append(o.mean((2, 3))))
                 for layer in (_stages(p.model) if every_stage else [])]
        rows = []
        with torch.no_grad():
            x = preprocess(images, p.data_config)
            for i in range(0, len(x), 512):
                pooled.clear()
                last = pre_logits(p.model, x[i : i + 512])
                rows.append(torch.cat(pooled, 1) if every_stage else last)
        for hook in hooks:
            hook.remove()
        out.append(torch.cat(rows))
    return torch.cat(out, dim=1)


def parents_probe(fit_features, fit_labels, test_features, test_labels, classes: int, seed: int) -> float:
    """Baseline (b)'s accuracy: the probe combiner fitted on the parents' features alone (no module scores)."""
    import torch

    from hubmod.combiners import build

    probe = build("probe", classes, fit_features.shape[1])
    probe.fit(torch.zeros(len(fit_labels), classes), fit_features, fit_labels, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return _accuracy(probe(torch.zeros(len(test_labels), classes), test_features), test_labels)


def reference_accuracy(classes: list[str], dataset: str, test) -> float:
    """Reference (c): a VGG-style net trained on all training images of the problem's classes."""
    from hubmod.data import load_images
    from hubmod.metrics import parent_report
    from hubmod.training import fashion_mnist_config, train_parent

    train = load_images(dataset, "train", (28, 28)).for_classes(classes, "reference")
    epochs = REFERENCE_EPOCHS if len(train) > 20000 else max(REFERENCE_EPOCHS, min(30, 20000 // len(train)))
    parent = train_parent("hubmod_vgg", train, fashion_mnist_config(1, 28), epochs=epochs, seed=0, progress=False)
    return parent_report(parent.model, test, fashion_mnist_config(1, 28)).accuracy


def ceiling(model, dataset: str, test, test_scores, test_features) -> dict:
    """(d) The most a combiner gets out of these modules here: each combiner fitted on *every* image none of
    the parents trained on (hundreds per class, against the table's K), the best one kept. A `--fit`
    target above it cannot be met by any of the combiners on these modules, whatever K."""
    import torch

    from hubmod.combiners import build
    from hubmod.data import load_images
    from hubmod.fitting import untouched_rows
    from hubmod.preprocess import largest_input_size

    modules = list(model.class_modules)
    data = load_images(dataset, "train", largest_input_size(m.data_config for m in modules))  # as --fit
    data = data.for_classes(model.class_names, "ceiling")
    rows = untouched_rows(modules, data, dataset)
    if rows is None:
        return {}
    untouched = data.subset(rows)
    per_class = int(torch.bincount(untouched.labels, minlength=len(modules)).min())
    pool = untouched.subset(untouched.stratified(per_class, torch.Generator().manual_seed(0)))  # as --fit draws
    scores, features = _outputs(model, pool.images)
    best: dict = {}
    for kind in COMBINERS:
        comb = build(kind, len(modules), model.feature_width)
        comb.fit(scores, features, pool.labels, torch.Generator().manual_seed(0))
        with torch.no_grad():
            acc = _accuracy(comb(test_scores, test_features), test.labels)
        if acc > best.get("accuracy", -1.0):
            best = {"combiner": kind, "accuracy": acc, "images": len(pool), "per_class": per_class}
    return best


def run_problem(pair: str, problem: str, firsts: tuple[str, str], classes: tuple[list[str], list[str]],
                dataset: str) -> dict:
    import torch

    import hubmod
    from hubmod.combiners import build
    from hubmod.data import load_images
    from hubmod.fitting import draw_fit_images
    from hubmod.metrics import model_logits

    a_repo, b_repo = firsts
    a_index, b_index = ensure_split(a_repo), ensure_split(b_repo)
    refs = [f"{a_index}:{c}" for c in classes[0]] + [f"{b_index}:{c}" for c in classes[1]]
    names = classes[0] + classes[1]
    trained = json.loads((RESULTS / "parents.json").read_text())  # which training of each parent this measures
    out: dict = {"pair": pair, "problem": problem, "classes": names, "dataset": dataset, "parents": [a_repo, b_repo],
                 "revisions": [trained.get(repo, {}).get("revision") for repo in firsts],
                 "zero_shot": {}, "fit": {}, "baselines": {}}
    model = hubmod.compose(refs, hub="local")
    test = load_images(dataset, "test").for_classes(names, problem)
    out["test_images"] = len(test)
    model.calibration = "none"  # the modules run once; each rule then calibrates their raw scores
    raw, features = _outputs(model, test.images)
    scores_by_rule = {rule: (_calibrated(model, raw, features, rule), features) for rule in ZERO_SHOT}
    for rule, (scores, _) in scores_by_rule.items():
        out["zero_shot"][rule] = _accuracy(scores, test.labels)
    out["auto_rule"] = hubmod.compose(refs, hub="local").calibration
    print(f"{pair} / {problem}: zero-shot " + ", ".join(f"{r} {pct(a)}" for r, a in out["zero_shot"].items()),
          flush=True)
    base_rule = out["auto_rule"]
    model.calibration = base_rule
    test_scores, test_features = scores_by_rule[base_rule]
    test_parent_features = parent_features([a_repo, b_repo], test.images)
    for shots in SHOTS:
        for seed in SEEDS:
            try:
                fit, info = draw_fit_images(list(model.class_modules), dataset, shots, seed)
            except hubmod.HubmodError as e:
                print(f"  K={shots}: {e}", flush=True)
                break
            fit_scores, fit_features = _outputs(model, fit.images)
            for kind in COMBINERS:
                comb = build(kind, len(names), model.feature_width)
                comb.fit(fit_scores, fit_features, fit.labels, torch.Generator().manual_seed(seed))
                with torch.no_grad():
                    acc = _accuracy(comb(test_scores, test_features), test.labels)
                out["fit"].setdefault(kind, {}).setdefault(str(shots), []).append(acc)
            # baselines on the same K images
            out["baselines"].setdefault("parents_probe", {}).setdefault(str(shots), []).append(parents_probe(
                parent_features([a_repo, b_repo], fit.images), fit.labels, test_parent_features, test.labels,
                len(names), seed))
            cnn, cfg = scratch_cnn(fit.images, fit.labels, len(names), seed)
            logits = model_logits(cnn, test.images, cfg)
            out["baselines"].setdefault("scratch_cnn", {}).setdefault(str(shots), []).append(
                _accuracy(logits, test.labels))
            out.setdefault("fit_source", info["source"])
        print(f"  K={shots}: " + ", ".join(f"{k} {pct(statistics.mean(v[str(shots)]))}"
                                           for k, v in {**out["fit"], **out["baselines"]}.items()
                                           if str(shots) in v), flush=True)
    out["ceiling"] = ceiling(model, dataset, test, test_scores, test_features)
    if out["ceiling"]:
        print(f"  ceiling: {out['ceiling']['combiner']} on {out['ceiling']['images']} held-out images "
              f"{pct(out['ceiling']['accuracy'])}", flush=True)
    # what a user waits for: compose + fit at K = 10 with each combiner
    out["compose_fit_seconds"] = {}
    for kind in COMBINERS:
        t = time.perf_counter()
        hubmod.compose(refs, hub="local", fit=dataset, shots=10, combiner=kind)
        out["compose_fit_seconds"][kind] = time.perf_counter() - t
    known = REFERENCES.get((tuple(names), dataset))
    out["reference"] = known if known is not None else reference_accuracy(names, dataset, test)
    REFERENCES[(tuple(names), dataset)] = out["reference"]
    out["reference_epochs"] = REFERENCE_EPOCHS
    print(f"  reference (trained on all images of these classes): {pct(out['reference'])}", flush=True)
    return out


# --------------------------------------------------------------------------- report


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * sd:.2f}"


# The targets for modules of different parents (benchmarks, not tests).
FIT_TARGETS = {"all ten": 0.89, "upper body": 0.80}  # with K = 10 labelled images per class
ZERO_SHOT_TARGETS = {"all ten": 0.85, "upper body": 0.75}
FIT_SECONDS_TARGET = 30.0


def _gap(value: float, target: float) -> str:
    return f"{pct(value)} ({'at or above' if value >= target else f'{100 * (target - value):.2f} points short of'} " \
           f"{pct(target)})"


def targets(results: dict, without: list[dict]) -> list[str]:
    """Where each pair stands against the targets, computed from the results (and, for the pairs they
    measured, the zero-shot rules and `--adapt` rows of ``without``, common.without_labels(); for a pair
    only the weak-modules section measured without labels, its `auto` rule beside this section's), with
    what was tried beside the rules in the tables."""
    lines = ["Against the targets (K = 10, the best combiner; zero-shot, the best rule, from the zero-shot "
             "sections where they measured the pair):", ""]
    weak_only = weak_modules_zero_shot()
    for r in results.values():
        found = next((w for w in without if w["pair"] == r["pair"]), {})
        zero_shot = found.get("zero_shot")
        adapt = found["adapt"] if found.get("adapt") and _measured_on(found["adapt"], r) else None
        fit = {k: statistics.mean(v["10"]) for k, v in r["fit"].items() if "10" in v}
        if not fit:
            continue
        best, best_acc = max(fit.items(), key=lambda kv: kv[1])
        zero, where = dict(r["zero_shot"]), {}
        if zero_shot and r["problem"] in zero_shot["problems"]:
            zero = zero_shot["problems"][r["problem"]]["accuracy"]  # every rule, as a mean over the trainings
            where = dict.fromkeys(zero, f" ({_over(zero_shot)})")
        elif (weak := weak_only.get(r["pair"])) and r["problem"] in weak["problems"]:
            exposed = weak["problems"][r["problem"]]["accuracy"]  # beside this section's own rules
            zero.update(exposed)
            runs = len(weak["trainings"])  # the rule's name already says which section
            where = dict.fromkeys(exposed, " (one training)" if runs == 1 else f" (mean over {runs} trainings)")
        zero_rule, zero_acc = max(zero.items(), key=lambda kv: kv[1])
        base = max(statistics.mean(r["baselines"][b]["10"]) for b in ("scratch_cnn", "parents_probe"))
        ceiling = r.get("ceiling")
        parts = [f"`--fit` {_gap(best_acc, FIT_TARGETS[r['problem']])} with {best}"
                 if r["problem"] in FIT_TARGETS else f"`--fit` {pct(best_acc)} with {best}",
                 f"{'above' if best_acc > base else 'not above'} both baselines (best {pct(base)})",
                 f"compose + fit {max(r['compose_fit_seconds'].values()):.1f} s at most "
                 f"({'within' if max(r['compose_fit_seconds'].values()) <= FIT_SECONDS_TARGET else 'over'} "
                 f"{FIT_SECONDS_TARGET:.0f} s)"]
        if ceiling and r["problem"] in FIT_TARGETS and ceiling["accuracy"] < FIT_TARGETS[r["problem"]]:
            parts.append(f"the target is above (d), {pct(ceiling['accuracy'])}: no combiner reaches it on these "
                         f"modules even with {ceiling['per_class']} labelled images per class")
        source = where.get(zero_rule, "")
        parts.append(f"zero-shot {_gap(zero_acc, ZERO_SHOT_TARGETS[r['problem']])} with {zero_rule}{source}"
                     if r["problem"] in ZERO_SHOT_TARGETS else f"zero-shot {pct(zero_acc)} with {zero_rule}{source}")
        adapted = _adapted(adapt, r)
        if adapted:
            rule, acc = adapted
            value = _gap(acc, ZERO_SHOT_TARGETS[r["problem"]]) if r["problem"] in ZERO_SHOT_TARGETS else pct(acc)
            parts.append(f"without labels but with unlabelled images of the task, about equally many per class, "
                         f"{value} with {rule} ({_over(adapt)}; not zero-shot: it needs those images)")
        lines.append(f"- {r['pair']} / {r['problem']}: " + "; ".join(parts) + ".")
    lines += ["", "Tried beside the rules and combiners above: typicality p-values of each module's pooled "
              "features, parent gates (energy, best score), and outlier exposure at split time (`--negatives`); "
              "see the zero-shot sections."]
    if (RESULTS / "fit_alternatives.json").exists():
        lines[-1] += (" For `--fit`, other uses of the same ten images per class (mirrored fit images, test-time "
                      "mirroring, shrinkage LDA, nearest class mean, a cache of the fit images' features, "
                      "self-training on unlabelled images, `--adapt`'s balancing offsets on top of the fit, "
                      "modules of the `--negatives` splits, unit-length features, a ReLU + linear head, "
                      "fine-tuning the modules) and other features of the "
                      "parents (every stage pooled; parents trained without label smoothing): the fit-alternatives "
                      "section.")
    below = sorted({pct(r["reference"]) for r in results.values()
                    if r["problem"] in FIT_TARGETS and r["reference"] < FIT_TARGETS[r["problem"]]})
    if below:
        lines[-1] += (f" The reference (c), trained on every training image of the problem's classes "
                      f"({REFERENCE_EPOCHS} epoch), reaches {', '.join(below)}: below the `--fit` target it is "
                      "measured against, which asks ten images per class to beat it.")
    return lines


def _measured_on(adapt: dict, r: dict) -> bool:
    """Whether an adapt result measured this result's problem on the same parents."""
    return r["problem"] in adapt["problems"] and adapt["trainings"][min(adapt["trainings"])]["parents"] == r["parents"]


def _over(result: dict) -> str:
    """Where a zero-shot or adapt result comes from: its section, and over how many trainings."""
    count = len(result["trainings"])
    return f"mean over the {result['section']} section's {count} trainings" if count > 1 else \
        f"the {result['section']} section, one training"


def _adapted(adapt: dict | None, r: dict) -> tuple[str, float] | None:
    """The best `--adapt` row of an adapt result for this result's problem."""
    if not adapt:
        return None
    rows = {k: v for k, v in adapt["problems"][r["problem"]]["accuracy"].items() if k.startswith("`--adapt`")}
    return max(rows.items(), key=lambda kv: kv[1]) if rows else None


def _ceiling_cell(r: dict) -> str:
    c = r.get("ceiling")
    return f"{pct(c['accuracy'])} ({c['combiner']}, {c['per_class']}/class)" if c else "-"


def render(results: dict, header: str) -> str:
    lines = [header.rstrip(), ""]
    lines += ["Zero-shot (no labels; accuracy on the problem's test images):", "",
              "| pair | problem | " + " | ".join(ZERO_SHOT) + " | `auto` picks |",
              "|---|---|" + "---:|" * len(ZERO_SHOT) + "---|"]
    for r in results.values():
        cells = [pct(r["zero_shot"][z]) if z in r["zero_shot"] else "-" for z in ZERO_SHOT]
        lines.append(f"| {r['pair']} | {r['problem']} | " + " | ".join(cells) + f" | {r['auto_rule']} |")
    lines += ["", "With K labelled images per class (mean ± standard deviation over seeds 0-2, %):", "",
              "| pair | problem | K | " + " | ".join(COMBINERS) + " | (a) CNN from scratch | (b) probe on the parents "
              f"| (c) trained on all ({REFERENCE_EPOCHS} epoch) | (d) best combiner, every held-out image |",
              "|---|---|---:|" + "---:|" * (len(COMBINERS) + 4)]
    for r in results.values():
        for shots in SHOTS:
            key = str(shots)
            if key not in r["fit"].get("stack", {}):
                continue
            cells = [_mean_sd(r["fit"][k][key]) for k in COMBINERS]
            cells += [_mean_sd(r["baselines"]["scratch_cnn"][key]), _mean_sd(r["baselines"]["parents_probe"][key]),
                      pct(r["reference"]), _ceiling_cell(r)]
            lines.append(f"| {r['pair']} | {r['problem']} | {shots} | " + " | ".join(cells) + " |")
    lines += ["", "Compose + fit wall time at K = 10 (s): " + "; ".join(
        f"{r['pair']} / {r['problem']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["compose_fit_seconds"].items())
        for r in results.values()), "",
        "Fit images come from " + ", ".join(sorted({r.get("fit_source", "?") for r in results.values()})) + "."]
    lines += ["", *targets(results, without_labels())]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", choices=[*PAIRS, "digits"], action="append")
    ap.add_argument("--problem", choices=[*PROBLEMS, *CROSS], action="append")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args()
    setup_home()
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for r in results.values():
        if r.get("reference_epochs") == REFERENCE_EPOCHS:
            REFERENCES[(tuple(r["classes"]), r.get("dataset", "fashion-mnist"))] = r["reference"]
    if args.render:
        header = section_header(SECTION) or f"Command: `{command()}`\nMachine: (not recorded)\n"
    else:
        header = f"Command: `{command()}`\nMachine: {machine()}\n"
        for pair, (a, b) in PAIRS.items():
            if args.pair and pair not in args.pair:
                continue
            ensure_parent(*a)
            ensure_parent(*b)
            for problem, classes in PROBLEMS.items():
                if args.problem and problem not in args.problem:
                    continue
                results[f"{pair} / {problem}"] = run_problem(pair, problem, (a[0], b[0]), classes, "fashion-mnist")
                RESULTS.mkdir(parents=True, exist_ok=True)
                OUT.write_text(json.dumps(results, indent=1))
        if not args.pair or "digits" in args.pair:
            ensure_digits_parent()
            ensure_parent(*PAIRS["vgg+resnet18"][0])
            for problem, classes in CROSS.items():
                results[f"digits+vgg / {problem}"] = run_problem(
                    "digits+vgg", problem, (DIGITS_REPO, PAIRS["vgg+resnet18"][0][0]), classes,
                    str(cross_dataset(*classes)))
                OUT.write_text(json.dumps(results, indent=1))
    write_section(SECTION, "## Composing modules of different parents\n\n" + render(results, header))


if __name__ == "__main__":
    main()
