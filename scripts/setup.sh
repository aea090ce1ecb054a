#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: a venv in .venv with pinned packages, and the
# Fashion-MNIST files from Debian's dataset-fashion-mnist package. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${HUBMOD_VENV:-.venv}
PY=${PYTHON:-python3}
FMNIST_DIR=/usr/share/datasets/fashion-mnist

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.hubmod-installed"
want="$(cat constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing pinned packages (torch==2.14.1 torchvision==0.29.1 first; ~2 min)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first and pinned, so nothing below can pull another multi-GB build.
  "$VENV/bin/python" -m pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[test,docs]"
  echo "$want" > "$stamp"
fi

if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  echo "[setup] installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
  SUDO=""
  if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO=sudo; fi
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q dataset-fashion-mnist
fi
echo "[setup] ready: $VENV/bin/python, Fashion-MNIST in $FMNIST_DIR"
