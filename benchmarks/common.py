"""Shared helpers for the benchmark scripts: machine description, parents, and BENCHMARKS.md sections."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


def setup_home() -> Path:
    """Benchmarks use their own embedded hub so they never touch the user's."""
    home = Path(os.environ.setdefault("HUBMOD_HOME", str(ROOT / "benchmarks" / ".work" / "hubmod-home")))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home.mkdir(parents=True, exist_ok=True)
    return home


def machine() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.+)", text).group(1).strip()
    except (OSError, AttributeError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}; "
            f"load average {load:.2f} at start; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def command() -> str:
    script = Path(sys.argv[0]).resolve()
    script_text = str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else sys.argv[0]
    return " ".join(["python", script_text, *[a if " " not in a else repr(a) for a in sys.argv[1:]]])


def ensure_parent(repo: str, args: list[str]) -> dict:
    """Train and publish a parent with examples/train_parent.py unless the hub already has it."""
    from hubmod.hub import LocalHub

    hub = LocalHub()
    cache = RESULTS / "parents.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if hub.repo_exists(repo) and repo in known:
        if known[repo].get("args") != args:
            raise SystemExit(f"{repo} in the benchmark hub was trained with {' '.join(known[repo].get('args', []))}, "
                             f"not {' '.join(args)}: give one of the two parents another name")
        return known[repo]
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "train_parent.py"), "--repo", repo, *args],
                         check=True, capture_output=True, text=True, env=os.environ.copy())
    info = json.loads(out.stdout.strip().splitlines()[-1])
    info["args"] = args
    known[repo] = info
    RESULTS.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(known, indent=1))
    return info


def without_labels() -> list[dict]:
    """Each pair's zero-shot and `--adapt` results as saved, each tagged with the BENCHMARKS.md section it
    comes from: the vgg+resnet18 pair's from zero_shot.json and adapt.json, the second pair's from
    second_pair.json, the longer-trained vgg+resnet18 pair's from longer_parents.json (with weak_modules.json's
    `auto` row beside its rules). Entries: {"pair", "zero_shot", "adapt" (None if not measured)}."""
    def load(name: str) -> dict | None:
        path = RESULTS / name
        return json.loads(path.read_text()) if path.exists() else None

    weak = weak_modules_zero_shot()
    out = []
    if zero := load("zero_shot.json"):
        adapt = load("adapt.json")
        out.append({"pair": zero["pair"], "zero_shot": _with_weak_modules({**zero, "section": "zero-shot"}, weak),
                    "adapt": {**adapt, "section": "adapt"} if adapt else None})
    for name, section in (("second_pair.json", "second-pair"), ("longer_parents.json", "longer-parents")):
        if other := load(name):
            zero = _with_weak_modules({**other["zero_shot"], "pair": other["pair"], "section": section}, weak)
            out.append({"pair": other["pair"], "zero_shot": zero, "adapt": {**other["adapt"], "section": section}})
    return out


def weak_module_means(weak: dict, setting: str) -> dict:
    """One setting of weak_modules.json (``"1"``, ``"0.05"``) as means over its trainings: {problem: accuracy,
    ..., "mean_kept_kernels": share}; a problem not measured on every training is left out."""
    runs = [r[setting] for r in weak["trainings"].values()]
    problems = set.intersection(*(set(r["problems"]) for r in runs))
    return {**{p: sum(r["problems"][p] for r in runs) / len(runs) for p in runs[0]["problems"] if p in problems},
            "mean_kept_kernels": sum(r["mean_kept_kernels"] for r in runs) / len(runs)}


WEAK_MODULES_RULE = "`auto`, --negatives splits as made now (max_auc_loss=0.05, weak-modules section)"


def _with_weak_modules(zero: dict, weak: dict) -> dict:
    """A zero-shot result with one more rule in each problem: `auto` on splits that give weak modules' classes
    the whole parent, as a mean over the trainings, when weak_modules.json (``weak``: weak_modules_zero_shot())
    measured the result's pair on the same trainings; else the result as it is."""
    entry = weak.get(zero["pair"])
    if entry is None or set(entry["trainings"]) != set(zero["trainings"]):
        return zero
    extra = entry["problems"]
    return {**zero, "problems": {problem: {**p, "accuracy": {**p["accuracy"],
                                                             **extra.get(problem, {}).get("accuracy", {})}}
                                 for problem, p in zero["problems"].items()}}


def weak_modules_zero_shot() -> dict[str, dict]:
    """Each pair weak_modules.json measured without labels -> its `auto` rule (``max_auc_loss=0.05``) shaped
    as a zero-shot result: {"section", "trainings", "problems": {problem: {"accuracy": {rule: acc}}}}, to set
    beside a zero-shot section's rules or stand for them; {} when there is no weak_modules.json."""
    path = RESULTS / "weak_modules.json"
    pairs = json.loads(path.read_text())["pairs"] if path.exists() else {}
    out = {}
    for pair, entry in pairs.items():
        means = weak_module_means(entry, "0.05")
        out[pair] = {"section": "weak-modules", "trainings": entry["trainings"],
                     "problems": {p: {"accuracy": {WEAK_MODULES_RULE: acc}} for p, acc in means.items()
                                  if p != "mean_kept_kernels"}}
    return out


WIDTH = 110  # BENCHMARKS.md's prose is wrapped at this width; tables, headings and markers are not


def wrap_prose(text: str, width: int = WIDTH) -> str:
    """``text`` with every prose line longer than ``width`` wrapped (a list item's continuation indented,
    a Markdown hard break kept at the end, code spans never broken); other lines are left as they are,
    so wrapping twice changes nothing."""
    import textwrap

    out, fenced = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or len(line) <= width or line.lstrip().startswith(("|", "#", "<!--")):
            out.append(line)
            continue
        hard_break = "  " if line.endswith("  ") else ""
        item = re.match(r"\s*(?:[-*]|\d+\.)\s+", line)
        indent = " " * (item.end() if item else len(line) - len(line.lstrip()))
        # spaces inside `code spans` become unbreakable for the wrap, then spaces again
        glued = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), line.rstrip())
        wrapped = textwrap.wrap(glued, width, subsequent_indent=indent, break_long_words=False,
                                break_on_hyphens=False, drop_whitespace=True)
        out.extend(w.replace("\0", " ") for w in wrapped[:-1])
        out.append(wrapped[-1].replace("\0", " ") + hard_break)
    return "\n".join(out)


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section between <!-- name --> markers in BENCHMARKS.md (or ``path``)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# hubmod benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(wrap_prose(text))


def section_header(name: str) -> str | None:
    """The command / machine lines of a section already in BENCHMARKS.md (to re-render it from saved results)."""
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else ""
    start = f"<!-- {name}:start -->\n"
    if start not in text:
        return None
    lines = text[text.index(start) + len(start):].splitlines()
    first = next((i for i, line in enumerate(lines[:6]) if line.strip() and not line.startswith("#")), None)
    if first is None or not lines[first].startswith("Command:"):  # (past a heading, if the section opens with one)
        return None
    end = next((i for i in range(first, len(lines)) if not lines[i].strip()), len(lines))
    paragraph = lines[first:end]  # the Command and Machine lines, however they are wrapped
    if not any(line.startswith("Machine:") for line in paragraph[1:]):
        return None
    return "\n".join(paragraph) + "\n\n"


def run_header(section: str, rendering: bool) -> str:
    """A section's Command / Machine lines: kept from BENCHMARKS.md when saved results are only
    re-rendered (``--render``), else this run's."""
    if rendering:
        return section_header(section) or f"Command: `{command()}`\nMachine: (not recorded)\n"
    return f"Command: `{command()}`\nMachine: {machine()}\n"


def saved_or_measured(out: Path, rendering: bool, measure) -> dict:
    """The saved results in ``out`` when re-rendering, else ``measure()``'s, saved to ``out`` first."""
    if rendering:
        return json.loads(out.read_text())
    result = measure()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


def part_section(section: str, saved: Path, rendering: bool, header: str, measure, render) -> None:
    """One part of a several-section benchmark: re-render ``section`` from ``saved`` (when it exists) with
    the section's own Command / Machine lines, or ``measure()``, save the result, and render it under
    ``header``."""
    if rendering:
        if saved.exists():
            write_section(section, (section_header(section) or header) + render(json.loads(saved.read_text())))
        return
    data = json.loads(json.dumps(measure()))  # JSON keys, as the saved results have them
    saved.write_text(json.dumps(data, indent=1))
    write_section(section, header + render(data))


def section_main(doc: str, section: str, title: str, out: Path, measure, render, prepare=None) -> None:
    """A one-section benchmark's command line: measure (after ``prepare()``) and save to ``out``, or
    ``--render`` the section again from the saved JSON; either way BENCHMARKS.md gets the section."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--render", action="store_true", help="rebuild the BENCHMARKS.md section from the saved JSON")
    args = ap.parse_args()
    setup_home()
    if prepare is not None and not args.render:
        prepare()
    header = run_header(section, args.render)
    result = saved_or_measured(out, args.render, measure)
    write_section(section, f"## {title}\n\n" + render(result, header))


def module_sizes(report: dict) -> tuple[float, float]:
    """Mean module MACs and params as fractions of the parent's, from a split report's dict."""
    rows = report["rows"]
    return (sum(r["macs"] for r in rows) / len(rows) / report["parent_macs"],
            sum(r["params"] for r in rows) / len(rows) / report["parent_params"])


def method_row(repo: str, method: str, d: dict) -> str:
    """One row of the methods-side-by-side tables, from a split report's dict."""
    macs, params = module_sizes(d)
    return (f"| `{repo}` | {method} | {pct(d['parent_accuracy'])} | {pct(d['composed_accuracy'])} | "
            f"{100 * (d['composed_accuracy'] - d['parent_accuracy']):+.2f} pt | "
            f"{pct(d['mean_kept_kernels'])} | {pct(macs)} | {pct(params)} | {d['wall_seconds']:.0f} s |")


def median_seconds(call, repeats: int) -> float:
    """Median wall time of ``call`` over ``repeats`` runs, after one warm-up (allocations, oneDNN caches)."""
    call()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def throughput_and_latency(call, batch, one, repeats: int) -> dict:
    """Images per second of ``call`` on ``batch`` and its latency in ms on ``one`` image (medians)."""
    return {"throughput": len(batch) / median_seconds(lambda: call(batch), repeats),
            "latency_ms": 1000 * median_seconds(lambda: call(one), repeats)}


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"
