"""Fixtures of the inventory tests: paths of the sample inventories and a `dataplat` runner."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import pytest


@pytest.fixture
def dataplat(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run ``dataplat.cli.main(argv)``; return (exit code, stdout, stderr).

    Sub-command modules of other packages that do not import (yet) are left out, so
    these tests exercise the real entry point without depending on them.
    """
    import dataplat.cli as cli

    usable = []
    for name in cli.COMMAND_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        usable.append(name)
    monkeypatch.setattr(cli, "COMMAND_MODULES", tuple(usable))
    monkeypatch.delenv("DATAPLAT_INVENTORY", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = cli.main(list(argv))
        out, err = capsys.readouterr()
        return rc, out, err

    return run
