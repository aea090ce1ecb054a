"""Rebuild every BENCHMARKS.md section whose results JSON is committed, and say which are not.

    python benchmarks/render_all.py           # re-render them all (each script's --render), then the summary
    python benchmarks/render_all.py --check   # exit 1 if re-rendering would change BENCHMARKS.md

Each benchmark script saves what it measured in benchmarks/results/ and renders its section from
it, so a fresh clone rebuilds the document without running anything. A section measured before its
script kept its results (listed at the end) is left as it is until that command runs again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import wrap_prose

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"

# section -> (the results file it is rendered from, the command that measures it; --render re-renders)
SECTIONS: dict[str, tuple[str, list[str]]] = {
    "split-full": ("split_fmnist_full.json", ["split_fmnist.py", "--only", "full"]),
    "split-disjoint": ("split_fmnist_disjoint.json", ["split_fmnist.py", "--only", "disjoint"]),
    "split-wide": ("split_fmnist_wide.json", ["split_fmnist.py", "--only", "wide"]),
    "split-distill": ("split_fmnist_distill.json", ["split_fmnist.py", "--only", "distill"]),
    "cnnsplitter-compare": ("cnnsplitter_fmnist.json", ["cnnsplitter_fmnist.py", "--only", "compare"]),
    "patch": ("patch_fmnist.json", ["cnnsplitter_fmnist.py", "--only", "patch"]),
    "activation-decompose": ("activation_decompose.json", ["activation_fmnist.py", "--only", "decompose"]),
    "activation-reuse": ("activation_reuse.json", ["activation_fmnist.py", "--only", "reuse"]),
    "activation-replace": ("activation_replace.json", ["activation_fmnist.py", "--only", "replace"]),
    "inference": ("inference_fmnist.json", ["inference_fmnist.py"]),
    "inference-modules": ("inference_modules.json", ["inference_fmnist.py", "--modules", "SPLIT_REPO"]),
    "inference-profile": ("inference_profile.json", ["inference_profile.py"]),
    "split-cost": ("split_cost.json", ["split_cost.py"]),
    "split-cost-distilled": ("split_cost_distilled.json", ["split_cost.py", "--distilled"]),
    "split-cost-labels": ("split_cost_labels.json", ["split_cost.py", "--labels"]),
    "distill-repeat": ("distill_repeat.json", ["distill_repeat.py"]),
    "distill-repeat-labels-b256-ho": ("distill_repeat_labels-b256-ho.json",
                                      ["distill_repeat.py", "--setting", "labels-b256-ho"]),
    "distill-repeat-labels-k30-ho": ("distill_repeat_labels-k30-ho.json",
                                     ["distill_repeat.py", "--setting", "labels-k30-ho"]),
    "reuse": ("reuse.json", ["reuse_fmnist.py"]),
    "families": ("families.json", ["families_fmnist.py"]),
    "zero-shot": ("zero_shot.json", ["zero_shot_fmnist.py"]),
    "adapt": ("adapt.json", ["adapt_fmnist.py"]),
    "second-pair": ("second_pair.json", ["second_pair_fmnist.py"]),
    "longer-parents": ("longer_parents.json", ["longer_parents_fmnist.py"]),
    "weak-modules": ("weak_modules.json", ["weak_modules_fmnist.py"]),
    "fit-alternatives": ("fit_alternatives.json", ["fit_alternatives.py"]),
    "compose-from-hub": ("compose_from_hub.json", ["compose_from_hub.py"]),
    "find-scale": ("find_scale.json", ["find_scale.py"]),
    "split-scaling": ("split_scaling.json", ["split_scaling.py"]),
    "split-size-curve": ("split_size_curve.json", ["split_size_curve.py"]),
}


def sections_in(text: str) -> list[str]:
    return [line[5:-10] for line in text.splitlines() if line.startswith("<!-- ") and line.endswith(":start -->")]


def render_all(root: Path = ROOT) -> tuple[list[str], list[str]]:
    """Re-render, in the tree at ``root``, every section of its BENCHMARKS.md whose results are saved;
    returns (rebuilt, left as they are)."""
    text = (root / "BENCHMARKS.md").read_text()
    rebuilt, missing, done = [], [], set()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HUBMOD_HOME=str(root / "benchmarks" / ".work" / "render-home"))
    for section in sections_in(text):
        if section in ("summary", "unsaved"):  # written below, from the results and from this list
            continue
        if section not in SECTIONS:
            raise SystemExit(f"section {section!r} of BENCHMARKS.md is not in render_all.SECTIONS: add it")
        results, cmd = SECTIONS[section]
        if not (root / "benchmarks" / "results" / results).exists():
            missing.append(section)
            continue
        rebuilt.append(section)
        if tuple(cmd) in done:
            continue
        done.add(tuple(cmd))
        subprocess.run([sys.executable, str(root / "benchmarks" / cmd[0]), *cmd[1:], "--render"], check=True,
                       cwd=root, env=env, stdout=subprocess.DEVNULL, timeout=300)
    subprocess.run([sys.executable, str(root / "benchmarks" / "summary.py")], check=True, cwd=root,
                   stdout=subprocess.DEVNULL, timeout=300)
    _write_unsaved(root / "BENCHMARKS.md", missing)
    return rebuilt, missing


UNSAVED_START, UNSAVED_END = "<!-- unsaved:start -->", "<!-- unsaved:end -->"


def _write_unsaved(path: Path, missing: list[str]) -> None:
    """The list, under the summary, of sections that no saved results rebuild, with the command that would."""
    if missing:
        body = ("Sections measured before their script kept its results in `benchmarks/results/`; they stay as "
                "measured until the command runs again (`python benchmarks/render_all.py` rebuilds the others):\n\n"
                + "\n".join(f"- `{s}`: `python benchmarks/{' '.join(SECTIONS[s][1])}`" for s in missing))
    else:
        body = "Every section below is rebuilt from its saved results by `python benchmarks/render_all.py`."
    text = path.read_text()
    block = f"{UNSAVED_START}\n{body}\n{UNSAVED_END}"
    if UNSAVED_START in text:
        text = text[: text.index(UNSAVED_START)] + block + text[text.index(UNSAVED_END) + len(UNSAVED_END):]
    else:
        end = "<!-- summary:end -->"
        text = text.replace(end, f"{end}\n\n{block}", 1)
    path.write_text(wrap_prose(text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if re-rendering would change BENCHMARKS.md")
    args = ap.parse_args()
    if not args.check:
        rebuilt, missing = render_all()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "tree"
            shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", ".work", "site", "*.egg-info",
                                                                      "__pycache__", "test-artifacts"))
            rebuilt, missing = render_all(copy)
            if (copy / "BENCHMARKS.md").read_text() != BENCHMARKS_MD.read_text():
                print("BENCHMARKS.md differs from what its saved results render: run python "
                      "benchmarks/render_all.py", file=sys.stderr)
                sys.exit(1)
    print(f"rebuilt from saved results: {len(rebuilt)} sections ({', '.join(rebuilt)})")
    for section in missing:
        results, cmd = SECTIONS[section]
        print(f"no saved results for {section} (benchmarks/results/{results}): python benchmarks/{' '.join(cmd)}")


if __name__ == "__main__":
    main()
