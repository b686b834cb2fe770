"""The decision service as a real process: decisions, idempotency, validation, load shedding,
metrics, and events from JetStream to decisions on the DECISIONS stream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from decision_testkit import TEST_PREFIX, get, metric, post

EVENT_TYPES = ("payroll_credited", "large_inflow", "product_maturity", "transfer_out_other_bank", "app_login")
STRATEGY_OF = {
    "payroll_credited": "inflow",
    "large_inflow": "inflow",
    "product_maturity": "retention",
    "transfer_out_other_bank": "retention",
    "app_login": "engagement",
}
RESPONSE_KEYS = {
    "event_id", "customer_id", "decision_id", "offer", "channel", "score", "degraded", "reasons", "strategy",
    "latency_ms", "replayed",
}  # fmt: skip


def new_id() -> str:
    return f"{TEST_PREFIX}{uuid.uuid4().hex[:16]}"


def stored_rows(home: Path, event_id: str, within_s: float = 10.0) -> list[tuple]:
    """The warehouse rows of ``event_id``, once the sink has written it (it follows the
    DECISIONS stream a moment after the answer), or none after ``within_s``."""
    import psycopg

    from dataplat.platform import endpoints

    deadline = time.monotonic() + within_s
    with psycopg.connect(endpoints.warehouse_conninfo(home), autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT event_id, customer_id, event_type, offer, channel, score, degraded, reason "
                "FROM bank.decisions WHERE event_id = %s",
                (event_id,),
            ).fetchall()
            if rows or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_a_decision_for_each_event_type(service, bank, customers, event_type) -> None:  # type: ignore[no-untyped-def]
    event_id = new_id()
    customer = customers[EVENT_TYPES.index(event_type) * 7 % len(customers)]
    status, doc, _ = post(
        service.url + "/v1/decisions",
        {"event_id": event_id, "type": event_type, "customer_id": customer, "amount": 250000.0,
         "ts": "2026-11-23T10:15:00+08:00", "attributes": {"source": "test"}},
    )  # fmt: skip
    assert status == 200, doc
    assert set(doc) == RESPONSE_KEYS
    assert doc["event_id"] == event_id and doc["customer_id"] == customer
    assert doc["strategy"] == STRATEGY_OF[event_type]
    assert doc["replayed"] is False and doc["degraded"] is False
    assert doc["channel"] in ("app_push", "sms", "rm_task", None)
    assert set(doc["offer"]) == {"product_id", "name"}
    assert (doc["channel"] is None) == (doc["offer"]["product_id"] is None)
    if doc["channel"] is not None:
        assert isinstance(doc["score"], float) and 0.0 <= doc["score"] <= 1.0
        assert doc["offer"]["name"]
    assert doc["reasons"] and all(isinstance(r, str) for r in doc["reasons"])
    assert doc["latency_ms"] > 0
    uuid.UUID(doc["decision_id"])
    rows = stored_rows(bank, event_id)
    assert len(rows) == 1
    _, cust, etype, offer, channel, score, degraded, reason = rows[0]
    assert (cust, etype, offer, channel, degraded) == (customer, event_type, doc["offer"]["product_id"],
                                                        doc["channel"], False)  # fmt: skip
    assert score == doc["score"]
    assert json.loads(reason)["strategy"] == doc["strategy"]


def test_the_same_event_id_gives_the_same_decision_once(service, bank, customers) -> None:  # type: ignore[no-untyped-def]
    event = {"event_id": new_id(), "type": "payroll_credited", "customer_id": customers[3], "amount": 9000}
    status, first, _ = post(service.url + "/v1/decisions", event)
    assert status == 200 and first["replayed"] is False
    # again, sequentially and then concurrently: always the stored decision, marked replayed
    status, again, _ = post(service.url + "/v1/decisions", {**event, "amount": 1})
    assert status == 200 and again["replayed"] is True

    async def burst() -> list[dict]:
        import aiohttp

        async with aiohttp.ClientSession() as s:

            async def one() -> dict:
                async with s.post(service.url + "/v1/decisions", json=event) as r:
                    assert r.status == 200
                    return await r.json()

            return await asyncio.gather(*(one() for _ in range(5)))

    same = ("decision_id", "offer", "channel", "score", "degraded", "strategy", "reasons", "customer_id")
    for doc in [again, *asyncio.run(burst())]:
        assert doc["replayed"] is True
        assert {k: doc[k] for k in same} == {k: first[k] for k in same}
    assert len(stored_rows(bank, event["event_id"])) == 1


def test_concurrent_first_requests_record_one_decision(service, bank, customers) -> None:  # type: ignore[no-untyped-def]
    event = {"event_id": new_id(), "type": "large_inflow", "customer_id": customers[5], "amount": 500000}

    async def burst() -> list[dict]:
        import aiohttp

        async with aiohttp.ClientSession() as s:

            async def one() -> dict:
                async with s.post(service.url + "/v1/decisions", json=event) as r:
                    assert r.status == 200
                    return await r.json()

            return await asyncio.gather(*(one() for _ in range(4)))

    docs = asyncio.run(burst())
    assert sum(not d["replayed"] for d in docs) == 1
    assert len({(d["decision_id"], d["channel"], d["offer"]["product_id"]) for d in docs}) == 1
    assert len(stored_rows(bank, event["event_id"])) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        ([1, 2], "body"),
        ({"type": "app_login", "customer_id": 1}, "event_id"),
        ({"event_id": "", "type": "app_login", "customer_id": 1}, "event_id"),
        ({"event_id": "x" * 129, "type": "app_login", "customer_id": 1}, "event_id"),
        ({"event_id": "a\nb", "type": "app_login", "customer_id": 1}, "event_id"),
        ({"event_id": "e", "type": "salary", "customer_id": 1}, "type"),
        ({"event_id": "e", "type": "app_login", "customer_id": "12"}, "customer_id"),
        ({"event_id": "e", "type": "app_login", "customer_id": True}, "customer_id"),
        ({"event_id": "e", "type": "app_login", "customer_id": 1, "ts": "yesterday"}, "ts"),
        ({"event_id": "e", "type": "app_login", "customer_id": 1, "amount": -5}, "amount"),
        ({"event_id": "e", "type": "app_login", "customer_id": 1, "amount": "5"}, "amount"),
        ({"event_id": "e", "type": "app_login", "customer_id": 1, "attributes": [1]}, "attributes"),
        (
            {"event_id": TEST_PREFIX + "nobody", "type": "app_login", "customer_id": 9_000_000_000},
            "customer_id",
        ),
    ],
)
def test_a_malformed_event_gets_422_naming_the_field(service, body, field) -> None:  # type: ignore[no-untyped-def]
    status, doc, _ = post(service.url + "/v1/decisions", body)
    assert status == 422, doc
    assert doc["field"] == field
    assert doc["error"]


def test_health_readiness_and_metrics(service) -> None:  # type: ignore[no-untyped-def]
    assert get(service.url + "/healthz")[0] == 200
    status, body = get(service.url + "/readyz")
    assert status == 200
    assert json.loads(body) == {"ready": True, "warehouse": True, "stream": True, "catalog": True}
    status, body = get(service.url + "/metrics")
    text = body.decode()
    assert status == 200
    assert metric(text, "dataplat_decision_requests_total", source="http", outcome="decided") >= 1
    assert metric(text, "dataplat_decision_requests_total", source="http", outcome="invalid") >= 1
    assert metric(text, "dataplat_decision_scored_total", pool="cpu") >= 1
    assert "dataplat_decision_stage_seconds_bucket" in text
    assert get(service.url + "/nothing")[0] == 404


def test_overload_is_shed_with_503_and_retry_after(service, customers) -> None:  # type: ignore[no-untyped-def]
    """The service admits 8 decisions at once (--max-inflight 8): a burst of 80 is shed, not queued."""

    async def burst() -> list[tuple[int, str | None]]:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as s:

            async def one(i: int) -> tuple[int, str | None]:
                event = {
                    "event_id": new_id(),
                    "type": "app_login",
                    "customer_id": customers[i % len(customers)],
                }
                async with s.post(service.url + "/v1/decisions", json=event) as r:
                    await r.read()
                    return r.status, r.headers.get("Retry-After")

            return await asyncio.gather(*(one(i) for i in range(80)))

    results = asyncio.run(burst())
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) > 0 and statuses.count(200) > 0
    assert all(ra == "1" for s, ra in results if s == 503)
    # and it keeps deciding afterwards
    status, doc, _ = post(service.url + "/v1/decisions", {"event_id": new_id(), "type": "app_login",
                                                           "customer_id": customers[0]})  # fmt: skip
    assert status == 200, doc


def test_an_event_on_the_stream_becomes_a_decision_on_the_stream(service, bank, customers) -> None:  # type: ignore[no-untyped-def]
    import nats

    from dataplat.platform import endpoints

    servers = endpoints.nats_servers(endpoints.load_platform(bank))
    ids = [new_id() for _ in range(5)]

    async def scenario() -> dict[str, tuple[float, dict, str, dict]]:
        nc = await nats.connect(servers=servers, connect_timeout=5)
        got: dict[str, tuple[float, dict, str, dict]] = {}
        done = asyncio.Event()

        async def on_decision(msg) -> None:  # type: ignore[no-untyped-def]
            doc = json.loads(msg.data)
            if doc["event_id"] in ids:
                got[doc["event_id"]] = (time.time(), doc, msg.subject, dict(msg.headers or {}))
                if len(got) == len(ids):
                    done.set()

        try:
            sub = await nc.subscribe("bank.decisions.>", cb=on_decision)
            js = nc.jetstream()
            # a malformed event first: it is dropped and the consumer goes on
            await js.publish("bank.events.app_login", b"{broken", headers={"Nats-Msg-Id": new_id()})
            for i, event_id in enumerate(ids):
                etype = EVENT_TYPES[i]
                event = {"event_id": event_id, "type": etype, "customer_id": customers[20 + i],
                         "amount": 80000, "published_at": time.time()}  # fmt: skip
                await js.publish(
                    f"bank.events.{etype}", json.dumps(event).encode(), headers={"Nats-Msg-Id": event_id}
                )
            async with asyncio.timeout(20):
                await done.wait()
            await sub.unsubscribe()
        finally:
            await nc.close()
        return got

    got = asyncio.run(scenario())
    assert set(got) == set(ids)
    latencies = []
    for event_id, (received, doc, subject, headers) in got.items():
        assert subject == f"bank.decisions.{doc['channel'] or 'none'}"
        assert headers.get("Nats-Msg-Id") == event_id
        assert RESPONSE_KEYS <= set(doc)
        assert doc["event_published_at"] <= doc["decided_at"] <= received + 1.0
        latencies.append(received - doc["event_published_at"])
        assert len(stored_rows(bank, event_id)) == 1
    print(f"stream end-to-end latency: max {max(latencies) * 1000:.1f} ms over {len(latencies)} events")
    assert max(latencies) < 10.0
    text = get(service.url + "/metrics")[1].decode()
    assert metric(text, "dataplat_decision_e2e_seconds_count") >= 1
    assert metric(text, "dataplat_decision_requests_total", source="stream", outcome="invalid") >= 1
