"""Benchmark: activation-based decomposition (Pan & Rajan) and its two scenarios, reuse and replace.

    python benchmarks/activation_fmnist.py                  # all three parts
    python benchmarks/activation_fmnist.py --only reuse     # one part

Parts:
* ``decompose``: the Fashion-MNIST parents of split_fmnist.py split with ``--method activation``
  (defaults) into ``<parent>-activation``; the table puts the result beside GradSplitter's and
  CNNSplitter's (from benchmarks/results/split_fmnist_full.json and cnnsplitter_fmnist.json).
* ``reuse``: new problems composed (voting) from the activation modules of two parents trained on
  disjoint class sets with different architectures (split_fmnist.py's DISJOINT parents), against the
  same recipe (``hubmod_vgg``, 3 epochs) trained from scratch on each problem: accuracy and wall time.
* ``replace``: a weak model that saw only 20 images of Shirt, Pullover and Coat, split with the
  activation method; each of those classes replaced by the strong parents' module of the class.

Results go to benchmarks/results/*.json and into BENCHMARKS.md with this command and the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from common import (
    RESULTS,
    ROOT,
    command,
    ensure_parent,
    machine,
    method_row,
    part_section,
    pct,
    setup_home,
)
from split_fmnist import DISJOINT, PARENTS

sys.path.insert(0, str(ROOT / "examples"))
from patch_weak_model import WEAK_ARGS, other_accuracy  # noqa: E402

WEAK = "bench/weak-vgg-fmnist-scarce"
REPLACE_CLASSES = ["Shirt", "Pullover", "Coat"]
VGG_05, RN_59 = DISJOINT
REUSE_PROBLEMS = {  # name -> (classes from the 0-4 VGG, classes from the 5-9 resnet18)
    "trousers-and-shoes": (["T-shirt/top", "Trouser"], ["Sandal", "Sneaker"]),
    "tops-and-accessories": (["Pullover", "Dress", "Coat"], ["Bag", "Ankle boot"]),
    "upper-body": (["T-shirt/top", "Pullover", "Coat"], ["Shirt"]),
    "all-ten": (["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"],
                ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]),
}
SCRATCH_ARGS = ["--arch", "hubmod_vgg", "--epochs", "3"]


def activation_split(repo: str, seed: int) -> dict:
    import hubmod

    t = time.perf_counter()
    report = hubmod.split(repo, "fashion-mnist", method="activation", repo_prefix=f"{repo}-activation", seed=seed,
                          hub="local")
    d = report.to_dict()
    d["wall_seconds"] = time.perf_counter() - t
    print(f"{repo}: activation composed {report.composed_accuracy:.4f} parent {report.parent_accuracy:.4f} "
          f"kept {report.mean_kept_kernels:.3f} in {d['wall_seconds']:.0f}s", flush=True)
    return d


def run_decompose(seed: int) -> dict:
    out = {}
    for repo, args in PARENTS.items():
        info = ensure_parent(repo, args)
        out[repo] = activation_split(repo, seed)
        out[repo]["parent_train_seconds"] = info["train_seconds"]
    return out


def run_reuse(seed: int) -> dict:
    import hubmod

    splits = {}
    for repo, args in DISJOINT.items():
        ensure_parent(repo, args)
        splits[repo] = activation_split(repo, seed)
    problems = {}
    for name, (left, right) in REUSE_PROBLEMS.items():
        refs = [f"{VGG_05}-activation:{c}" for c in left] + [f"{RN_59}-activation:{c}" for c in right]
        t = time.perf_counter()
        hubmod.compose(refs, output=f"bench/reuse-{name}", hub="local")
        compose_seconds = time.perf_counter() - t
        composed = hubmod.evaluate(f"bench/reuse-{name}", "fashion-mnist", hub="local")
        other_rules = {}
        for rule in ("minmax", "platt"):
            hubmod.compose(refs, output=f"bench/reuse-{name}-{rule}", calibration_method=rule, hub="local")
            other_rules[rule] = hubmod.evaluate(f"bench/reuse-{name}-{rule}", "fashion-mnist", hub="local").accuracy
        classes = left + right
        scratch_repo = "bench/vgg-fmnist" if len(classes) == 10 else f"bench/vgg-fmnist-only-{name}"
        info = ensure_parent(scratch_repo, SCRATCH_ARGS + ([] if len(classes) == 10 else
                                                            ["--classes", ",".join(classes)]))
        scratch = hubmod.evaluate(scratch_repo, "fashion-mnist", hub="local")
        problems[name] = {
            "classes": classes, "refs": refs, "composed_accuracy": composed.accuracy, "n": composed.n,
            "compose_seconds": compose_seconds, "other_rules": other_rules, "scratch_repo": scratch_repo,
            "scratch_accuracy": scratch.accuracy,
            "scratch_train_seconds": info["train_seconds"], "scratch_train_images": info["train_images"],
            "composed_recall": {k: v["recall"] for k, v in composed.per_class.items()},
        }
        print(f"reuse {name}: composed {composed.accuracy:.4f} in {compose_seconds:.1f}s, scratch "
              f"{scratch.accuracy:.4f} in {info['train_seconds']:.0f}s", flush=True)
    return {"splits": splits, "problems": problems}


def _class_metrics(report, name: str) -> dict:
    m = report.per_class[name]
    return {"precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
            "other_accuracy": other_accuracy(report, name), "accuracy": report.accuracy}


def run_replace(seed: int) -> dict:
    import hubmod
    from hubmod.refs import slugify

    weak_info = ensure_parent(WEAK, WEAK_ARGS)
    strong = list(PARENTS)  # their activation modules come from the decompose part
    weak_split = activation_split(WEAK, seed)
    weak_parent = hubmod.evaluate(WEAK, "fashion-mnist", hub="local")
    modular_repo = f"{WEAK}-activation-modular"
    hubmod.compose([f"{WEAK}-activation:{r['class_name']}" for r in weak_split["rows"]], output=modular_repo,
                   hub="local")
    modular = hubmod.evaluate(modular_repo, "fashion-mnist", hub="local")
    rows = []
    for repo in strong:
        for name in REPLACE_CLASSES:
            out = f"{modular_repo}-{slugify(name)}-from-{repo.split('/')[-1]}"
            t = time.perf_counter()
            hubmod.replace(modular_repo, name, f"{repo}-activation:{name}", output=out, hub="local")
            seconds = time.perf_counter() - t
            after = hubmod.evaluate(out, "fashion-mnist", hub="local")
            rows.append({"class": name, "module_from": repo, "repo": out, "replace_seconds": seconds,
                         "weak_parent": _class_metrics(weak_parent, name), "before": _class_metrics(modular, name),
                         "after": _class_metrics(after, name)})
            print(f"replace {name} from {repo}: F1 {rows[-1]['before']['f1']:.3f} -> {rows[-1]['after']['f1']:.3f}, "
                  f"all {modular.accuracy:.4f} -> {after.accuracy:.4f}", flush=True)
    return {"weak": WEAK, "weak_info": weak_info, "weak_split": {k: weak_split[k] for k in (
        "composed_accuracy", "parent_accuracy", "mean_kept_kernels", "wall_seconds")},
            "weak_parent_accuracy": weak_parent.accuracy, "modular_accuracy": modular.accuracy, "rows": rows}


def render_decompose(act: dict) -> str:
    others = {}
    for name, file in (("GradSplitter", "split_fmnist_full.json"), ("CNNSplitter", "cnnsplitter_fmnist.json")):
        path = RESULTS / file
        others[name] = json.loads(path.read_text()) if path.exists() else {}
    lines = ["## Activation-based decomposition beside GradSplitter and CNNSplitter", "",
             "Same parents, seed 0, all 10,000 test images. Activation modules compose by voting "
             "(DESIGN §5); the other methods' rows are from their benchmark runs (see their sections).", "",
             "| parent | method | parent acc. | composed 10 modules | Δ vs parent | mean kept kernels | "
             "module MACs / parent | module params / parent | split wall time |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for repo in act:
        for name, d in (*((n, o.get(repo)) for n, o in others.items()), ("Activation", act[repo])):
            if d is None:
                continue
            lines.append(method_row(repo, name, d))
    lines += ["", "Split cost against training: wall time per module produced, in epochs of the parent's own "
              "training (`train_parent.py`, all 60,000 images per epoch).", "",
              "| parent | one training epoch | method | split time per module | in parent epochs |",
              "|---|---:|---|---:|---:|"]
    for repo in act:
        args = PARENTS[repo]
        epoch = act[repo]["parent_train_seconds"] / float(args[args.index("--epochs") + 1])
        for name, d in (*((n, o.get(repo)) for n, o in others.items()), ("Activation", act[repo])):
            if d is not None:
                per_module = d["wall_seconds"] / len(d["rows"])
                lines.append(f"| `{repo}` | {epoch:.0f} s | {name} | {per_module:.0f} s | {per_module / epoch:.2f} |")
    for repo, d in act.items():
        m = d["method_metrics"]
        votes = ", ".join(f"{k} {pct(v)}" for k, v in m["val_votes"].items())
        chosen = ", ".join(f"{r['class_name']} {m['thresholds'].get(str(i), '?')}" for i, r in enumerate(d["rows"]))
        lines += ["", f"**{repo}, activation**: per-class thresholds {chosen}"
                      f"; validation accuracy {pct(m['val_accuracy'])} (parent {pct(m['parent_val_accuracy'])}); "
                      f"share of validation images with no / one / several votes: {votes}; phases: "
                      + ", ".join(f"{k} {v:.0f} s" for k, v in d["seconds"].items()) + ".",
                  "", "One threshold for every class (the first step of the search), validation images:", "",
                  "| threshold | mean kept kernels | composed val. accuracy |", "|---:|---:|---:|"]
        for t in m["thresholds_tried"]:
            lines.append(f"| {t['threshold']} | {pct(t['retention'])} | {pct(t['val_accuracy'])} |")
    return "\n".join(lines)


def render_reuse(data: dict) -> str:
    lines = ["## Reuse: new problems from activation modules of two parents", "",
             f"Modules of `{VGG_05}` (1-channel 28 px `hubmod_vgg`, trained on classes 0-4) and `{RN_59}` "
             "(3-channel 32 px `resnet18`, classes 5-9), split with `--method activation` and composed by voting "
             "on raw test images of the problem's classes. From scratch: `examples/train_parent.py "
             f"{' '.join(SCRATCH_ARGS)} --classes ...` on the problem's classes (all their training images); "
             "its time is training only. Compose time assumes the modules are already on the hub; the one-off "
             "split cost of the two parents is "
             + ", ".join(f"`{r}` {d['wall_seconds']:.0f} s (composed {pct(d['composed_accuracy'])} vs parent "
                         f"{pct(d['parent_accuracy'])}, kept {pct(d['mean_kept_kernels'])})"
                         for r, d in data["splits"].items()) + ".", "",
             "| problem | classes | composed (vote) | from scratch | Δ | compose time | train time | "
             "composed, minmax | composed, platt |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, p in data["problems"].items():
        rules = p.get("other_rules", {})
        lines.append(f"| {name} | {', '.join(p['classes'])} | {pct(p['composed_accuracy'])} | "
                     f"{pct(p['scratch_accuracy'])} | {100 * (p['composed_accuracy'] - p['scratch_accuracy']):+.2f} pt"
                     f" | {p['compose_seconds']:.1f} s | {p['scratch_train_seconds']:.0f} s | "
                     + " | ".join(pct(rules[r]) if r in rules else "–" for r in ("minmax", "platt")) + " |")
    lines += ["", "Recall per class of the voting composition (where the errors go):", ""]
    for name, p in data["problems"].items():
        lines.append(f"* {name}: " + ", ".join(f"{c} {pct(r)}" for c, r in p["composed_recall"].items()))
    return "\n".join(lines)


def render_replace(data: dict) -> str:
    info = data["weak_info"]
    ws = data["weak_split"]
    lines = ["## Replace: a class of a weak model swapped for a strong parent's module", "",
             f"Weak model `{WEAK}`: `examples/train_parent.py {' '.join(WEAK_ARGS)}` (test accuracy "
             f"{pct(info['test_accuracy'])}), split with `--method activation` in {ws['wall_seconds']:.0f} s; its 10 "
             f"modules composed by voting reach {pct(data['modular_accuracy'])}. Each row replaces one class's "
             "module with the activation module of that class from a strong parent (`hubmod replace`); the other "
             "nine stay pinned. Other classes: accuracy on the test images of the nine other classes; all: on all "
             "10,000.", "",
             "| class | module from | precision | recall | F1 | other classes acc. | all |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        b, a = r["before"], r["after"]
        cells = " | ".join(f"{pct(b[k])} → {pct(a[k])}" for k in ("precision", "recall", "f1", "other_accuracy",
                                                                      "accuracy"))
        lines.append(f"| {r['class']} | `{r['module_from']}` | {cells} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["decompose", "reuse", "replace"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", action="store_true",
                    help="only re-render the sections from benchmarks/results (keeping their command and machine)")
    args = ap.parse_args()
    setup_home()
    header = f"Command: `{command()}`  \nMachine: {machine()}\n\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = {"decompose": (run_decompose, render_decompose), "reuse": (run_reuse, render_reuse),
             "replace": (run_replace, render_replace)}
    for name, (run, render) in parts.items():
        if args.only in (None, name):
            part_section(f"activation-{name}", RESULTS / f"activation_{name}.json", args.render, header,
                         lambda run=run: run(args.seed), render)


if __name__ == "__main__":
    main()
