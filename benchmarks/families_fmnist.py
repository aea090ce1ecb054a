"""Benchmark: one Fashion-MNIST parent per timm CNN family, split with the default GradSplitter setting.

    python benchmarks/families_fmnist.py            # train (once) and split every family
    python benchmarks/families_fmnist.py --only regnety
    python benchmarks/families_fmnist.py --render   # rebuild the BENCHMARKS.md section from the saved JSON

Families: residual additions (resnet18), grouped convolutions with squeeze-and-excitation (a
RegNetY), depthwise convolutions with squeeze-and-excitation (mobilenetv3_small_100), and
concatenation (densenet121 with growth rate 16 and three dense blocks, since 28-pixel images
leave nothing for the fourth block to pool). Each parent is trained by
examples/train_parent.py (3 epochs for the RegNetY, 1 for the others, to keep the run under an hour
on a laptop CPU) with 200 images per class held out for the split to validate on, then split with
the default setting (``-p preset=fast`` spells it out); the table reports what couples each family's channels, the
composed accuracy of all ten modules against the parent on the test split, kept kernels and MACs,
and split wall time. Results go to benchmarks/results/families.json and BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import time

from common import (
    RESULTS,
    ROOT,
    ensure_parent,
    pct,
    run_header,
    setup_home,
    write_section,
)

FAMILIES = {
    "resnet18": ("bench/resnet18-fmnist-ho", ["--arch", "resnet18", "--epochs", "1", "--holdout-per-class", "200"],
                 "residual additions"),
    "regnety": ("bench/regnety002-fmnist-ho", ["--arch", "regnety_002", "--epochs", "3",
                                               "--holdout-per-class", "200"],
                "grouped convolutions, squeeze-and-excitation, residual additions"),
    "mobilenetv3": ("bench/mobilenetv3s-fmnist-ho", ["--arch", "mobilenetv3_small_100", "--epochs", "1",
                                                     "--holdout-per-class", "200"],
                    "depthwise convolutions, squeeze-and-excitation, residual additions"),
    "densenet": ("bench/densenet-fmnist-ho", ["--arch", "densenet121", "--epochs", "1", "--holdout-per-class", "200",
                                              "--model-args", json.dumps({"growth_rate": 16,
                                                                          "block_config": [6, 12, 8]})],
                 "concatenation"),
}
OPTIONS = {"preset": "fast"}
SECTION = "families"
OUT = RESULTS / "families.json"


def run(keys: list[str]) -> dict:
    import hubmod
    from hubmod.channels import analyse_channels
    from hubmod.parents import load_parent

    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for key in keys:
        repo, args, couplings = FAMILIES[key]
        info = ensure_parent(repo, args)
        parent = load_parent(repo, hub="local")
        import torch

        groups, fixed = analyse_channels(parent.model, torch.zeros(1, *parent.data_config.input_size))
        t = time.perf_counter()
        report = hubmod.split(repo, "fashion-mnist", hub="local", options=OPTIONS, repo_prefix=f"{repo}-fast",
                              progress=False)
        d = report.to_dict()
        d.update(wall_seconds=time.perf_counter() - t, parent_test_accuracy=info["test_accuracy"],
                 parent_train_seconds=info["train_seconds"], parent_args=args, couplings=couplings,
                 groups=len(groups), grouped_groups=sum(g.repeat > 1 for g in groups),
                 concat_groups=sum(bool(g.positions) for g in groups), fixed_groups=len(fixed))
        results[key] = d
        print(f"{key}: composed {report.composed_accuracy:.4f} parent {report.parent_accuracy:.4f} kept "
              f"{report.mean_kept_kernels:.3f} in {d['wall_seconds']:.0f}s", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1))
    return results


def render(results: dict, header: str) -> str:
    lines = [header.rstrip(), "",
             "| family | parent | what couples its channels | groups (grouped / concatenated / kept whole) | "
             "parent acc. | composed acc. | difference | kept kernels | module MACs | split time |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, d in results.items():
        macs = _macs_share(d)
        lines.append(
            f"| {key} | `{FAMILIES[key][0]}` | {d['couplings']} | {d['groups']} ({d['grouped_groups']} / "
            f"{d['concat_groups']} / {d['fixed_groups']}) | {pct(d['parent_accuracy'])} | "
            f"{pct(d['composed_accuracy'])} | {100 * (d['composed_accuracy'] - d['parent_accuracy']):+.2f} pt | "
            f"{pct(d['mean_kept_kernels'])} | {pct(macs)} | {d['wall_seconds']:.0f} s |")
    epochs = ", ".join(f"{key} {args[args.index('--epochs') + 1]}"
                       for key, args in ((k, d["parent_args"]) for k, d in results.items()))
    lines += ["", f"Each parent: `examples/train_parent.py` on Fashion-MNIST's training images with 200 per class "
              f"held out (epochs: {epochs}); split with the default setting (`-p preset=fast` spells it out), "
              "all ten modules composed on the 10,000 test images. The parent and composed accuracies are on "
              "those test images."]
    return "\n".join(lines)


METHODS_TESTED = ("GradSplitter (default suite); CNNSplitter, activation (`-m slow`)")


def _macs_share(d: dict) -> float:
    """The modules' mean MACs as a share of the parent's."""
    return sum(r["macs"] for r in d["rows"]) / len(d["rows"]) / d["parent_macs"]


def support_table(results: dict) -> str:
    """The docs' support table: each measured family, what couples it, the methods the matrix test runs on
    it, and its measured split (generated: edit benchmarks/families_fmnist.py, not the page)."""
    lines = ["| family (parent measured) | what couples its channels | methods tested on it | parent → all ten "
             "composed | kept kernels | module MACs | split time |", "|---|---|---|---:|---:|---:|---:|"]
    for key, d in results.items():
        narrowed = ", narrowed" if "--model-args" in d["parent_args"] else ""
        lines.append(f"| {key} (`{d['parent_args'][1]}`{narrowed}) | {d['couplings']} | {METHODS_TESTED} | "
                     f"{pct(d['parent_accuracy'])} → {pct(d['composed_accuracy'])} | {pct(d['mean_kept_kernels'])} | "
                     f"{pct(_macs_share(d))} | {d['wall_seconds']:.0f} s |")
    lines += ["", "Measured by `python benchmarks/families_fmnist.py` on Fashion-MNIST with the default split "
              "setting on 2 CPU cores. Only the resnet18 split had the cores to itself; the other split times are "
              "upper bounds (shared cores, paused runs). The full table, with channel groups, the machine and "
              "those caveats, is in [BENCHMARKS.md](benchmarks.md)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=list(FAMILIES), action="append", help="run these families only")
    ap.add_argument("--render", action="store_true", help="only rebuild the BENCHMARKS.md section from saved JSON")
    args = ap.parse_args()
    setup_home()
    header = run_header(SECTION, args.render)
    results = json.loads(OUT.read_text()) if args.render else run(args.only or list(FAMILIES))
    write_section(SECTION, "## Timm CNN families\n\n" + render(results, header))
    write_section(SECTION, support_table(results), ROOT / "docs" / "architectures.md")


if __name__ == "__main__":
    main()
