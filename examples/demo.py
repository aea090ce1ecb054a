"""hubmod end to end on the embedded hub: train a parent, split it, compose classifiers, evaluate.

Run it with `bash scripts/demo.sh` (sets up everything first) or, in a ready environment,
`HUBMOD_HOME=./runs/demo/hubmod-home python examples/demo.py`. Every step is a real `hubmod`
command, printed before it runs, so you can copy them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HUBMOD = [sys.executable, "-m", "hubmod.cli"]


def run(args: list[str], capture: bool = False) -> str:
    print(f"\n$ {shlex.join(['hubmod' if a == 'hubmod.cli' else a for a in args])}", flush=True)
    out = subprocess.run(args, check=True, text=True, capture_output=capture, env=os.environ.copy())
    return out.stdout if capture else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="hubmod_vgg", help="parent architecture (hubmod_vgg is quick on a CPU)")
    ap.add_argument("--epochs", default="1", help="parent training epochs")
    ap.add_argument("--quick", action="store_true",
                    help="smaller split budget (distill_per_class=500, distill_epochs=2)")
    args = ap.parse_args()
    os.environ.setdefault("HUBMOD_HOME", str(ROOT / "runs" / "demo" / "hubmod-home"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"embedded hub: {os.environ['HUBMOD_HOME']}/hub")
    start = time.perf_counter()

    parent = f"demo/{args.arch.replace('_', '-')}-fmnist"
    print("\n== 1. train a parent on Fashion-MNIST and publish it as a timm-format repo")
    subprocess.run([sys.executable, str(ROOT / "examples" / "train_parent.py"), "--arch", args.arch,
                    "--epochs", args.epochs, "--repo", parent], check=True)

    print("\n== 2. split it into one module per class (GradSplitter), publish each module as a repo")
    budget = ["-p", "distill_per_class=500", "-p", "distill_epochs=2"] if args.quick else []
    run([*HUBMOD, "split", parent, "--dataset", "fashion-mnist", "--hub", "local", *budget])

    print("\n== 3. compose all ten modules again, and a three-class footwear classifier")
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
    run([*HUBMOD, "compose", *[f"{parent}:{c}" for c in classes], "--output", "demo/all-ten", "--hub", "local"])
    run([*HUBMOD, "compose", f"{parent}:Sandal", f"{parent}:Sneaker", f"{parent}-ankle-boot",
         "--output", "demo/footwear", "--hub", "local"])

    print("\n== 4. evaluate on the 10,000 Fashion-MNIST test images")
    results = {}
    for repo in (parent, "demo/all-ten", "demo/footwear"):
        results[repo] = json.loads(run([*HUBMOD, "eval", repo, "--dataset", "fashion-mnist", "--json",
                                        "--hub", "local"], capture=True))
    run([*HUBMOD, "inspect", f"{parent}-sneaker", "--hub", "local"])

    print("\n== results")
    for repo, rep in results.items():
        print(f"  {repo:28s} accuracy {100 * rep['accuracy']:6.2f} %  on {rep['n']:,} test images "
              f"({len(rep['per_class'])} classes)")
    where = f"{os.environ['HUBMOD_HOME']}/hub/models/demo/"
    print(f"\ndone in {time.perf_counter() - start:.0f} s; the repos are in {where}")


if __name__ == "__main__":
    main()
