"""Fixtures of the inventory tests: paths of the sample inventories and a `dataplat` runner."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BAD = HERE / "bad"
SAMPLES = HERE / "samples"
LOCAL = REPO / "inventory" / "local.yml"
EXAMPLE = REPO / "inventory" / "examples" / "xinchuang-3az.yml"


@pytest.fixture
def dataplat(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
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


def load_json(text: str) -> dict:
    return json.loads(text)
