#!/usr/bin/env bash
# The main job on the embedded default: set up, check the inventory, deploy the platform
# on this machine, load the synthetic bank at a small scale factor, put the masking
# policies in force and verify them, run a failover drill and a short benchmark, and end
# with a report and the platform's status. Any missed target stops it with exit 1.
#   SF=0.01 SEED=20261121 bash scripts/main.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export DATAPLAT_HOME=${DATAPLAT_HOME:-$(pwd)/.dataplat}
dataplat=.venv/bin/dataplat
$dataplat inventory check --offline
$dataplat up
$dataplat data load --sf "${SF:-0.01}" --seed "${SEED:-20261121}"
$dataplat policy apply
$dataplat policy verify
$dataplat drill run failover-postmaster-kill
$dataplat bench run --suite batch --slo bench/slo/smoke.yml
$dataplat bench run --suite concurrent --slo bench/slo/smoke.yml --duration 3 --concurrency 1,4
$dataplat report $(ls -d "$DATAPLAT_HOME"/bench/*/ | tail -2)
$dataplat status
