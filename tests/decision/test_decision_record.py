"""Recording on the stream, the sink into the warehouse, the feature cache and the ledger of
recent decisions, against the real warehouse and the real NATS JetStream of the platform."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from decision_testkit import TEST_PREFIX, post, start_service
from serving_testkit import free_port

from dataplat.decision.ledger import DecisionLedger
from dataplat.decision.warehouse import StoredDecision


def new_id() -> str:
    return f"{TEST_PREFIX}{uuid.uuid4().hex[:16]}"


def doc_of(event_id: str, customer: int, channel: str | None = "sms", **extra: object) -> dict:
    now = dt.datetime.now(dt.UTC)
    doc = {
        "event_id": event_id, "customer_id": customer, "decision_id": "x", "event_type": "app_login",
        "offer": {"product_id": "DEP-3M" if channel else None, "name": None}, "channel": channel,
        "score": 0.5, "degraded": False, "reasons": ["test"], "strategy": "engagement", "latency_ms": 1.0,
        "replayed": False, "campaign_id": None, "pool": "cpu", "ts": now.isoformat(),
        "event_published_at": None, "decided_at": now.timestamp(),
    }  # fmt: skip
    doc.update(extra)
    return doc


def rows_of(home: Path, event_ids: list[str]) -> dict[str, tuple]:
    import psycopg

    from dataplat.platform import endpoints

    with psycopg.connect(endpoints.warehouse_conninfo(home), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT event_id, customer_id, channel, score, reason FROM bank.decisions "
            "WHERE event_id = ANY(%s)",
            (event_ids,),
        ).fetchall()
    return {r[0]: r for r in rows}


def test_ledger_keeps_recent_decisions_by_event_and_customer() -> None:
    ledger = DecisionLedger(cap_hours=24, max_events=3, per_customer=2)
    now = dt.datetime.now(dt.UTC)
    old = now - dt.timedelta(hours=30)
    docs = [
        doc_of("e1", 7, "sms", ts=old.isoformat()),
        doc_of("e2", 7, "app_push"),
        doc_of("e3", 7, "rm_task"),
        doc_of("e4", 8, None),
    ]
    for d in docs:
        ledger.on_message(json.dumps(d).encode())
    ledger.on_message(b"{not json")
    ledger.on_message(json.dumps(doc_of("e2", 7, "sms")).encode())  # the first of an event id wins
    assert ledger.stats()["malformed"] == 1
    assert ledger.stored("e1") is None  # beyond max_events
    assert ledger.stored("e2") is not None and ledger.stored("e2").channel == "app_push"  # type: ignore[union-attr]
    assert ledger.stored("e4") is not None  # no channel: a replay, not a contact
    since = now - dt.timedelta(hours=24)
    # per_customer=2 keeps e2, e3; e1 would be outside the window anyway
    assert sorted(ch for ch, _ in ledger.contacts(7, since)) == ["app_push", "rm_task"]
    assert [ch for ch, _ in ledger.contacts(7, since, {"e3"})] == ["app_push"]
    assert ledger.contacts(8, since) == []


def test_a_replayed_event_id_is_read_back_from_the_stream(bank: Path, customers: list[int]) -> None:
    """Two recorders that share nothing (no common ledger): the second publish of an event id
    is a JetStream duplicate, and the first decision comes back from the stream by sequence."""
    from dataplat.decision.metrics import get_metrics
    from dataplat.decision.record import StreamRecorder
    from dataplat.decision.stream import StreamLink
    from dataplat.platform import endpoints

    servers = endpoints.nats_servers(endpoints.load_platform(bank))
    event_id = new_id()

    async def scenario() -> tuple[StoredDecision | None, StoredDecision | None]:
        out = []
        for channel in ("sms", "app_push"):
            link = StreamLink(servers)
            await link.run()
            try:
                doc = doc_of(event_id, customers[0], channel)
                row = StoredDecision.from_doc(doc)
                recorder = StreamRecorder(link, DecisionLedger(24), get_metrics())
                out.append(await recorder.record(row, doc))
            finally:
                await link.close()
        return out[0], out[1]

    from prometheus_client import REGISTRY

    def published(result: str) -> float:
        return REGISTRY.get_sample_value("dataplat_decision_published_total", {"result": result}) or 0.0

    before = (published("ok"), published("duplicate"))
    first, second = asyncio.run(scenario())
    assert first is None  # recorded by this call
    assert second is not None and second.event_id == event_id
    assert second.channel == "sms" and second.pool == "cpu" and second.reasons == ("test",)
    assert (published("ok"), published("duplicate")) == (before[0] + 1, before[1] + 1)


@pytest.fixture()
def test_stream(bank: Path):  # type: ignore[no-untyped-def]
    """A JetStream stream of this test only (the platform is shared): (servers, name, subject prefix)."""
    import nats

    from dataplat.platform import endpoints

    servers = endpoints.nats_servers(endpoints.load_platform(bank))
    tag = uuid.uuid4().hex[:8]
    name, prefix = f"DPTEST_{tag}", f"dptest.{tag}."

    async def create() -> None:
        nc = await nats.connect(servers=servers)
        await nc.jetstream().add_stream(name=name, subjects=[prefix + ">"])
        await nc.close()

    async def delete() -> None:
        nc = await nats.connect(servers=servers)
        await nc.jetstream().delete_stream(name)
        await nc.close()

    asyncio.run(create())
    yield servers, name, prefix
    asyncio.run(delete())


def test_the_sink_writes_the_stream_and_loses_nothing_when_the_warehouse_fails(
    bank: Path, customers: list[int], test_stream: tuple[list[str], str, str], tmp_path: Path
) -> None:
    """Decisions on a stream; a sink whose warehouse refuses connections acknowledges nothing
    (they stay on the stream); a sink on the real warehouse then writes every one, and a
    malformed message and a decision the table refuses are terminated without holding the
    others back."""
    import nats

    from dataplat.decision.metrics import get_metrics
    from dataplat.decision.record import DecisionSink
    from dataplat.decision.stream import StreamLink
    from dataplat.decision.warehouse import ConnectionPool
    from dataplat.platform import endpoints

    servers, stream, prefix = test_stream
    ids = [new_id() for _ in range(40)]

    async def publish() -> None:
        nc = await nats.connect(servers=servers)
        js = nc.jetstream()
        for i, event_id in enumerate(ids):
            await js.publish(prefix + "sms", json.dumps(doc_of(event_id, customers[i % 10])).encode())
            if i == 20:
                await js.publish(prefix + "sms", b'{"event_id": "broken"}')
                nobody = doc_of(new_id(), 10**12)  # the table refuses it: no such customer
                await js.publish(prefix + "sms", json.dumps(nobody).encode())
        await nc.close()

    async def run_sink(conninfo: str, seconds: float, lock: str) -> DecisionSink:
        link = StreamLink(servers)
        pool = ConnectionPool(conninfo, size=2, connect_timeout_s=1.0)
        sink = DecisionSink(
            link, pool, get_metrics(), tmp_path / lock, durable="sink", stream=stream,
            subjects=prefix + ">", linger_s=0.05, retry_delay_s=0.2, ack_wait_s=2.0,
        )  # fmt: skip
        tasks = [asyncio.create_task(link.run()), asyncio.create_task(sink.run())]
        await asyncio.sleep(seconds)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
        await link.close()
        return sink

    async def pending() -> tuple[int, int]:
        nc = await nats.connect(servers=servers)
        info = await nc.jetstream().consumer_info(stream, "sink")
        await nc.close()
        return info.num_pending + info.num_ack_pending + info.num_redelivered, info.ack_floor.stream_seq

    asyncio.run(publish())
    refused = "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=1"
    down = asyncio.run(run_sink(refused, 2.0, "a.lock"))
    assert down.written == 0 and "connect" in down.last_error
    assert rows_of(bank, ids) == {}
    assert asyncio.run(pending())[1] == 0  # nothing acknowledged
    up = asyncio.run(run_sink(endpoints.warehouse_conninfo(bank), 4.0, "b.lock"))
    assert up.written == len(ids)
    rows = rows_of(bank, ids)
    assert set(rows) == set(ids)
    for _, _, channel, score, reason in rows.values():
        assert channel == "sms" and score == 0.5
        assert json.loads(reason) == {"strategy": "engagement", "reasons": ["test"], "pool": "cpu"}
    left, floor = asyncio.run(pending())
    assert floor == len(ids) + 2  # all acknowledged, the two bad ones terminated


def test_one_sink_per_service_instance(bank: Path, tmp_path: Path) -> None:
    """Two sinks with one lock file: the second waits until the first lets go."""
    from dataplat.decision.metrics import get_metrics
    from dataplat.decision.record import DecisionSink
    from dataplat.decision.stream import StreamLink
    from dataplat.decision.warehouse import ConnectionPool

    async def scenario() -> list[bool]:
        link = StreamLink([])  # never connects: the sinks wait at the stream after the lock
        pool = ConnectionPool("host=127.0.0.1 port=1")
        a = DecisionSink(link, pool, get_metrics(), tmp_path / "s.lock", lock_retry_s=0.05)
        b = DecisionSink(link, pool, get_metrics(), tmp_path / "s.lock", lock_retry_s=0.05)
        ta = asyncio.create_task(a.run())
        await asyncio.sleep(0.1)
        tb = asyncio.create_task(b.run())
        await asyncio.sleep(0.2)
        seen = [a.active, b.active]
        ta.cancel()
        await asyncio.gather(ta, return_exceptions=True)
        await asyncio.sleep(0.2)
        seen += [a.active, b.active]
        tb.cancel()
        await asyncio.gather(tb, return_exceptions=True)
        return seen

    # flock locks belong to the open file description: two in one process exclude each other
    assert asyncio.run(scenario()) == [True, False, False, True]


def test_feature_cache_hits_within_its_tolerance_and_reads_old_events_as_of_their_time(
    bank: Path, customers: list[int]
) -> None:
    from dataplat.decision.features import FeatureCache
    from dataplat.decision.warehouse import ConnectionPool
    from dataplat.platform import endpoints

    async def scenario() -> dict[str, object]:
        pool = ConnectionPool(endpoints.service_conninfo(bank), size=2)
        cache = FeatureCache(pool, cap_hours=24 * 14, ttl_s=60, capacity=3, chunk=2)
        cache.start()
        try:
            now = dt.datetime.now(dt.UTC)
            out: dict[str, object] = {}
            a = await cache.view(customers[0], now, new_id())
            b = await cache.view(customers[0], now + dt.timedelta(seconds=30), new_id())
            out["same"] = a is b
            out["after_two"] = (cache.hits, cache.misses)
            old = await cache.view(customers[0], now - dt.timedelta(days=40), new_id())
            out["old_differs"] = old is not a
            out["after_old"] = (cache.hits, cache.misses)
            await cache.view(customers[0], now, new_id())  # the old read did not replace the entry
            out["after_again"] = (cache.hits, cache.misses)
            out["missing"] = await cache.view(10**12, now, new_id())
            for c in customers[1:5]:
                await cache.view(c, now, new_id())
            out["size"] = len(cache)
            out["evicted_first"] = not cache.cached(customers[0], now)[0]
            off = FeatureCache(pool, cap_hours=1, ttl_s=0)
            off.start()
            await off.view(customers[0], now, new_id())
            await off.view(customers[0], now, new_id())
            out["off"] = (off.hits, off.misses)
            await off.stop()
            pre = FeatureCache(pool, cap_hours=1, ttl_s=60, capacity=5, chunk=2)
            out["preloaded"] = await pre.preload(pause_s=0)
            out["preloaded_hit"] = pre.cached(min(customers), now)[0]
            # refresh ahead: entries older than the bound are read again and stay cached
            before = pre._entries[min(customers)][0]
            out["refreshed"] = await pre.refresh(0.0, pause_s=0)
            out["refreshed_later"] = pre._entries[min(customers)][0] > before
            out["refresh_none_young"] = await pre.refresh(3600.0, pause_s=0)
            return out
        finally:
            await cache.stop()
            await pool.close()

    out = asyncio.run(scenario())
    assert out["same"] is True and out["after_two"] == (1, 1)
    assert out["old_differs"] is True and out["after_old"] == (1, 2)
    assert out["after_again"] == (2, 2)
    assert out["missing"] is None
    assert out["size"] == 3 and out["evicted_first"] is True
    assert out["off"] == (0, 2)
    assert out["preloaded"] == 5 and out["preloaded_hit"] is True
    assert out["refreshed"] == 5 and out["refreshed_later"] is True and out["refresh_none_young"] == 0


def _next_local(hour: int, minute: int, tz: str = "Asia/Shanghai") -> dt.datetime:
    now = dt.datetime.now(ZoneInfo(tz))
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at > now else at + dt.timedelta(days=1)


def test_frequency_caps_count_decisions_of_every_worker_at_once(
    bank: Path, pool, decision_work: Path, customers: list[int]
) -> None:  # type: ignore[no-untyped-def]
    """A service of two workers; events of one customer back to back, each on a new connection
    (so they spread over the workers): the strategy's cap (any channel, 3 per 7 days) holds
    although the warehouse gets the decisions a moment later, because every worker's ledger
    sees every decision on the stream."""
    import psycopg

    from dataplat.platform import endpoints

    ts = _next_local(10, 15)  # outside the inflow strategy's quiet hours
    since = ts - dt.timedelta(days=7)
    svc = start_service(
        bank, decision_work, "decision-caps", free_port(), [f"cpu={pool.url}"],
        ["--workers", "2", "--no-consumer"],
    )  # fmt: skip
    try:
        with psycopg.connect(endpoints.warehouse_conninfo(bank), autocommit=True) as conn:
            prior = dict(
                conn.execute(
                    "SELECT customer_id, count(*) FROM (SELECT customer_id FROM bank.contact_history "
                    "WHERE ts > %s AND ts <= %s UNION ALL SELECT customer_id FROM bank.decisions "
                    "WHERE ts > %s AND channel IS NOT NULL) x GROUP BY customer_id",
                    (since, ts, since),
                ).fetchall()
            )

        def payroll(customer: int) -> dict:
            event = {"event_id": new_id(), "type": "payroll_credited", "customer_id": customer,
                     "amount": 30000.0, "ts": ts.isoformat()}  # fmt: skip
            status, doc, _ = post(svc.url + "/v1/decisions", event)
            assert status == 200, doc
            return doc

        first = None
        for customer in [c for c in customers if prior.get(c, 0) == 0][:40]:
            first = payroll(customer)
            if first["channel"] is not None:
                break
        assert first is not None and first["channel"] is not None, "no customer without contacts got an offer"
        docs = [first] + [payroll(first["customer_id"]) for _ in range(7)]
        with_channel = [d for d in docs if d["channel"] is not None]
        assert len(with_channel) <= 3, [d["reasons"] for d in docs]
        assert any("frequency cap" in r for d in docs for r in d["reasons"]), [d["reasons"] for d in docs]
        # and the warehouse has every one of them shortly after
        ids = [d["event_id"] for d in docs]
        deadline = time.monotonic() + 10
        while len(rows_of(bank, ids)) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(rows_of(bank, ids)) == set(ids)
    finally:
        svc.stop()
