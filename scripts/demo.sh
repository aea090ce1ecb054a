#!/usr/bin/env bash
# The README's demo: set up, then train a small parent on Fashion-MNIST, split it, publish the modules to
# the embedded hub, compose a classifier from them and evaluate it. Everything stays under ./runs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HUBMOD_HOME="${HUBMOD_HOME:-$PWD/runs/demo/hubmod-home}" HF_HUB_OFFLINE=1
exec .venv/bin/python examples/demo.py "$@"
