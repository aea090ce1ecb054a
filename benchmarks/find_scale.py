"""Benchmark: how long `hubmod find` takes on an embedded hub holding 1,000 module repos.

    python benchmarks/find_scale.py            # measure
    python benchmarks/find_scale.py --reuse    # time find again on the hub an earlier run published
    python benchmarks/find_scale.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

One real module (the Trouser module of the VGG parent of reuse_fmnist.py, split with the fast
preset) is published 1,000 times to a fresh embedded hub, under ten class names and with
different F1 and MACs written into each copy's config, so every repo has a real card, config and
weights. `find` then lists one class (100 repos) and, with `--limit 1000`, a class held by every
repo. The target from the discovery issue is under 2 s for 1,000 module repos.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import time

from common import RESULTS, ROOT, run_header, saved_or_measured, setup_home, write_section
from reuse_fmnist import PAIRS, ensure_split

OUT = RESULTS / "find_scale.json"
SECTION = "find-scale"
REPOS = 1000
CLASSES = 10
REPEATS = 5


def _publish(module, hub) -> float:
    t = time.perf_counter()
    for i in range(REPOS):
        m = copy.deepcopy(module)
        m.config.metrics.update(test_f1=0.5 + 0.5 * i / REPOS, macs=1000 + i)
        # the same weights under ten class names: a card names its class, the listing filters on it
        name = "Trouser" if i % CLASSES == 0 else f"Trouser {i % CLASSES}"
        labels = list(m.config.parent["label_names"])
        labels[m.config.class_index] = name
        m.config.class_name = name
        m.config.parent = {**m.config.parent, "label_names": labels}
        m.push_to_hub(f"many/module-{i:04d}", hub=hub)
    return time.perf_counter() - t


def measure(reuse: bool) -> dict:
    import hubmod
    from hubmod.hub import LocalHub

    source_index = ensure_split(PAIRS["vgg+resnet18"][0][0])
    module = hubmod.compose([f"{source_index}:Trouser"], hub="local").class_modules[0]
    home = ROOT / "benchmarks" / ".work" / "find-home"
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    os.environ["HUBMOD_HOME"] = str(home)
    hub = LocalHub()
    if reuse and previous.get("publish_seconds") and hub.repo_exists(f"many/module-{REPOS - 1:04d}"):
        publish_seconds = previous["publish_seconds"]  # the same hub, published by an earlier run
    else:
        shutil.rmtree(home, ignore_errors=True)
        publish_seconds = _publish(module, hub)

    def timed(classes: list[str], limit: int) -> tuple[float, int]:
        times, count = [], 0
        for _ in range(REPEATS):
            t = time.perf_counter()
            found = hubmod.find(classes, hub=hub, limit=limit)
            times.append(time.perf_counter() - t)
            count = sum(len(v) for v in found.values())
        return statistics.median(times), count

    one_class, one_count = timed(["Trouser"], 1000)
    all_classes, all_count = timed(["Trouser"] + [f"Trouser {k}" for k in range(1, CLASSES)], 1000)
    return {"repos": REPOS, "classes": CLASSES, "publish_seconds": publish_seconds,
            "one_class": {"seconds": one_class, "rows": one_count},
            "every_class": {"seconds": all_classes, "rows": all_count}, "repeats": REPEATS}


def render(r: dict, header: str) -> str:
    return "\n".join([
        header.rstrip(), "",
        f"An embedded hub holding {r['repos']:,} module repos (one real module published {r['repos']:,} times "
        f"under {r['classes']} class names; publishing them took {r['publish_seconds']:.0f} s). Median of "
        f"{r['repeats']} runs of `hubmod.find`:", "",
        "| query | rows | seconds |", "|---|---:|---:|",
        f"| one class | {r['one_class']['rows']} | {r['one_class']['seconds']:.2f} |",
        f"| all {r['classes']} classes (every repo listed once) | {r['every_class']['rows']} | "
        f"{r['every_class']['seconds']:.2f} |",
        "", "Each class asked for reads every repo's branch pointer and card front matter once (the embedded hub "
        "has no index) and parses the YAML only of cards whose text carries the class tag; no weights or configs "
        "are read. Against the target of under 2 s for 1,000 module repos: "
        + "; ".join(f"{what} {'meets it' if r[key]['seconds'] < 2 else 'misses it by %.2f s' % (r[key]['seconds'] - 2)}"
                    for what, key in (("one class", "one_class"), ("all classes", "every_class"))) + "."])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="time find on the hub an earlier run published")
    args = ap.parse_args()
    setup_home()
    header = run_header(SECTION, args.render)
    result = saved_or_measured(OUT, args.render, lambda: measure(args.reuse))
    write_section(SECTION, "## Finding modules on a hub of 1,000 module repos\n\n" + render(result, header))


if __name__ == "__main__":
    main()
