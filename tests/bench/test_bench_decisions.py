"""The decisions suite on the real platform: a short real Locust run against the deployed
decision service, the stream path's end-to-end latency on a few events, an SLO verdict."""

from __future__ import annotations

import time
from pathlib import Path

from dataplat.bench import decisions
from dataplat.bench.cpu import LOADGEN, CpuMeter
from dataplat.bench.locustrun import LocustRun, run_locust
from dataplat.bench.slo import judge, parse_target
from dataplat.platform import endpoints


def test_locust_step_and_stream_e2e(bank: Path, tmp_path: Path) -> None:
    url = decisions.decision_url(bank)
    decisions.wait_http(url + "/readyz", timeout_s=30)
    customers = decisions.customer_range(endpoints.warehouse_conninfo(bank))

    spec = LocustRun(
        decisions.LOCUSTFILE,
        url,
        steps=[4],
        step_s=5,
        out_dir=tmp_path / "raw",
        name="service",
        processes=1,
        env={"DATAPLAT_CUSTOMER_MIN": str(customers[0]), "DATAPLAT_CUSTOMER_MAX": str(customers[1])},
    )
    meter = CpuMeter.for_platform(bank)
    meter.start()
    result = run_locust(spec)
    meter.stop()
    assert not result.timed_out
    assert result.exit_code == 0, Path(result.files["log"]).read_text()[-2000:]
    assert Path(result.files["history"]).stat().st_size > 0
    (step,) = result.steps
    assert step["users"] == 4
    assert step["requests"] > 0
    assert step["error_rate"] is not None and step["error_rate"] <= 0.01
    assert step["rps"] and step["rps"] > 0
    p = [step[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
    assert all(v is not None for v in p), step
    assert p == sorted(p)
    assert result.total["requests"] >= step["requests"]

    stream = decisions.stream_e2e(bank, n=10, rate=20.0, customers=customers, timeout_s=20)
    assert stream["decided"] == 10, stream
    rc = stream["received_ms"]
    assert 0 < rc["p50_ms"] <= rc["p99_ms"] <= rc["max_ms"]
    assert stream["decided_ms"]["p50_ms"] <= rc["p50_ms"]

    # where the CPU went: every process on the decision path used some, per request answered
    cpu = meter.report(result.total["requests"])
    for group in ("decision", "serving", "stream", "warehouse", LOADGEN):
        assert cpu["groups"][group]["cpu_ms_per_request"] > 0, (group, cpu)
    assert 0 < cpu["total_cores"] <= cpu["cores_available"] * 1.05, cpu

    section = {"service": decisions._side(result), "stream": stream, "saturation_rps": result.saturation_rps}
    section["service"]["cpu"] = cpu
    for text in ("decisions.p99_ms <= 1000 at concurrency 4", "decisions.e2e_lost <= 0"):
        target = parse_target(text)
        assert decisions.check_metric(target.metric, target, Path()) is None
        (verdict,) = judge(target, decisions.measure(section, target))
        assert verdict.value is not None and verdict.met, verdict
    bad = parse_target("decisions.saturation_rps >= 1 at concurrency 4")
    assert decisions.check_metric(bad.metric, bad, Path()) is not None
    assert decisions.failures(section) == []
    html = decisions.render_html(section)
    assert "Real-time decisions" in html and "Stream path" in html
    assert "Where the CPU went" in html and "CPU milliseconds per request" in html


def test_cpu_meter_counts_a_busy_process_in_its_group() -> None:
    """A child that spins for 0.6 s of processor time, then sleeps: its group gets that time."""
    import subprocess
    import sys

    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\ntime.sleep(5)"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        meter = CpuMeter({"busy": [busy.pid]}, loadgen_root=None)
        meter.start()
        time.sleep(2.0)
        used = meter.stop()
    finally:
        busy.kill()
        busy.wait(5)
    assert 0.3 <= used["busy"] <= 1.0, used
    rep = meter.report(10)
    assert rep["groups"]["busy"]["cpu_ms_per_request"] == round(used["busy"] * 100, 4)
    assert rep["groups"]["busy"]["cores"] > 0.1
