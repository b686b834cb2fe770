"""Fixtures of the serving tests: one model trained on a tiny synthetic bank, published to a
model repository, and real OIP server processes serving it."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_testkit import TEST_SEED, TEST_SF, ServerProcess, start_server  # noqa: E402

from dataplat.serving.model import ModelRepository, ModelVersion, TrainedModel, train  # noqa: E402


@pytest.fixture(scope="session")
def work() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dataplat-serving-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def trained() -> TrainedModel:
    return train(TEST_SF, TEST_SEED)


@pytest.fixture(scope="session")
def published(trained: TrainedModel, work: Path) -> ModelVersion:
    return ModelRepository(work / "repo").publish(
        trained, trained_at=dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.UTC)
    )


@pytest.fixture(scope="session")
def server(published: ModelVersion, work: Path) -> Iterator[ServerProcess]:
    """A two-worker server of the repository."""
    proc = start_server(published.path.parents[1], work, "serving-main", workers=2)
    yield proc
    proc.stop()
