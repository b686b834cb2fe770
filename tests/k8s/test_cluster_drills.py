"""``dataplat drill run NAME --target k8s``: drills whose faults go through the Kubernetes API.

The tests that use a cluster use the fake API of ``fakeapi.py`` because no Kubernetes API
server can run on this machine. The fake plays the controllers with timers
(``controllers=DELAY``): CloudNativePG promotes another instance when the primary's pod is
deleted and recreates the lost one; a StatefulSet pod comes back under its name; a
Deployment's pod is replaced. The tests check the API calls each drill makes, that it
measures recovery from the injection, the results it writes and its exit code. The ledger
test runs the real workload against a real local PostgreSQL whose client sessions the
fake breaks when the primary's pod is deleted. How fast CloudNativePG, NATS and the pools
really recover needs a real cluster.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fakeapi import FakeKubernetes, pod

from dataplat.cli import main
from dataplat.dr.scenario import SCENARIO_DIR, ScenarioError, load_scenario

NS = "dataplat"
DELAY = 0.3
"""Seconds the fake's controllers take for each step (promotion, pod back, pod ready)."""


def _workload(kind: str, name: str, labels: dict[str, str], replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "labels": labels, "generation": 1},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {}},
    }


def _platform(fake: FakeKubernetes) -> None:
    """What ``dataplat up --target k8s`` leaves running, as the controllers report it."""
    fake.put(
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "warehouse", "namespace": NS, "generation": 1},
            "spec": {"instances": 3},
        }
    )
    for i in (1, 2, 3):
        fake.put({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{i}"}, "spec": {}})
        fake.put(pod(f"warehouse-{i}", {"cnpg.io/cluster": "warehouse"}, node=f"node-{i}"))
    stream = {"app.kubernetes.io/name": "stream"}
    fake.put(_workload("StatefulSet", "stream", stream, 3))
    for i in range(3):
        fake.put(pod(f"stream-{i}", stream))
    serving = {"app.kubernetes.io/name": "serving", "dataplat.io/pool": "cpu"}
    fake.put(_workload("Deployment", "serving-cpu", serving, 2))
    fake.put(pod("serving-cpu-7f9c4", serving))
    fake.put(pod("serving-cpu-2b8d1", serving))
    fake.put(_workload("Deployment", "decision", {"app.kubernetes.io/name": "decision"}, 2))
    fake.mark_ready()


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(auto_ready=True, controllers=DELAY) as server:
        _platform(server)
        server.clear_requests()
        yield server


@pytest.fixture
def kubeconfig(fake: FakeKubernetes, tmp_path: Path) -> str:
    return str(fake.write_kubeconfig(tmp_path / "kubeconfig"))


def _scenario(tmp_path: Path, text: str, name: str = "k8s-drill.yml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """``dataplat drill run ... --json``; the exit code and results.json as printed."""
    code = main(["drill", "run", *args, "--home", str(tmp_path / "home"), "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


FAILOVER_API_ONLY = """\
name: k8s-failover
kind: failover
target: k8s
fault: {type: postmaster-kill}
checks: [rejoin]
targets:
  promotion_s: {max: 10}
timeouts: {failover_s: 10, rejoin_s: 10, healthy_s: 5}
"""


def test_failover_deletes_the_primary_pod_and_reports_api_level_recovery(fake, kubeconfig, tmp_path, capsys):
    """Fake API (no Kubernetes API server can run here): the scenario says ``target: k8s``;
    the drill deletes the pod named by status.currentPrimary with grace period 0, measures
    the promotion and the rejoin of every instance, and says that without a warehouse
    conninfo it measured API-level recovery only."""
    path = _scenario(tmp_path, FAILOVER_API_ONLY)
    code, res = _run(capsys, tmp_path, path, "--kubeconfig", kubeconfig, "--namespace", NS)
    assert code == 0, res
    deletes = fake.calls("DELETE")
    assert [r.path for r in deletes] == ["/api/v1/namespaces/dataplat/pods/warehouse-1"]
    assert deletes[0].query["gracePeriodSeconds"] == "0"
    rep = res["repetitions"][0]
    assert rep["info"]["old_primary"] == "warehouse-1" and rep["info"]["new_primary"] == "warehouse-2"
    assert DELAY <= rep["metrics"]["promotion_s"] < 5
    assert rep["metrics"]["rejoin_s"] >= 2 * DELAY  # the lost instance back, then ready
    assert "rto_s" not in rep["metrics"] and "API-level recovery only" in rep["info"]["not_measured"]["rto_s"]
    assert res["target"]["target"] == "k8s" and res["target"]["namespace"] == NS
    assert res["target"]["api_server"] == fake.url and "API-level recovery only" in res["target"]["measured"]
    assert {c: v["passed"] for c, v in res["checks"].items()} == {"promoted": 1, "rejoin": 1}
    html = (Path(res["run_dir"]) / "report.html").read_text()
    assert "API-level recovery only" in html and fake.url in html
    assert json.loads((Path(res["run_dir"]) / "results.json").read_text())["target"]["target"] == "k8s"


def test_the_shipped_failover_scenario_on_k8s_misses_what_it_cannot_measure(
    fake, kubeconfig, tmp_path, capsys
):
    """Fake API (no Kubernetes API server can run here): the local scenario run with
    ``--target k8s`` and no warehouse conninfo: the new primary is measured, but its RTO and
    RPO targets are not, so they are missed (exit 1) with the reason in the verdict."""
    code, res = _run(
        capsys, tmp_path, "failover-postmaster-kill", "--target", "k8s", "--kubeconfig", kubeconfig
    )
    assert code == 1
    verdicts = {v["metric"]: v for v in res["verdicts"]}
    assert not verdicts["rto_s"]["met"] and "--warehouse-conninfo" in verdicts["rto_s"]["detail"]
    assert (
        not verdicts["rpo_commits"]["met"]
        and "not measured on target k8s" in verdicts["rpo_commits"]["detail"]
    )
    assert res["repetitions"][0]["metrics"]["promotion_s"] >= DELAY
    assert set(res["repetitions"][0]["info"]["not_checked_on_k8s"]) == {"fencing", "status"}


def test_host_loss_cordons_the_node_and_switchover_promotes(fake, kubeconfig, tmp_path, capsys):
    """Fake API (no Kubernetes API server can run here): host loss cordons the primary's
    node, deletes its pod and uncordons the node after the promotion; a switchover sets
    status.targetPrimary (as ``kubectl cnpg promote``) and deletes nothing."""
    text = FAILOVER_API_ONLY.replace("postmaster-kill}", "host-loss, restart_delay_s: 0.2}")
    code, res = _run(capsys, tmp_path, _scenario(tmp_path, text), "--kubeconfig", kubeconfig)
    assert code == 0, res
    writes = [(r.method, r.path, r.body) for r in fake.writes()]
    assert writes == [
        ("PATCH", "/api/v1/nodes/node-1", {"spec": {"unschedulable": True}}),
        ("DELETE", "/api/v1/namespaces/dataplat/pods/warehouse-1", None),
        ("PATCH", "/api/v1/nodes/node-1", {"spec": {"unschedulable": None}}),
    ]
    assert res["repetitions"][0]["info"]["old_primary_node"] == "node-1"

    fake.clear_requests()  # the Cluster is healthy again with warehouse-2 as primary
    text = FAILOVER_API_ONLY.replace("postmaster-kill}", "switchover}")
    code, res = _run(capsys, tmp_path, _scenario(tmp_path, text, "switch.yml"), "--kubeconfig", kubeconfig)
    assert code == 0, res
    patch = fake.calls("PATCH", "/clusters/warehouse/status")
    assert [r.body for r in patch] == [{"status": {"targetPrimary": "warehouse-1"}}]
    assert not fake.calls("DELETE")
    rep = res["repetitions"][0]
    assert rep["info"]["old_primary"] == "warehouse-2" and rep["info"]["new_primary"] == "warehouse-1"
    assert rep["metrics"]["promotion_s"] >= DELAY


STREAM = """\
name: k8s-stream
kind: stream-crash
fault: {type: broker-kill, node: stream-1}
targets:
  replacement_s: {max: 10}
timeouts: {restart_s: 10}
"""

SERVING = """\
name: k8s-serving
kind: serving-worker
fault: {type: worker-kill}
targets:
  replacement_s: {max: 10}
timeouts: {replace_s: 10}
"""


def test_stream_crash_and_serving_worker_delete_the_right_pods(fake, kubeconfig, tmp_path, capsys):
    """Fake API (no Kubernetes API server can run here): stream-crash deletes the named pod
    of the NATS StatefulSet and measures until it is back under its name and ready;
    serving-worker deletes the first ready pod of the first serving pool Deployment and
    measures until the Deployment is available again without it."""
    code, res = _run(
        capsys, tmp_path, _scenario(tmp_path, STREAM), "--target", "k8s", "--kubeconfig", kubeconfig
    )
    assert code == 0, res
    assert [r.path for r in fake.calls("DELETE")] == ["/api/v1/namespaces/dataplat/pods/stream-1"]
    rep = res["repetitions"][0]
    assert DELAY <= rep["metrics"]["replacement_s"] < 5
    assert fake.get("Pod", "stream-1")["metadata"]["uid"] != rep["info"]["fault"]["uid"]
    assert "NATS client URL" in rep["info"]["not_measured"]["lost_acked"]

    fake.clear_requests()
    code, res = _run(
        capsys, tmp_path, _scenario(tmp_path, SERVING), "--target", "k8s", "--kubeconfig", kubeconfig
    )
    assert code == 0, res
    assert [r.path for r in fake.calls("DELETE")] == ["/api/v1/namespaces/dataplat/pods/serving-cpu-2b8d1"]
    rep = res["repetitions"][0]
    assert DELAY <= rep["metrics"]["replacement_s"] < 5
    assert {p["metadata"]["name"] for p in fake.of_kind("Pod") if "serving" in p["metadata"]["name"]} >= {
        "serving-cpu-7f9c4"
    } and fake.get("Pod", "serving-cpu-2b8d1") is None
    assert len([p for p in fake.of_kind("Pod") if p["metadata"]["name"].startswith("serving-cpu-")]) == 2
    assert res["checks"] == {"worker_replaced": {"passed": 1, "failed": 0}}


def test_scaling_scales_through_the_scale_subresource_and_back(fake, kubeconfig, tmp_path, capsys):
    """Fake API (no Kubernetes API server can run here): the fault part of the scaling drill
    scales the Deployment through its scale subresource, waits until ready, scales it back;
    the load part is reported as needing the decision service's URL."""
    text = """\
name: k8s-scaling
kind: scaling
target: k8s
k8s: {deployment: decision, replicas: 4}
fault: {type: step-load}
targets:
  scaled_ready_s: {max: 10}
"""
    code, res = _run(capsys, tmp_path, _scenario(tmp_path, text), "--kubeconfig", kubeconfig)
    assert code == 0, res
    assert [r.body for r in fake.calls("PATCH", "/deployments/decision/scale")] == [
        {"spec": {"replicas": 4}},
        {"spec": {"replicas": 2}},
    ]
    rep = res["repetitions"][0]
    assert rep["info"]["baseline_replicas"] == 2 and rep["info"]["scale_out"]["value"] == "4"
    assert "decision service's URL" in rep["info"]["not_measured"]["scale_out_reaction_s"]


def test_could_not_run_on_k8s_is_exit_2(fake, kubeconfig, tmp_path, capsys):
    """Fake API (no Kubernetes API server can run here): a kind that runs only locally, a
    namespace without the warehouse, a conninfo holding a password (never printed), and
    cluster options without ``--target k8s`` all give exit code 2."""
    code, res = _run(capsys, tmp_path, "table-restore", "--target", "k8s", "--kubeconfig", kubeconfig)
    assert code == 2 and "local platform only" in res["error"]
    code, res = _run(
        capsys,
        tmp_path,
        _scenario(tmp_path, FAILOVER_API_ONLY),
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        "nope",
    )
    assert (
        code == 2 and "no CloudNativePG Cluster warehouse in namespace nope" in res["repetitions"][0]["error"]
    )
    assert not fake.writes()
    code = main(
        ["drill", "run", _scenario(tmp_path, FAILOVER_API_ONLY), "--kubeconfig", kubeconfig,
         "--warehouse-conninfo", "host=db password=s3cret", "--home", str(tmp_path / "home")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "must not hold a password" in err and "s3cret" not in err
    code = main(["drill", "run", "stream-crash", "--namespace", NS, "--home", str(tmp_path / "home")])
    assert code == 2 and "--namespace need --target k8s" in capsys.readouterr().err


def test_a_bad_target_and_k8s_section_are_reported_with_file_line_and_field(tmp_path, capsys):
    """No cluster needed: the scenario is validated before anything is contacted."""
    path = _scenario(
        tmp_path,
        """\
name: bad-target
kind: failover
target: kubernetes
k8s:
  namespace: 3
  colour: red
  warehouse_conninfo: host=db password=x
fault: {type: postmaster-kill}
""",
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    found = {(p.field, p.line) for p in err.value.problems}
    assert found == {("target", 3), ("k8s.namespace", 5), ("k8s.colour", 6), ("k8s.warehouse_conninfo", 7)}
    assert "must be one of local, k8s, got 'kubernetes'" in str(err.value)
    assert main(["drill", "run", path, "--home", str(tmp_path / "home")]) == 2
    assert f"{path}:3" in capsys.readouterr().err
    assert load_scenario(_scenario(tmp_path, FAILOVER_API_ONLY, "ok.yml")).target == "k8s"
    shipped = load_scenario(SCENARIO_DIR / "failover-k8s.yml")
    assert shipped.target == "k8s" and shipped.k8s["cluster_name"] == "warehouse"
    assert main(["drill", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["failover-k8s"]["target"] == "k8s" and "target" not in rows["failover-postmaster-kill"]


# -- the ledger workload through a warehouse conninfo ---------------------------------------------------


@pytest.fixture(scope="module")
def ledger_db() -> Iterator[Any]:
    """A real PostgreSQL 16 (pgserver's binaries) with a database ``ledger`` for the workload."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    from data_testkit import TempPostgres, pg_bin_dir

    if pg_bin_dir() is None:
        pytest.skip("pgserver's PostgreSQL binaries are not installed")
    server = TempPostgres.start()
    try:
        with psycopg.connect(server.conninfo, autocommit=True) as conn:
            conn.execute("CREATE DATABASE ledger")
        yield server
    finally:
        server.stop()


def test_failover_with_a_warehouse_conninfo_runs_the_ledger_and_reports_rto_and_rpo(
    fake, kubeconfig, tmp_path, capsys, ledger_db
):
    """Fake API (no Kubernetes API server can run here) and a real PostgreSQL: the ledger
    workload runs through the conninfo; when the primary's pod is deleted the fake also
    breaks every session of the database and refuses new ones until it has promoted
    another instance, as the -rw Service does in a failover. RTO is the first commit on a
    connection opened after the fault; RPO counts acknowledged transfers missing (0)."""

    def primary_lost(obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] != "warehouse-1":
            return
        with psycopg.connect(ledger_db.conninfo, autocommit=True) as conn:
            conn.execute("ALTER DATABASE ledger ALLOW_CONNECTIONS false")
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'ledger' AND pid <> pg_backend_pid()"
            )
            time.sleep(DELAY)  # the promotion, as the fake plays it
            conn.execute("ALTER DATABASE ledger ALLOW_CONNECTIONS true")

    fake.on_delete.append(primary_lost)
    conninfo = ledger_db.conninfo.replace("dbname=postgres", "dbname=ledger")
    text = """\
name: k8s-failover-ledger
kind: failover
target: k8s
fault: {type: postmaster-kill}
workload: {clients: 2, accounts: 20, before_s: 0.5, after_s: 0.3}
checks: [rpo, invariant, in_doubt, rejoin, fencing]
targets:
  rto_s: {max: 10}
  rpo_commits: {max: 0}
  promotion_s: {max: 10}
timeouts: {failover_s: 15, rejoin_s: 10, healthy_s: 5}
"""
    code, res = _run(
        capsys,
        tmp_path,
        _scenario(tmp_path, text),
        "--kubeconfig",
        kubeconfig,
        "--warehouse-conninfo",
        conninfo,
    )
    assert code == 0, res
    rep = res["repetitions"][0]
    assert rep["metrics"]["rpo_commits"] == 0 and rep["metrics"]["rpo_s"] == 0
    assert DELAY * 0.8 <= rep["metrics"]["rto_s"] < 10
    assert rep["info"]["counts"]["acked"] > 0
    assert {c: v["failed"] for c, v in res["checks"].items()} == {
        "promoted": 0,
        "rejoin": 0,
        "rpo": 0,
        "invariant": 0,
        "in_doubt": 0,
    }
    assert rep["info"]["not_checked_on_k8s"].keys() == {"fencing"}
    assert res["target"]["warehouse"] == f"postgres@127.0.0.1:{ledger_db.port}/ledger"
    assert "ledger workload" in res["target"]["measured"]
    assert res["summary"]["gbt20988_2007"]["level"] == 6
    attempts = (Path(res["run_dir"]) / "rep-01" / "attempts.jsonl").read_text().splitlines()
    assert len(attempts) >= rep["info"]["counts"]["acked"]


def test_a_conninfo_that_does_not_follow_the_failover_leaves_rto_unmeasured(
    fake, kubeconfig, tmp_path, capsys, ledger_db
):
    """Fake API (no Kubernetes API server can run here) and a real PostgreSQL that stays up
    when the primary's pod is deleted (as behind a port-forward to another pod): no client
    connection is lost, so no commit can be told to be on the new primary; RTO is reported
    as not measured with the reason, and its target is missed (exit 1)."""
    conninfo = ledger_db.conninfo.replace("dbname=postgres", "dbname=ledger")
    text = """\
name: k8s-failover-stale
kind: failover
target: k8s
fault: {type: postmaster-kill}
workload: {clients: 1, accounts: 10, before_s: 0.2, after_s: 0}
checks: [rpo]
targets:
  rto_s: {max: 10}
timeouts: {failover_s: 1.5, rejoin_s: 10, healthy_s: 5}
"""
    code, res = _run(
        capsys,
        tmp_path,
        _scenario(tmp_path, text),
        "--kubeconfig",
        kubeconfig,
        "--warehouse-conninfo",
        conninfo,
    )
    assert code == 1, res
    rep = res["repetitions"][0]
    assert "rto_s" not in rep["metrics"] and rep["metrics"]["rpo_commits"] == 0
    assert "port-forward" in res["verdicts"][0]["detail"] and not res["verdicts"][0]["met"]
