"""Fixtures of the scaling tests: a model repository with the propensity model of a tiny bank."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def scaling_work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dataplat-scaling-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def model_repo(scaling_work: Path) -> Path:
    """A model repository holding one version of the propensity model (SF 0.002, a second or two)."""
    from dataplat.serving.model import train_and_publish

    repo = scaling_work / "repo"
    train_and_publish(repo, sf=0.002, seed=7)
    return repo
