"""Paths of the inventories and samples the inventory tests use."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BAD = HERE / "bad"
SAMPLES = HERE / "samples"
LOCAL = REPO / "inventory" / "local.yml"
EXAMPLE = REPO / "inventory" / "examples" / "xinchuang-3az.yml"
