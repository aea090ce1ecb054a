#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: a venv in .venv with pinned packages, the Fashion-MNIST
# files from Debian's dataset-fashion-mnist package, and Debian's chromium and chromium-driver for
# the web page's browser test (Debian ships them as one version, so the driver always matches the
# browser; they follow Debian's security updates, which is why they are not pinned). Safe to run again.
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
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[test,docs,app]"
  echo "$want" > "$stamp"
fi

# Debian packages: the Fashion-MNIST files, and the headless browser the web page's test drives
need=()
[ -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ] || need+=(dataset-fashion-mnist)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${need[*]}"
  SUDO=""
  if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null; then SUDO=sudo; fi
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${need[@]}"
fi
echo "[setup] ready: $VENV/bin/python, Fashion-MNIST in $FMNIST_DIR"
