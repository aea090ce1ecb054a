"""Benchmark: what a GradSplitter split of the resnet18 Fashion-MNIST parent costs, and what it buys.

    python benchmarks/split_cost.py              # every setting (about 45 minutes on 2 cores)
    python benchmarks/split_cost.py --render     # re-render BENCHMARKS.md from saved results
    python benchmarks/split_cost.py --distilled  # the settings with distillation (about two hours)
    python benchmarks/split_cost.py --distilled --only macs-deep-ho  # one of them
    python benchmarks/split_cost.py --labels     # distillation that also learns from the labels

Each setting (data budget, mask learning rate, most mask epochs) splits all ten classes of
``bench/resnet18-fmnist`` (trained by split_fmnist.py) without publishing, in a process of its own so
that its peak RSS is its own. Reported: composed accuracy on the 10,000 test images against the parent,
mean kept kernels, wall time of each phase, peak RSS, and the cost per module in training epochs
of the parent. The default settings' row comes from split_fmnist.py's full run. Settings whose name
ends in ``-ho`` split ``bench/resnet18-fmnist-3ep-ho``, trained (on first use) without 200 images per
class that its config.json names, so that the split validates on images the parent never saw.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import (
    RESULTS,
    command,
    ensure_parent,
    machine,
    module_sizes,
    pct,
    section_header,
    setup_home,
    write_section,
)
from split_fmnist import PARENTS

REPO = "bench/resnet18-fmnist"
# The same parent trained without 200 images per class, which its config.json names: splits of it
# validate on images it never saw (settings whose name ends in "-ho"). Three epochs, as REPO; the
# one-epoch bench/resnet18-fmnist-ho of the other benchmarks is a different parent, hence the name.
# Results saved before the rename record the parent they ran on ("held_out_repo").
HELD_OUT_REPO = "bench/resnet18-fmnist-3ep-ho"
HELD_OUT_ARGS = [*PARENTS[REPO], "--holdout-per-class", "200"]
SETTINGS = {
    "budget 100/class, 4 epochs": {"train_per_class": 100, "val_per_class": 100, "max_cycles": 4},
    "budget 100/class, mask lr 0.03, 3 epochs": {"train_per_class": 100, "val_per_class": 100, "mask_lr": 0.03,
                                                "max_cycles": 3},
    "budget 200/class, 4 epochs": {"train_per_class": 200, "val_per_class": 100, "max_cycles": 4},
    "budget 200/class, mask lr 0.03, 3 epochs": {"train_per_class": 200, "val_per_class": 100, "mask_lr": 0.03,
                                                "max_cycles": 3},
    "budget 200/class, mask lr 0.03, 3 epochs, tolerance 0.5": {"train_per_class": 200, "val_per_class": 100,
                                                               "mask_lr": 0.03, "max_cycles": 3, "tolerance": 0.5},
    "budget 300/class, mask lr 0.03, 3 epochs": {"train_per_class": 300, "val_per_class": 100, "mask_lr": 0.03,
                                                "max_cycles": 3},
    "budget 200/class, mask lr 0.05, 2 epochs": {"train_per_class": 200, "val_per_class": 100, "mask_lr": 0.05,
                                                "max_cycles": 2},
}
OUT = RESULTS / "split_cost.json"
# With distillation (``--distilled``): a short search that may go ``distill_slack`` points below the
# parent, then one distillation of the smallest masks. Each setting publishes its modules under
# ``{REPO}-{id}`` so that inference_fmnist.py can measure classifiers composed of them.
DISTILLED = {
    "fast": {"train_per_class": 100, "val_per_class": 100, "mask_lr": 0.05, "max_cycles": 2,
             "distill_epochs": 2, "distill_per_class": 500, "distill_tries": 1},
    "mid": {"train_per_class": 200, "val_per_class": 100, "mask_lr": 0.03, "max_cycles": 3,
            "distill_epochs": 2, "distill_per_class": 500, "distill_tries": 1},
    "fast3": {"train_per_class": 100, "val_per_class": 100, "mask_lr": 0.05, "max_cycles": 3,
              "distill_epochs": 2, "distill_per_class": 500, "distill_tries": 1, "distill_slack": 2.0,
              "distill_batch_size": 256, "distill_lr": 6e-4},
    "fast3-e3": {"train_per_class": 100, "val_per_class": 100, "mask_lr": 0.05, "max_cycles": 3,
                 "distill_epochs": 3, "distill_per_class": 500, "distill_tries": 1, "distill_slack": 2.0,
                 "distill_batch_size": 256, "distill_lr": 1e-3},
    "fast3-b128": {"train_per_class": 100, "val_per_class": 100, "mask_lr": 0.05, "max_cycles": 3,
                   "distill_epochs": 2, "distill_per_class": 500, "distill_tries": 1, "distill_slack": 2.0,
                   "distill_batch_size": 128, "distill_lr": 5e-4},
    "macs": {"train_per_class": 100, "val_per_class": 100, "mask_lr": 0.05, "max_cycles": 3, "penalty": "macs",
             "distill_epochs": 2, "distill_per_class": 500, "distill_tries": 1, "distill_slack": 2.0,
             "distill_batch_size": 128, "distill_lr": 5e-4},
    "macs-small": {"train_per_class": 200, "val_per_class": 100, "mask_lr": 0.03, "max_cycles": 4,
                   "penalty": "macs", "distill_epochs": 3, "distill_per_class": 1000, "distill_tries": 2,
                   "distill_slack": 4.0, "distill_batch_size": 128, "distill_lr": 5e-4},
    "macs-tol1.5": {"train_per_class": 200, "val_per_class": 100, "mask_lr": 0.03, "max_cycles": 4,
                    "penalty": "macs", "distill_epochs": 3, "distill_per_class": 1000, "distill_tries": 2,
                    "distill_slack": 4.0, "distill_batch_size": 128, "distill_lr": 5e-4, "tolerance": 1.5},
}
# The same settings on the parent that names held-out validation images (HELD_OUT_REPO).
DISTILLED.update({f"{name}-ho": dict(DISTILLED[name]) for name in ("fast", "fast3-b128", "macs", "macs-small")})
# Small modules for fast composed inference: the 10 %-MAC masks, distilled twice as long.
DISTILLED["macs-deep-ho"] = {"train_per_class": 200, "val_per_class": 100, "mask_lr": 0.03, "max_cycles": 3,
                             "penalty": "macs", "distill_epochs": 6, "distill_per_class": 1000, "distill_tries": 1,
                             "distill_slack": 4.0, "distill_batch_size": 128, "distill_lr": 1e-3}
DISTILLED["macs-quick-ho"] = {**DISTILLED["macs-deep-ho"], "distill_epochs": 4, "distill_per_class": 500}
# Kernel penalty, the 26 %-kernel masks of a three-epoch search, distilled as long as macs-deep-ho's.
DISTILLED["kernels-deep-ho"] = {**DISTILLED["fast3-b128"], "distill_epochs": 6, "distill_per_class": 1000,
                                "distill_slack": 4.0, "distill_lr": 1e-3}
OUT_DISTILLED = RESULTS / "split_cost_distilled.json"
# Distillation that also learns from the labels (``--labels``), all on the held-out parent: the
# kernels-deep-ho masks (the same search), distilled a third as long with half the loss on the labels.
LABELED = {
    "labels-ho": {**DISTILLED["kernels-deep-ho"], "distill_epochs": 2, "distill_label_weight": 0.5,
                  "distill_temperature": 4.0},
}
# The same, deciding on all 2,000 held-out images instead of 1,000 (less of the decision left to the seed).
LABELED["labels-v200-ho"] = {**LABELED["labels-ho"], "val_per_class": 200}
# At temperature 2 and three epochs instead of two (distillation being faster since channels-last and threads).
LABELED["labels-t2e3-v200-ho"] = {**LABELED["labels-v200-ho"], "distill_temperature": 2.0, "distill_epochs": 3}
# The same at batch 256: a distillation step costs less per image at a larger batch on a CPU.
LABELED["labels-b256-ho"] = {**LABELED["labels-t2e3-v200-ho"], "distill_batch_size": 256}
# The same with the last masks topped up to 30 % of the kernels (``size_budget``): the capacity the target allows.
LABELED["labels-k30-ho"] = {**LABELED["labels-b256-ho"], "size_budget": 0.3}
OUT_LABELED = RESULTS / "split_cost_labels.json"


def parent_of(setting: str) -> str:
    return HELD_OUT_REPO if setting.endswith("-ho") else REPO


def run_one(options: dict, repo_prefix: str | None = None, parent: str = REPO) -> dict:
    """One split in this process (the child side); published only when ``repo_prefix`` is given.

    Options not given default to no distillation, so the search-only rows measure the search.
    """
    import hubmod

    options = {"distill_epochs": 0, **options}
    t = time.perf_counter()
    report = hubmod.split(parent, "fashion-mnist", hub="local", seed=0, options=options,
                          publish=repo_prefix is not None, repo_prefix=repo_prefix, progress=False)
    d = report.to_dict()
    macs, params = module_sizes(d)
    m = d["method_metrics"]
    return {"options": options, "wall_seconds": time.perf_counter() - t, "seconds": d["seconds"],
            "parent_accuracy": d["parent_accuracy"], "composed_accuracy": d["composed_accuracy"],
            "mean_kept_kernels": d["mean_kept_kernels"], "chosen_cycle": m["chosen_cycle"],
            "cycles_run": m["cycles_run"], "distilled": m.get("distilled", False), "history": m["history"],
            "distill_seconds": m.get("distill_seconds", 0.0),
            "parent_val_accuracy": m["parent_val_accuracy"], "module_macs": macs, "module_params": params,
            "repo_prefix": repo_prefix, "parent": parent,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run_child(options: dict, prefix: str | None = None, parent: str = REPO) -> dict:
    """One setting in a process of its own, so that its peak RSS is its own."""
    cmd = [sys.executable, __file__, "--child", json.dumps(options), "--parent", parent]
    cmd += ["--prefix", prefix] if prefix else []
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{options}: composed {r['composed_accuracy']:.4f} kept {r['mean_kept_kernels']:.3f} "
          f"in {r['wall_seconds']:.0f}s", flush=True)
    return r


def render(data: dict) -> str:
    lines = [
        "GradSplitter without distillation (`distill_epochs=0`, the paper's frozen weights) on "
        "`bench/resnet18-fmnist` (all 10 classes), test split (10,000 images). "
        "Epochs per module: split wall time / 10 modules / the parent's wall time per training epoch "
        f"({data['parent_epoch_seconds']:.0f} s). Targets of issue 5: ≤ 300 s, within 0.5 pt of the parent, "
        "≤ 30 % kept kernels.", "",
        "| setting | composed | Δ vs parent | mean kept kernels | mask epochs (chosen / run) | search | evaluate "
        "| total | epochs per module | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in data["rows"].items():
        s = r["seconds"]
        delta = 100 * (r["composed_accuracy"] - r["parent_accuracy"])
        rss = "not measured" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.0f} MB"
        lines.append(
            f"| {name} | {pct(r['composed_accuracy'])} | {delta:+.2f} pt "
            f"| {pct(r['mean_kept_kernels'])} | {r['chosen_cycle']} / {r['cycles_run']} | {s['search']:.0f} s "
            f"| {s['evaluate']:.0f} s | {r['wall_seconds']:.0f} s "
            f"| {r['wall_seconds'] / 10 / data['parent_epoch_seconds']:.2f} "
            f"| {rss} |")
    return "\n".join(lines)


def render_distilled(data: dict, settings: dict[str, dict] | None = None) -> str:
    """The section of the distilled settings; those of ``settings`` with no saved row are named with the
    command that measures them."""
    lines = [
        f"GradSplitter with distillation on `{REPO}` (all 10 classes; settings ending in `-ho`: on "
        f"`{data['held_out_repo']}`, the same training without 200 images per class, which the split validates "
        "on), "
        "test split (10,000 images), with the "
        "options listed (the rest at their defaults, e.g. `tolerance=1.0`): the search may go `distill_slack` "
        "points below the parent on validation, then the parent is distilled into the cheapest such masks; "
        "if the distilled composition is not back within `tolerance` on validation after `distill_tries` tries, "
        "the undistilled choice stands. Epochs per module as above "
        f"({data['parent_epoch_seconds']:.0f} s per parent epoch). Modules published as `<parent>-<setting>`.", "",
        "| setting | options | parent | composed | Δ vs parent | distilled | mean kept kernels | module MACs / parent "
        "| mask search | distillation | evaluate | total | epochs per module | peak RSS |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in data["rows"].items():
        s = r["seconds"]
        opts = " ".join(f"{k}={v}" for k, v in r["options"].items())
        delta = 100 * (r["composed_accuracy"] - r["parent_accuracy"])
        lines.append(
            f"| {name} | `{opts}` | {pct(r['parent_accuracy'])} | {pct(r['composed_accuracy'])} | {delta:+.2f} pt | "
            f"{'yes' if r['distilled'] else 'no'} | {pct(r['mean_kept_kernels'])} | {pct(r['module_macs'])} "
            f"| {s['search'] - r['distill_seconds']:.0f} s | {r['distill_seconds']:.0f} s | {s['evaluate']:.0f} s "
            f"| {r['wall_seconds']:.0f} s | {r['wall_seconds'] / 10 / data['parent_epoch_seconds']:.2f} "
            f"| {r['peak_rss_mb']:.0f} MB |")
    lines.append("")
    for name, r in data["rows"].items():
        macs = r["options"].get("penalty") == "macs"
        hist = ", ".join(f"{h['cycle']}{' topped up' if h.get('topped_up') else ''}: "
                         f"{pct(h['val_accuracy'])} / {pct(h['retention'])}"
                         + (f" / {pct(h['cost'])}" if macs else "")
                         + (f" (distilled: {pct(h['distilled_val_accuracy'])})" if "distilled_val_accuracy" in h
                            else "") for h in r["history"])
        what = "mean kept kernels / MAC share" if macs else "mean kept kernels"
        lines.append(f"- {name}: validation accuracy / {what} after each mask epoch: {hist} "
                     f"(parent on the same images: {pct(r['parent_val_accuracy'])}).")
    missing = [name for name in settings or {} if name not in data["rows"]]
    if missing:
        flag = "--labels" if settings is LABELED else "--distilled"
        lines += ["", "No saved row yet for " + ", ".join(f"`{n}`" for n in missing)
                  + " (figures from before results were saved are in BENCHMARKS.md's git history; the docs' "
                  "history page quotes some)"
                  + f"; `python benchmarks/split_cost.py {flag} --only NAME` measures one, keeping the rows above."]
    return "\n".join(lines)


def _run_settings(settings: dict[str, dict], path: Path, data: dict, only: str | None,
                  run: Callable[[str, dict], dict]) -> None:
    """Run the settings ``only`` names (all without it) into ``data["rows"]``; with ``only``, the other
    settings keep their saved rows. Results are saved after each run, with the saved rows of settings
    not run yet, so that a crash loses nothing."""
    previous = json.loads(path.read_text()) if only and path.exists() else {}
    # rows measured on another held-out parent (before it was renamed) are not mixed with new ones
    saved = previous.get("rows", {}) if previous.get("held_out_repo") == data.get("held_out_repo") else {}
    chosen = [only] if only in settings else [n for n in settings if not only or only in n]
    for name, options in settings.items():
        if name not in chosen:
            if name in saved:
                data["rows"][name] = saved[name]
            continue
        data["rows"][name] = run(name, options)
        RESULTS.mkdir(parents=True, exist_ok=True)
        pending = {n: saved[n] for n in settings if n in saved and n not in data["rows"]}  # in settings order
        path.write_text(json.dumps({**data, "rows": {**data["rows"], **pending}}, indent=1))


def _epochs(parent_args: list[str]) -> float:
    """The training epochs a parent's train_parent.py arguments ask for."""
    return float(parent_args[parent_args.index("--epochs") + 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--render", action="store_true", help="only re-render BENCHMARKS.md from saved results")
    ap.add_argument("--only", help="run only the setting of this name, or else those whose name contains it; "
                                   "keep the other saved rows")
    ap.add_argument("--distilled", action="store_true",
                    help="the settings with distillation (section split-cost-distilled), not the search-only ones")
    ap.add_argument("--labels", action="store_true",
                    help="the settings distilling with labels (section split-cost-labels; held-out parent only)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    ap.add_argument("--parent", default=REPO, help=argparse.SUPPRESS)
    args = ap.parse_args()
    setup_home()
    if args.child:
        print(json.dumps(run_one(json.loads(args.child), args.prefix, args.parent)), flush=True)
        return
    section, out_file, settings = (("split-cost-distilled", OUT_DISTILLED, DISTILLED) if args.distilled
                                   else ("split-cost-labels", OUT_LABELED, LABELED) if args.labels
                                   else ("split-cost", OUT, SETTINGS))

    def draw(data: dict) -> str:
        return render(data) if settings is SETTINGS else render_distilled(data, settings)

    if args.render:
        data = json.loads(out_file.read_text())
        write_section(section, (section_header(section) or "") + draw(data))
        return
    header = f"Command: `{command()}`  \nMachine: {machine()}\n\n"
    if args.distilled or args.labels:
        # Distilled settings run on the parent their name says; --labels ones all on the held-out parent,
        # whose training time then sets the epoch cost.
        repo, repo_args = (HELD_OUT_REPO, HELD_OUT_ARGS) if args.labels else (REPO, PARENTS[REPO])
        info = ensure_parent(repo, repo_args)
        data = {"parent_epoch_seconds": info["train_seconds"] / _epochs(repo_args), "held_out_repo": HELD_OUT_REPO,
                "rows": {}}

        def run_distilled(name: str, options: dict) -> dict:
            if parent_of(name) != REPO:
                ensure_parent(HELD_OUT_REPO, HELD_OUT_ARGS)
            return _run_child(options, f"{parent_of(name)}-{name}", parent_of(name))

        _run_settings(settings, out_file, data, args.only, run_distilled)
        write_section(section, header + draw(data))
        return
    info = ensure_parent(REPO, PARENTS[REPO])
    data = {"parent_epoch_seconds": info["train_seconds"] / _epochs(PARENTS[REPO]), "rows": {}}
    full = RESULTS / "split_fmnist_full.json"
    if full.exists():
        d = json.loads(full.read_text())[REPO]
        from hubmod.splitters.gradsplitter.config import GradSplitterConfig

        c = GradSplitterConfig()
        label = (f"defaults without distillation ({c.train_per_class}/class, validation {c.val_per_class}/class, "
                 f"mask lr {c.mask_lr}, {c.max_cycles} epochs; split_fmnist.py)")
        data["rows"][label] = {
            "composed_accuracy": d["composed_accuracy"], "parent_accuracy": d["parent_accuracy"],
            "mean_kept_kernels": d["mean_kept_kernels"], "seconds": d["seconds"], "wall_seconds": d["wall_seconds"],
            "chosen_cycle": d["method_metrics"]["chosen_cycle"], "cycles_run": d["method_metrics"]["cycles_run"],
            "peak_rss_mb": None}
    _run_settings(SETTINGS, OUT, data, args.only, lambda _name, options: _run_child(options))
    write_section("split-cost", header + render(data))


if __name__ == "__main__":
    main()
