#!/usr/bin/env bash
# The test command of the README and of CI: set up (idempotent), lint, build the docs, run the default test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` for the end-to-end runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ruff check hubmod tests examples benchmarks
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict --quiet   # the docs site: broken links fail
.venv/bin/python -m pytest "$@"
