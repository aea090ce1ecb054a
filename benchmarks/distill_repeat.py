"""Benchmark: distillation alone, on the masks a real split hands it, repeated over seeds.

    python benchmarks/distill_repeat.py            # labels-ho's distillation, about 25 minutes on 2 cores
    python benchmarks/distill_repeat.py --setting labels-b256-ho   # another setting of split_cost.LABELED
    python benchmarks/distill_repeat.py --setting labels-k30-ho --label-weights 0.5   # one label weight

Runs the search of a split_cost.py setting (``labels-ho`` by default) on ``bench/resnet18-fmnist-3ep-ho``
once, stops it where GradSplitter would distil (the masks of its third mask epoch, about 26 % of the
kernels), and then distils copies of those same modules several times with that setting's
distillation options: once per seed and per label weight, each measured as composed accuracy on the
10,000 test images. One split run decides on its validation images after one distillation; this
shows how far apart two distillations of the same masks land, and whether learning from the labels
(``distill_label_weight``) moves that. It also times distillation steps with the students run one
at a time against several on threads (``workers``), channels-last and in NCHW.
Results go to benchmarks/results/distill_repeat.json (labels-ho) or distill_repeat_<setting>.json,
and to BENCHMARKS.md (section distill-repeat, or distill-repeat-<setting>); rows of kinds a run does
not measure again (label weight, last head fit, augmented epochs) are kept from the saved results,
and ``--no-refit-heads`` / ``--augment-epochs`` at the setting's epochs (3 for labels-b256-ho) distil
as distill() did before the last head fit and before it trained on the plain images.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import resource
import statistics
import time

from common import (
    RESULTS,
    command,
    ensure_parent,
    machine,
    median_seconds,
    pct,
    section_header,
    setup_home,
    write_section,
)
from split_cost import HELD_OUT_ARGS, HELD_OUT_REPO, LABELED

DEFAULT_SETTING = "labels-ho"
SEEDS = (0, 1, 2)
LABEL_WEIGHTS = (0.0, 0.5)
TIMED_STEPS = 20


def search_options(setting: str) -> dict:
    return {**LABELED[setting], "distill_tries": 1}


def out_path(setting: str):
    """Where a setting's results go (labels-ho's keep the name they had before there was a choice)."""
    return RESULTS / ("distill_repeat.json" if setting == DEFAULT_SETTING else f"distill_repeat_{setting}.json")


def section(setting: str) -> str:
    return "distill-repeat" if setting == DEFAULT_SETTING else f"distill-repeat-{setting}"


class _Handed(Exception):
    """Raised by the stand-in for distill() once it has what the split hands over."""


def capture(options: dict) -> dict:
    """Run the search; keep the arguments GradSplitter passes to distill() instead of distilling."""
    import hubmod
    import hubmod.splitters.gradsplitter.search as search

    got: dict = {}

    def stand_in(parent, students, targets, x, settings, generator, par, progress=False, labels=None):
        got.update(parent=parent, students=students, targets=targets, x=x, labels=labels, settings=settings)
        raise _Handed

    real = search.distill
    search.distill = stand_in
    try:
        hubmod.split(HELD_OUT_REPO, "fashion-mnist", hub="local", seed=0, options=options, publish=False,
                     progress=False)
    except _Handed:
        pass
    finally:
        search.distill = real
    if not got:
        raise SystemExit("the search did not reach distillation; nothing to measure")
    return got


def test_images(parent_repo: str):
    from hubmod.data import load_images
    from hubmod.hub import get_hub, open_ref
    from hubmod.parents import parent_from_snapshot
    from hubmod.preprocess import preprocess
    from hubmod.refs import parse_source

    parent = parent_from_snapshot(open_ref(parse_source(parent_repo), get_hub("local")))
    test = load_images("fashion-mnist", "test")
    return preprocess(test.images, parent.data_config), test.labels


def composed_accuracy(got: dict, students, x, y) -> float:
    import torch

    from hubmod.batching import in_chunks
    from hubmod.distillation import composite

    with torch.no_grad():
        raw = torch.stack([in_chunks(s, x) for s in students])
        return float((composite(raw, in_chunks(got["parent"], x), got["targets"]).argmax(1) == y).float().mean())


def time_steps(got: dict, channels_last: bool = True) -> float:
    """Seconds per distillation step of all students on one batch (label weight 0.5), set up as distill() does."""
    from contextlib import nullcontext

    import torch

    from hubmod.distillation import _channels_last, _loss, _students_step, _training
    from hubmod.parallel import DataParallel

    students = copy.deepcopy(got["students"])
    settings = dataclasses.replace(got["settings"], label_weight=0.5)
    xb, yb = got["x"][: settings.batch_size], got["labels"][: settings.batch_size]
    with torch.no_grad():
        soft = got["parent"](xb)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    with _channels_last(students) if channels_last else nullcontext(), _training(students) as params:
        opt = torch.optim.SGD(params, lr=0.0)  # the work of a step, without changing the students
        xs = xb.contiguous(memory_format=layout)

        def step() -> None:
            _students_step(students, xs, lambda raw: _loss(raw, soft, got["targets"], yb, settings, len(xb)),
                           opt, params, DataParallel())

        return median_seconds(step, TIMED_STEPS)


def run(setting: str, smoke: bool = False, label_weights: tuple[float, ...] = LABEL_WEIGHTS,
        refit_heads: bool = True, augment_epochs: int = 0) -> dict:
    import torch

    from hubmod.distillation import distill
    from hubmod.parallel import DataParallel

    setup_home()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    ensure_parent(HELD_OUT_REPO, HELD_OUT_ARGS)
    t = time.perf_counter()
    got = capture(search_options(setting))
    search_seconds = time.perf_counter() - t
    if smoke:  # the whole path in minutes, on a sliver of the data; numbers meaningless
        got["x"], got["labels"] = got["x"][:256], got["labels"][:256]
    x_test, y_test = test_images(HELD_OUT_REPO)
    with torch.no_grad():
        parent_acc = float((got["parent"](x_test).argmax(1) == y_test).float().mean())
    out = {"setting": setting, "parent_repo": HELD_OUT_REPO, "search_seconds": search_seconds,
           "parent_accuracy": parent_acc,
           "options": search_options(setting),
           "undistilled_accuracy": composed_accuracy(got, got["students"], x_test, y_test),
           "step_seconds": {"1": time_steps(got)}, "step_seconds_nchw": {"1": time_steps(got, channels_last=False)},
           "runs": []}
    for weight in label_weights[-1:] if smoke else label_weights:
        for seed in SEEDS[:1] if smoke else SEEDS:
            students = copy.deepcopy(got["students"])
            settings = dataclasses.replace(got["settings"], label_weight=weight, refit_heads=refit_heads,
                                           augment_epochs=augment_epochs)
            torch.manual_seed(seed)
            t = time.perf_counter()
            distill(got["parent"], students, got["targets"], got["x"], settings, torch.Generator().manual_seed(seed),
                    DataParallel(), labels=got["labels"])
            seconds = time.perf_counter() - t
            acc = composed_accuracy(got, students, x_test, y_test)
            out["runs"].append({"label_weight": weight, "refit_heads": refit_heads, "augment_epochs": augment_epochs,
                                "seed": seed, "accuracy": acc, "seconds": seconds, "date": started})
            print(f"label weight {weight} seed {seed}: {acc:.4f} in {seconds:.0f}s", flush=True)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["settings"] = dataclasses.asdict(got["settings"])
    return out


def _step_lines(data: dict, batch_size: int) -> list[str]:
    """The step timings in the layout distill() trains in and in NCHW (and, in results recorded before
    distill() stopped running students on threads, two at a time on threads)."""
    cl = data["step_seconds"]
    threaded = "2" in cl
    lines = [f"One distillation step of the ten students (batch {batch_size}, median of {TIMED_STEPS}):", "",
             "| layout | one student at a time | two at a time on threads | threads save |" if threaded
             else "| layout | one student at a time |", "|---|---:|---:|---:|" if threaded else "|---|---:|"]
    rows = [("channels-last (what distill() trains in)", cl)]
    if "step_seconds_nchw" in data:  # results before distill() trained channels-last have one layout only
        rows.append(("NCHW", data["step_seconds_nchw"]))
    else:
        rows[0] = ("NCHW (before distill() trained channels-last)", cl)
    for name, t in rows:
        one = t["1"]
        if threaded:
            two = t["2"]
            lines.append(f"| {name} | {1000 * one:.0f} ms | {1000 * two:.0f} ms | {100 * (1 - two / one):.0f} % |")
        else:
            lines.append(f"| {name} | {1000 * one:.0f} ms |")
    if "step_seconds_nchw" in data:
        key = "2" if threaded else "1"
        nchw = data["step_seconds_nchw"][key]
        lines += ["", f"Channels-last takes {100 * (1 - cl[key] / nchw):.0f} % less time per step than NCHW."]
    if threaded:
        lines += ["", "These timings were recorded when distill() ran the students on threads; it no longer does: "
                  "concurrent backward passes corrupted the heap in real splits."]
    return lines


def _kind(run: dict, epochs: int) -> tuple[float, bool, int]:
    """A run's row: its label weight, whether distill() refit the heads last, and how many of its ``epochs``
    were on augmented images (earlier runs recorded how many last epochs were plain, or, from before distill()
    could do either, neither: all augmented)."""
    augmented = run.get("augment_epochs", epochs - run.get("plain_epochs", 0))
    return run["label_weight"], run.get("refit_heads", False), augmented


def _merged(data: dict, previous: dict | None) -> dict:
    """``data`` with the previous results' runs of the kinds it did not measure again, so a run with one
    option changed keeps the rows it is compared with."""
    if (previous is None or previous.get("options") != data["options"]
            or previous.get("parent_repo") != data["parent_repo"]):
        return data
    epochs = data["settings"]["epochs"]
    measured = {_kind(r, epochs) for r in data["runs"]}
    kept = [r for r in previous["runs"] if _kind(r, epochs) not in measured]
    return {**data, "runs": kept + data["runs"]}


def render(data: dict) -> str:
    s = data["settings"]
    setting = data.get("setting", DEFAULT_SETTING)  # results from before there was a choice: labels-ho's
    search = "`kernels-deep-ho`'s search" if setting == DEFAULT_SETTING else f"`{setting}`'s search"
    dated = any(r.get("date") for r in data["runs"])  # runs saved before dates were recorded have none
    lines = [
        f"## Distilling the same masks again ({setting}): spread over seeds, label weight, threads", "",
        f"The masks of {search} on `{data['parent_repo']}` (parent {pct(data['parent_accuracy'])} on "
        f"the 10,000 test images; these masks undistilled {pct(data['undistilled_accuracy'])}; search "
        f"{data['search_seconds']:.0f} s), distilled again and again from the same start: {s['epochs']} epochs on "
        f"{len(SEEDS)} seeds per label weight, `distill_lr={s['lr']}`, `distill_temperature={s['temperature']}`, "
        f"batch {s['batch_size']}, {search_options(setting)['distill_per_class']} images per class. Composed "
        "accuracy on the test images:", "",
        "| label weight | last head fit | augmented epochs | seeds | accuracy per seed | mean | Δ mean vs parent "
        "| distillation time (mean) |" + (" measured |" if dated else ""),
        "|---:|---|---:|---|---|---:|---:|---:|" + ("---|" if dated else ""),
    ]
    kinds = {_kind(r, s["epochs"]) for r in data["runs"]}
    for key in sorted(kinds, key=lambda k: (k[0], k[1], -k[2])):  # most augmented first: the order they came in
        runs = [r for r in data["runs"] if _kind(r, s["epochs"]) == key]
        accs = [r["accuracy"] for r in runs]
        mean = statistics.mean(accs)
        lines.append(f"| {key[0]} | {'yes' if key[1] else 'no'} | {key[2]} | {', '.join(str(r['seed']) for r in runs)} "
                     f"| {', '.join(pct(a) for a in accs)} | {pct(mean)} "
                     f"| {100 * (mean - data['parent_accuracy']):+.2f} pt "
                     f"| {statistics.mean(r['seconds'] for r in runs):.0f} s |"
                     + (f" {runs[0].get('date', '')} |" if dated else ""))
    if len({r.get("date", "")[:13] for r in data["runs"]}) > 1:
        lines += ["", "Rows measured in different runs: their times are not comparable (this machine's speed "
                  "varies between sessions by 15 % or more); the step timings below are the latest run's."]
    lines += ["", *_step_lines(data, s["batch_size"]), "", f"Peak RSS {data['peak_rss_mb']:.0f} MB."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", default=DEFAULT_SETTING, choices=sorted(LABELED),
                    help="the split_cost.py setting whose search and distillation options to use")
    ap.add_argument("--label-weights", default=",".join(map(str, LABEL_WEIGHTS)),
                    help="comma-separated distill_label_weight values to distil with, each on every seed")
    ap.add_argument("--no-refit-heads", action="store_true",
                    help="distil without the last head fit on the final features (to compare with it)")
    ap.add_argument("--augment-epochs", type=int, default=0,
                    help="first distillation epochs on augmented images (the setting's epochs: all of them, "
                         "to compare with it)")
    ap.add_argument("--smoke", action="store_true", help="check the script end to end on 256 images; writes nothing")
    ap.add_argument("--render", action="store_true", help="only re-render BENCHMARKS.md from the saved results")
    args = ap.parse_args()
    out, name = out_path(args.setting), section(args.setting)
    if args.render:
        write_section(name, (section_header(name) or "") + render(json.loads(out.read_text())))
        return
    header = f"Command: `{command()}`  \nMachine: {machine()}\n\n"
    data = run(args.setting, args.smoke, tuple(float(w) for w in args.label_weights.split(",")),
               refit_heads=not args.no_refit_heads, augment_epochs=args.augment_epochs)
    if args.smoke:
        print(render(json.loads(json.dumps(data))))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = _merged(data, json.loads(out.read_text()) if out.exists() else None)
    out.write_text(json.dumps(data, indent=1))
    data = json.loads(out.read_text())  # keys as saved (JSON object keys are strings)
    write_section(name, header + render(data))


if __name__ == "__main__":
    main()
