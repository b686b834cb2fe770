"""The ``dataplat`` command: a thin layer over the library.

Every sub-command module exposes ``register(subparsers)``, which adds its parser and
sets ``func(args) -> int``. Errors derived from :class:`~dataplat.errors.DataplatError`
are printed without a traceback and give their ``exit_code``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from dataplat import __version__
from dataplat.errors import DataplatError

COMMAND_MODULES = (
    "dataplat.inventory.cli",
    "dataplat.deploy.cli",
    "dataplat.data.cli",
    "dataplat.dr.cli",
    "dataplat.policy.cli",
    "dataplat.k8s.cli",
    "dataplat.bench.cli",
    "dataplat.bench.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dataplat",
        description="Deploy the bank data platform from an inventory, run workloads and drills, report.",
    )
    parser.add_argument("--version", action="version", version=f"dataplat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # platformdirs (through Ansible's dependencies) warns when XDG_RUNTIME_DIR is unset,
    # which it always is under cron, CI and runuser: noise for our users
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except DataplatError as exc:
        print(f"dataplat: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dataplat: interrupted", file=sys.stderr)
        return 130
