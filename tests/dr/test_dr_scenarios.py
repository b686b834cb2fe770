"""Scenario files, their errors, statistics and the GB/T 20988 levels (no platform needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataplat.cli import main
from dataplat.dr.failover import gbt20988_level
from dataplat.dr.results import distribution
from dataplat.dr.scenario import (
    KINDS,
    SCENARIO_DIR,
    DrillKind,
    ScenarioError,
    Target,
    load_scenario,
    register_kind,
    scenario_paths,
)

SHIPPED = {
    "failover-postmaster-kill",
    "failover-host-loss",
    "switchover",
    "table-restore",
    "lake-rollback",
    "stream-crash",
    "serving-worker",
}


def test_every_shipped_scenario_loads():
    names = {load_scenario(p).name for p in scenario_paths()}
    assert SHIPPED <= names
    sc = load_scenario(SCENARIO_DIR / "failover-host-loss.yml")
    assert sc.kind == "failover" and sc.fault_type == "host-loss"
    assert any(t.bound == "ttl + 5" for t in sc.targets)
    assert KINDS["serving-worker"].faults == ("worker-kill",)


def test_drill_list_prints_the_scenarios(capsys):
    assert main(["drill", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert SHIPPED <= {r["name"] for r in rows}
    assert all("error" not in r for r in rows)


BAD = """\
name: broken
kind: failover
fault:
  type: meteor-strike
workload:
  clients: many
  surprise: 1
checks: [rpo, telepathy]
targets:
  rto_s: {median: fast}
  weather: {max: 1}
timeouts:
  failover_s: -3
"""


def test_malformed_scenario_names_file_line_and_field(tmp_path: Path):
    path = tmp_path / "broken.yml"
    path.write_text(BAD)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    where = {(p.line, p.field) for p in err.value.problems}
    assert (4, "fault.type") in where
    assert (6, "workload.clients") in where
    assert (7, "workload.surprise") in where
    assert (8, "checks[1]") in where
    assert (10, "targets.rto_s.median") in where
    assert (11, "targets.weather") in where
    assert (13, "timeouts.failover_s") in where
    assert f"{path}:4: fault.type" in str(err.value)
    assert err.value.exit_code == 2


def test_cli_exits_2_on_a_malformed_scenario(tmp_path: Path, capsys):
    path = tmp_path / "broken.yml"
    path.write_text(BAD)
    assert main(["drill", "run", str(path), "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6: workload.clients: must be int" in err


def test_yaml_syntax_error_and_unknown_kind(tmp_path: Path, capsys):
    bad_yaml = tmp_path / "syntax.yml"
    bad_yaml.write_text("name: x\nkind: failover\nfault: {type: [unclosed\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad_yaml)
    assert err.value.problems[0].line is not None
    unknown = tmp_path / "unknown.yml"
    unknown.write_text("name: x\nkind: volcano\n")
    with pytest.raises(ScenarioError, match=r"unknown.yml:2: kind: unknown kind 'volcano'"):
        load_scenario(unknown)
    assert main(["drill", "run", "no-such-drill"]) == 2
    assert "no scenario named 'no-such-drill'" in capsys.readouterr().err


def test_registry_stays_open_for_new_kinds(tmp_path: Path):
    register_kind(DrillKind(name="scaling-test", run="tests:none", faults=("add-node",), metrics=("x_s",)))
    try:
        path = tmp_path / "s.yml"
        path.write_text("kind: scaling-test\nfault: {type: add-node}\ntargets: {x_s: {max: 1}}\n")
        sc = load_scenario(path)
        assert sc.name == "s" and sc.targets == (Target("x_s", "max", 1.0),)
    finally:
        KINDS.pop("scaling-test")


def test_distribution_and_target_expressions():
    d = distribution([3.0, 1.0, 2.0, 10.0])
    assert d == {"n": 4, "min": 1.0, "median": 2.5, "p95": 10.0, "max": 10.0}
    assert distribution([])["median"] is None
    assert Target("rto_s", "max", "ttl + 5").resolve({"ttl": 20}) == 25
    assert Target("rto_s", "max", 4.0).resolve({}) == 4


def test_gbt20988_levels():
    assert gbt20988_level(7.5, 0.0)["level"] == 6
    assert gbt20988_level(3600.0, 0.0)["level"] == 5
    assert gbt20988_level(3600.0, 600.0)["level"] == 5
    assert gbt20988_level(3600.0, 7200.0)["level"] == 4
    assert gbt20988_level(5 * 86400.0, 7200.0)["level"] == 3
    assert gbt20988_level(5 * 86400.0, 3 * 86400.0)["level"] == 2
    assert gbt20988_level(None, 0.0)["level"] is None
