#!/usr/bin/env bash
# Set up, then run the whole test suite (pytest) against real components.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k inventory`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
