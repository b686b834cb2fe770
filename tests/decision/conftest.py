"""Fixtures of the decision tests: the shared platform with a small bank in it, a propensity
model trained on a tiny synthetic bank, real serving pools, and the decision service itself."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "serving"))

from decision_testkit import TEST_PREFIX  # noqa: E402
from helpers import shared_tmpdir  # noqa: E402
from serving_testkit import TEST_SEED, TEST_SF, free_port, start_server  # noqa: E402

BANK_SF = 0.002
BANK_SEED = 11


@pytest.fixture(scope="session")
def decision_work() -> Iterator[Path]:
    path = shared_tmpdir("dataplat-decision-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def bank(platform) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """The platform's home with a bank in the warehouse: a small one loaded here only when
    ``bank.customers`` is empty (other tests' data is used as it is). The decisions the
    tests record are deleted afterwards."""
    import psycopg

    from dataplat.data.load import load_warehouse
    from dataplat.platform import endpoints

    conninfo = endpoints.warehouse_conninfo(platform.home)
    with psycopg.connect(conninfo) as conn:
        empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM bank.customers)").fetchone()[0]  # type: ignore[index]
    if empty:
        load_warehouse(conninfo, sf=BANK_SF, seed=BANK_SEED, progress=False)
    yield platform.home
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DELETE FROM bank.decisions WHERE event_id LIKE %s", (TEST_PREFIX + "%",))


@pytest.fixture(scope="session")
def model_repo(decision_work: Path) -> Path:
    """A model repository with the propensity model trained on a tiny synthetic bank."""
    from dataplat.serving.model import ModelRepository, train

    repo = decision_work / "repo"
    ModelRepository(repo).publish(
        train(TEST_SF, TEST_SEED), trained_at=dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    )
    return repo


@pytest.fixture(scope="session")
def pool(model_repo: Path, decision_work: Path):  # type: ignore[no-untyped-def]
    """One real OIP serving pool replica."""
    server = start_server(model_repo, decision_work, "decision-pool-main", workers=1, pool="cpu")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def customers(bank: Path) -> list[int]:
    """Some customer ids of the loaded bank."""
    import psycopg

    from dataplat.platform import endpoints

    with psycopg.connect(endpoints.warehouse_conninfo(bank)) as conn:
        rows = conn.execute(
            "SELECT customer_id FROM bank.customers ORDER BY customer_id LIMIT 200"
        ).fetchall()
    return [int(r[0]) for r in rows]


@pytest.fixture(scope="session")
def service(bank: Path, pool, decision_work: Path):  # type: ignore[no-untyped-def]
    """The decision service (one worker, the stream consumer on) scoring through ``pool``."""
    from decision_testkit import start_service

    durable = f"dtest-{uuid.uuid4().hex[:8]}"
    svc = start_service(
        bank, decision_work, "decision-main", free_port(), [f"cpu={pool.url}"],
        ["--max-inflight", "8", "--durable", durable],
    )  # fmt: skip
    try:
        yield svc
    finally:
        svc.stop()
        delete_consumer(bank, durable)


def delete_consumer(home: Path, durable: str) -> None:
    """Remove a test's durable consumer of EVENTS (the platform is shared)."""
    import asyncio

    import nats

    from dataplat.platform import endpoints

    async def go() -> None:
        nc = await nats.connect(
            servers=endpoints.nats_servers(endpoints.load_platform(home)), connect_timeout=5
        )
        try:
            await nc.jetstream().delete_consumer("EVENTS", durable)
        except Exception:  # noqa: BLE001 - not created: nothing to remove
            pass
        finally:
            await nc.close()

    asyncio.run(go())
