#!/usr/bin/env bash
# The main job on the embedded default: set up, deploy the platform on this machine,
# load the synthetic bank at a small scale factor, print the platform's status.
#   SF=0.01 SEED=20261121 bash scripts/main.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export DATAPLAT_HOME=${DATAPLAT_HOME:-$(pwd)/.dataplat}
.venv/bin/dataplat inventory check --offline
.venv/bin/dataplat up
.venv/bin/dataplat data load --sf "${SF:-0.01}" --seed "${SEED:-20261121}"
.venv/bin/dataplat status
