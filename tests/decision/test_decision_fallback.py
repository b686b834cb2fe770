"""Pool fallback: the accelerator pool goes down -> the CPU pool scores; every pool down ->
rules only, decisions marked degraded (answers, not errors). A service of its own, with two
pools of its own, so stopping them does not disturb the other tests."""

from __future__ import annotations

import uuid

from decision_testkit import TEST_PREFIX, get, metric, post, start_service
from serving_testkit import free_port, start_server


def decide(url: str, customer: int) -> dict:
    event = {"event_id": f"{TEST_PREFIX}{uuid.uuid4().hex[:16]}", "type": "payroll_credited",
             "customer_id": customer, "amount": 12000}  # fmt: skip
    status, doc, _ = post(url + "/v1/decisions", event)
    assert status == 200, doc
    return doc


def scored_by(url: str, pool: str) -> float:
    return metric(get(url + "/metrics")[1].decode(), "dataplat_decision_scored_total", pool=pool)


def test_falls_back_to_the_cpu_pool_then_to_rules_only(bank, model_repo, decision_work, customers) -> None:  # type: ignore[no-untyped-def]
    accel = start_server(model_repo, decision_work, "decision-pool-accel", workers=1, pool="accel")
    cpu = start_server(model_repo, decision_work, "decision-pool-cpu", workers=1, pool="cpu")
    service = None
    try:
        service = start_service(
            bank, decision_work, "decision-fallback", free_port(),
            [f"accel={accel.url},10", f"cpu={cpu.url},100"],
            ["--no-consumer", "--score-timeout-ms", "200", "--score-deadline-ms", "400"],
        )  # fmt: skip
        url = service.url
        first = decide(url, customers[1])
        assert first["degraded"] is False
        assert scored_by(url, "accel") == 1 and scored_by(url, "cpu") == 0

        accel.stop()
        for i in range(4):
            doc = decide(url, customers[2 + i])
            assert doc["degraded"] is False, doc
        assert scored_by(url, "cpu") == 4

        cpu.stop()
        for i in range(3):
            doc = decide(url, customers[10 + i])
            assert doc["degraded"] is True, doc
            assert doc["score"] is None
            assert any("rules only" in r for r in doc["reasons"]), doc["reasons"]
        assert scored_by(url, "none") == 3
        # still ready: the warehouse and the stream answer, decisions go on without the model
        assert get(url + "/readyz")[0] == 200
    finally:
        if service is not None:
            service.stop()
        accel.stop()
        cpu.stop()
