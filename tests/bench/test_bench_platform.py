"""The batch and concurrent suites against the real platform (warehouse and lake), the run
folder, and ``dataplat report`` over two runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataplat.bench import batch
from dataplat.bench.context import BENCH_DIR, BenchContext, BenchSettings
from dataplat.bench.engines import LakeEngine, WarehouseEngine
from dataplat.bench.runner import run_bench
from dataplat.bench.slo import load_slo
from dataplat.platform import endpoints

pytestmark = pytest.mark.platform


def _engines(home: Path, schema: str) -> tuple[WarehouseEngine, LakeEngine]:
    catalog, namespace = endpoints.lake_catalog(home)
    return WarehouseEngine(endpoints.warehouse_conninfo(home), schema), LakeEngine(
        catalog, namespace, "bank", schema
    )


def test_batch_jobs_on_both_engines_hold_their_invariants(
    bank: Path, bench_schema: str, tmp_path: Path
) -> None:
    settings = BenchSettings(bench_schema=bench_schema, jobs=("customer_tags", "payroll_customers"))
    ctx = BenchContext(bank, settings, tmp_path)
    jobs = batch.load_jobs(BENCH_DIR / "batch", settings.jobs)
    assert [j.name for j in jobs] == ["aum_snapshot", "customer_tags", "payroll_customers"]
    entry = batch.run_at_current_sf(ctx, jobs)
    runs = {(j["job"], j["engine"]): j for j in entry["jobs"]}
    assert len(runs) == 6
    for (job, engine), r in runs.items():
        assert r["error"] is None, (job, engine, r["error"])
        assert r["checks"] and all(c["passed"] for c in r["checks"]), (job, engine, r["checks"])
        assert r["seconds"] > 0 and r["rows_per_s"] > 0
    for job in ("aum_snapshot", "customer_tags", "payroll_customers"):
        # the same SQL gives the same rows on both engines
        assert runs[(job, "warehouse")]["rows_out"] == runs[(job, "lake")]["rows_out"] > 0
        assert entry["faster"][job]["engine"] in ("warehouse", "lake")
    assert entry["engines"]["lake"]["sources"]["customers"].startswith(("parquet", "arrow"))


def test_invariant_is_seen_to_fail_on_corrupted_data(bank: Path, bench_schema: str) -> None:
    jobs = {j.name: j for j in batch.load_jobs(BENCH_DIR / "batch", ("lifecycle_stage",))}
    wh, lake = _engines(bank, bench_schema)
    with wh, lake:
        for engine in (wh, lake):
            for name in ("aum_snapshot", "lifecycle_stage"):
                assert batch.run_job(engine, jobs[name], "bank", bench_schema).passed
            # corrupt our own outputs: one customer's AUM off by a cent, one customer with two stages
            engine.execute(
                f'UPDATE "{bench_schema}".aum_snapshot SET aum = aum + 0.01 '
                f'WHERE customer_id = (SELECT MIN(customer_id) FROM "{bench_schema}".aum_snapshot)'
            )
            engine.execute(
                f'INSERT INTO "{bench_schema}".lifecycle_stage '
                f"SELECT customer_id, branch_id, 'mature' FROM \"{bench_schema}\".lifecycle_stage "
                f"ORDER BY customer_id LIMIT 1"
            )
            aum = {c.name: c for c in batch.run_checks(engine, jobs["aum_snapshot"], "bank", bench_schema)}
            assert not aum["total_equals_holdings_plus_balances"].passed, engine.name
            assert not aum["parts_add_up"].passed and "customer_id=1" in aum["parts_add_up"].detail
            assert aum["one_row_per_customer"].passed
            stage = {
                c.name: c for c in batch.run_checks(engine, jobs["lifecycle_stage"], "bank", bench_schema)
            }
            assert not stage["exactly_one_stage_per_customer"].passed, engine.name
            assert "stages=2" in stage["exactly_one_stage_per_customer"].detail


def test_concurrent_step_with_pgbench_beside(bank: Path, bench_schema: str, tmp_path: Path) -> None:
    slo_file = tmp_path / "slo.yml"
    slo_file.write_text(
        "name: test\ntargets:\n"
        "  - concurrent.qps_ratio_vs_pgbench >= 0.01\n"
        "  - concurrent.errors <= 0\n"
        "  - concurrent.customer_360.p99_ms <= 60000 at concurrency 4\n"
    )
    settings = BenchSettings(steps=(1, 4), duration_s=2.0, bench_schema=bench_schema)
    result = run_bench("concurrent", bank, settings, load_slo(slo_file))
    doc = json.loads((result.run_dir / "results.json").read_text())
    assert doc["schema"] == "dataplat.bench/v1"
    section = doc["suites"]["concurrent"]
    assert section["status"] == "ok", section.get("error")
    assert [s["concurrency"] for s in section["steps"]] == [1, 4]
    from hdrh.histogram import HdrHistogram

    for step in section["steps"]:
        h, pg = step["harness"], step["pgbench"]
        assert h["count"] > 0 and pg["count"] > 0 and h["errors"] == 0 and pg["errors"] == 0
        assert step["qps_ratio_vs_pgbench"] == pytest.approx(h["qps"] / pg["qps"], rel=1e-3)
        assert set(h["per_query"]) == {"audience_by_tags", "branch_dashboard", "customer_360"}
        assert HdrHistogram.decode(h["histogram"].encode()).get_total_count() == h["count"]
        assert h["latency_ms"]["p50_ms"] <= h["latency_ms"]["p99_ms"] <= h["latency_ms"]["max_ms"]
        logs = list(
            (result.run_dir / "raw" / "concurrent" / f"c{step['concurrency']:03d}-pgbench").glob(
                "pgbench_log*"
            )
        )
        assert len(logs) == step["concurrency"]
    assert {v["scope"] for v in doc["verdicts"]} == {"concurrency 1", "concurrency 4"}
    assert result.exit_code == 0, doc["verdicts"]
    html = (result.run_dir / "report.html").read_text()
    assert "<svg" in html and "pgbench" in html


def test_cli_batch_run_twice_then_report(bank: Path, cli_main, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    slo_file = tmp_path / "slo.yml"
    slo_file.write_text("targets:\n  - batch.aum_snapshot.seconds <= 600\n")
    idents = []
    for _ in range(2):
        rc = cli_main(
            ["bench", "run", "--suite", "batch", "--jobs", "aum_snapshot", "--slo", str(slo_file),
             "--home", str(bank), "--json"]
        )  # fmt: skip
        doc = json.loads(capsys.readouterr().out)
        assert rc == 0 == doc["exit_code"], doc["failures"] or doc["verdicts"]
        assert Path(doc["run_dir"]).name == doc["ident"] and doc["ident"].endswith("-batch")
        assert len(doc["verdicts"]) == 2  # one per engine
        idents.append(doc["ident"])
    out = tmp_path / "compare.html"
    assert cli_main(["report", *idents, "--home", str(bank), "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["ident"] for r in data["runs"]] == idents
    assert all("aum_snapshot/warehouse" in next(iter(r["batch_seconds"].values())) for r in data["runs"])
    text = out.read_text()
    assert "<svg" in text and all(i in text for i in idents)


def test_cli_bad_slo_exits_2_before_running(bank: Path, cli_main, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    slo_file = tmp_path / "bad.yml"
    slo_file.write_text("targets:\n  - concurrent.p99_ms <= fast\n")
    before = set((bank / "bench").glob("*")) if (bank / "bench").exists() else set()
    assert (
        cli_main(["bench", "run", "--suite", "concurrent", "--slo", str(slo_file), "--home", str(bank)]) == 2
    )
    err = capsys.readouterr().err
    assert f"{slo_file}:2: targets[0]:" in err
    after = set((bank / "bench").glob("*")) if (bank / "bench").exists() else set()
    assert after == before
