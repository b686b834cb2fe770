"""SLO files and verdicts: parsing, every problem at once with file/line/field, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataplat.bench.context import BenchSettings
from dataplat.bench.runner import BenchResult, judge_all
from dataplat.bench.slo import SloError, judge, load_slo, parse_target


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slo.yml"
    path.write_text(text)
    return path


def test_default_slo_is_valid() -> None:
    from dataplat.bench.slo import DEFAULT_SLO

    slo = load_slo(DEFAULT_SLO)
    assert any(t.metric == "qps_ratio_vs_pgbench" and t.op == ">=" for t in slo.targets)


def test_target_grammar() -> None:
    t = parse_target("concurrent.p99_ms <= 50 at concurrency 16")
    assert (t.suite, t.metric, t.op, t.bound, t.concurrency, t.engine) == (
        "concurrent",
        "p99_ms",
        "<=",
        50,
        16,
        None,
    )
    t = parse_target("batch.aum_snapshot.seconds < 2.5 on lake")
    assert (t.metric, t.bound, t.engine) == ("aum_snapshot.seconds", 2.5, "lake")
    assert t.holds(2.4) and not t.holds(2.5)
    with pytest.raises(ValueError):
        parse_target("p99 under 50")


def test_malformed_slo_lists_every_problem_with_file_line_and_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "name: broken\n"
        "colour: blue\n"
        "targets:\n"
        "  - concurrent.p99_ms <= 50 at concurrency 16\n"
        "  - concurrent.p99 <= 50\n"
        "  - batch.no_such_job.seconds <= 3\n"
        "  - warp.speed >= 9\n"
        "  - latency should be low\n"
        "  - 42\n",
    )
    with pytest.raises(SloError) as err:
        load_slo(path)
    problems = {p.field: p for p in err.value.problems}
    assert set(problems) == {"colour", "targets[1]", "targets[2]", "targets[3]", "targets[4]", "targets[5]"}
    assert problems["colour"].line == 2
    assert problems["targets[1]"].line == 5 and "unknown metric" in problems["targets[1]"].message
    assert problems["targets[2]"].line == 6 and "unknown job 'no_such_job'" in problems["targets[2]"].message
    assert "unknown suite 'warp'" in problems["targets[3]"].message
    assert problems["targets[5]"].line == 9
    text = str(err.value)
    assert f"{path}:5: targets[1]:" in text and err.value.exit_code == 2


def test_slo_that_is_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(SloError) as err:
        load_slo(_write(tmp_path, "targets: [a, b\n"))
    assert err.value.problems[0].field == "(file)" and err.value.problems[0].line


def test_judge_met_missed_and_not_measured() -> None:
    t = parse_target("concurrent.qps_ratio_vs_pgbench >= 0.8")
    verdicts = judge(t, [("concurrency 1", 0.95), ("concurrency 4", 0.7), ("concurrency 16", None)])
    assert [v.met for v in verdicts] == [True, False, False]
    assert verdicts[2].detail == "not measured"
    assert judge(t, [])[0].met is False


def _result(tmp_path: Path, suite: str, suites: dict, slo_text: str | None = None) -> BenchResult:
    slo = load_slo(_write(tmp_path, slo_text)) if slo_text else None
    r = BenchResult("x", suite, tmp_path, "now", BenchSettings(), slo, suites=suites)
    judge_all(r)
    return r


def _concurrent(ratio: float, p99: float) -> dict:
    side = {"qps": 100.0, "errors": 0, "latency_ms": {"p99_ms": p99}, "per_query": {}}
    return {"status": "ok", "steps": [{"concurrency": 4, "harness": side, "qps_ratio_vs_pgbench": ratio}]}


def test_exit_codes(tmp_path: Path) -> None:
    slo = (
        "targets:\n  - concurrent.qps_ratio_vs_pgbench >= 0.8\n  - concurrent.p99_ms <= 10 at concurrency 4\n"
    )
    assert _result(tmp_path, "concurrent", {"concurrent": _concurrent(0.9, 5)}, slo).exit_code == 0
    missed = _result(tmp_path, "concurrent", {"concurrent": _concurrent(0.9, 50)}, slo)
    assert missed.exit_code == 1 and missed.outcome == "missed"
    assert (
        _result(tmp_path, "concurrent", {"concurrent": {"status": "error", "error": "x"}}, slo).exit_code == 2
    )
    unavailable = {"status": "unavailable", "error": "not available yet"}
    assert _result(tmp_path, "decisions", {"decisions": unavailable}).exit_code == 2
    # `all` skips a suite that is not available yet, and judges the rest
    both = {"concurrent": _concurrent(0.9, 5), "decisions": unavailable}
    assert _result(tmp_path, "all", both, slo).exit_code == 0
    # a failed invariant misses the run even when every target is met
    batch = {
        "status": "ok",
        "sf_runs": [
            {
                "sf": 0.1,
                "jobs": [
                    {"job": "a", "engine": "lake", "seconds": 1.0, "error": None,
                     "checks": [{"name": "c", "passed": False, "detail": "violated"}]}
                ],
            }
        ],
    }  # fmt: skip
    r = _result(tmp_path, "batch", {"batch": batch})
    assert r.exit_code == 1 and "check c" in r.failures[0]
