"""The embedded platform, for real: Patroni-managed PostgreSQL primary + sync standby,
nats-server with JetStream, the Iceberg lake and the exporter, deployed by Ansible.

Tests in this module run in order against one platform (session fixture), which
other modules share: every test leaves it healthy; `down` (and `up` again) runs last
of the whole session (marker ``platform_last``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg
import pytest
from helpers import wait_for

from dataplat.cli import main
from dataplat.platform import endpoints

pytestmark = pytest.mark.platform


def status_json(home: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["status", "--home", str(home), "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_first_up_changed_things_and_kept_every_event(platform):
    run = platform.first_up.run
    assert run.ok and run.changed > 0
    events = run.events()
    assert events[0]["event"] == "playbook_on_start"
    assert any(e["event"] == "playbook_on_stats" for e in events)
    assert run.artifacts_dir.is_relative_to(platform.home / "runs")
    # secrets are never written into the events
    secrets = [p.read_text().split()[0] for p in (platform.home / "secrets").glob("warehouse-*")]
    dump = (run.artifacts_dir / "stdout").read_text() + json.dumps(events)
    assert secrets and not any(s in dump for s in secrets)


def test_status_reports_every_component_healthy(platform, capsys):
    rc, doc = status_json(platform.home, capsys)
    assert rc == 0, doc
    names = {c["name"]: c for c in doc["components"]}
    for name in (
        "pg0",
        "pg1",
        "pg2",
        "witness",
        "nats0",
        "lake",
        "metrics-localhost",
        "serving-cpu-0",
        "decision-0",
    ):
        assert names[name]["health"] == "healthy", names[name]
    for name in ("pg0", "pg1", "pg2", "witness", "nats0", "metrics-localhost", "serving-cpu-0", "decision-0"):
        assert isinstance(names[name]["pid"], int)
    wh = doc["warehouse"]
    members = {m["name"]: m for m in wh["members"]}
    leader = wh["leader"]
    assert leader in members and members[leader]["role"] == "leader"
    standbys = [m for n, m in members.items() if n != leader]
    assert sorted(m["role"] for m in standbys) == ["replica", "sync_standby"]
    assert sorted(m["sync_state"] for m in standbys) == ["async", "sync"]
    for m in standbys:
        assert m["state"] == "streaming" and m["timeline"] == members[leader]["timeline"] >= 1
    assert "target_session_attrs=read-write" in wh["cluster_conninfo"]
    assert stat.S_IMODE(os.stat(wh["pgpass"]).st_mode) == 0o600
    assert {s["name"] for s in doc["stream"]["streams"]} == {"EVENTS", "DECISIONS"}
    (pool,) = doc["serving"]["scaling"]
    assert pool["pool"] == "cpu" and pool["running"] and pool["ready"] >= 1
    assert (pool["minReplicas"], pool["maxReplicas"]) == (1, 3)
    assert pool["minReplicas"] <= pool["current"] <= pool["maxReplicas"]


def test_psql_connects_with_the_printed_conninfo_alone(platform, capsys):
    import pgserver

    _, doc = status_json(platform.home, capsys)
    psql = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    out = subprocess.run(
        [str(psql), doc["warehouse"]["cluster_conninfo"], "-Atc", "SELECT current_user, pg_is_in_recovery()"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    assert out.stdout.strip() == "dataplat_admin|f"


def test_committed_row_is_on_the_standby(platform, capsys):
    _, doc = status_json(platform.home, capsys)
    wh = doc["warehouse"]
    standby = next(m for m in wh["members"] if m["sync_state"] == "sync")
    with psycopg.connect(wh["cluster_conninfo"], autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.t_sync (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO public.t_sync VALUES (1, 'committed') ON CONFLICT (id) DO NOTHING")
    with psycopg.connect(standby["conninfo"], autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        got = wait_for(
            lambda: conn.execute("SELECT v FROM public.t_sync WHERE id = 1").fetchone(),
            10,
            "the row on the standby",
        )
    assert got[0] == "committed"


def test_bank_schema_and_roles_exist(platform):
    with psycopg.connect(endpoints.warehouse_conninfo(platform.home)) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'bank'")}
        assert {"customers", "accounts", "transactions", "holdings", "products"} <= tables
    with psycopg.connect(endpoints.warehouse_conninfo(platform.home, role="app")) as conn:
        conn.execute("SELECT count(*) FROM bank.customers").fetchone()
    archive = platform.home / "warehouse" / "archive"
    backup = platform.home / "warehouse" / "backups" / "base-initial"
    assert (backup / "backup_manifest").exists() and (backup / "base.tar.gz").exists()
    assert archive.is_dir()


def test_jetstream_publish_with_ack_and_read_back(platform):
    import nats

    servers = endpoints.nats_servers(endpoints.load_platform(platform.home))

    async def roundtrip() -> tuple[int, bytes]:
        nc = await nats.connect(servers=servers)
        try:
            js = nc.jetstream()
            ack = await js.publish("bank.events.test", b'{"event_id":"t-1"}', headers={"Nats-Msg-Id": "t-1"})
            msg = await js.get_msg("EVENTS", ack.seq)
            return ack.seq, msg.data
        finally:
            await nc.close()

    seq, data = asyncio.run(roundtrip())
    assert seq >= 1 and json.loads(data) == {"event_id": "t-1"}


def test_lake_tables_readable_through_duckdb(platform):
    import duckdb

    catalog, ns = endpoints.lake_catalog(platform.home)
    names = {t[-1] for t in catalog.list_tables(ns)}
    assert {"customers", "transactions"} <= names
    arrow = catalog.load_table(f"{ns}.customers").scan().to_arrow()
    con = duckdb.connect()
    con.register("customers", arrow)
    assert con.execute("SELECT count(*) FROM customers").fetchone()[0] == arrow.num_rows


def test_data_load_fills_both_stores_alike(platform, capsys):
    import duckdb

    capsys.readouterr()
    assert main(["data", "load", "--sf", "0.002", "--home", str(platform.home), "--json"]) == 0
    loads = json.loads(capsys.readouterr().out)["loads"]
    rows = {(r["store"], r["table"]): r["rows"] for r in loads}
    assert rows[("warehouse", "customers")] == rows[("lake", "customers")] == 2000
    catalog, ns = endpoints.lake_catalog(platform.home)
    con = duckdb.connect()
    con.register("holdings", catalog.load_table(f"{ns}.holdings").scan().to_arrow())
    con.register("tx", catalog.load_table(f"{ns}.transactions").scan().to_arrow())
    lake_total = con.execute("SELECT sum(amount) FROM holdings").fetchone()[0]
    lake_tx = con.execute("SELECT count(*) FROM tx").fetchone()[0]
    with psycopg.connect(endpoints.warehouse_conninfo(platform.home)) as conn:
        wh_total = conn.execute("SELECT sum(amount) FROM bank.holdings").fetchone()[0]
        wh_tx = conn.execute("SELECT count(*) FROM bank.transactions").fetchone()[0]
    assert wh_total == lake_total and wh_tx == lake_tx == rows[("warehouse", "transactions")] > 0


def test_serving_pool_scores_through_the_router(platform):
    import numpy as np

    from dataplat.serving.client import PoolRouter, pools_from_placement
    from dataplat.serving.model import CLASSES, FEATURE_NAMES

    plat = endpoints.load_platform(platform.home)
    pools = pools_from_placement(plat.instances, plat.settings["serving"]["pools"])
    assert [p.name for p in pools] == ["cpu"]

    async def score():
        async with PoolRouter(pools) as router:
            return await router.infer("propensity", np.zeros((3, len(FEATURE_NAMES)), dtype=np.float32))

    result = asyncio.run(score())
    assert result.pool == "cpu" and result.model_version == "1"
    probs = next(v for v in result.outputs.values() if v.ndim == 2)
    assert probs.shape == (3, len(CLASSES)) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    meta = json.loads(
        (platform.home / "serving" / "models" / "propensity" / "1" / "metadata.json").read_text()
    )
    assert meta["metrics"]["n_test"] > 0


def test_exporter_serves_prometheus_metrics(platform):
    exporter = endpoints.load_platform(platform.home).by_component("metrics")[0]
    url = f"http://{exporter['address']}:{exporter['ports']['http']}/metrics"
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    assert 'dataplat_component_up{component="warehouse"' in body
    assert "dataplat_warehouse_leader" in body
    member = endpoints.load_platform(platform.home).by_component("warehouse")[0]
    patroni = (
        urllib.request.urlopen(f"http://{member['address']}:{member['ports']['rest']}/metrics", timeout=10)
        .read()
        .decode()
    )
    assert "patroni_postgres_running" in patroni


def test_second_up_changes_nothing(platform):
    from dataplat.deploy.api import up

    result = up(platform.inventory)
    assert result.ok, result.run.failures
    assert result.run.changed == 0, [
        e["event_data"]["task"]
        for e in result.run.events()
        if e["event"] == "runner_on_ok" and e["event_data"]["res"].get("changed")
    ]


def test_up_repairs_a_killed_component(platform, capsys):
    from dataplat.deploy.api import up
    from dataplat.deploy.daemon import read_state

    run_dir = platform.home / "run"
    before = read_state("nats0", run_dir)
    assert before.running
    os.kill(before.pid, signal.SIGKILL)
    wait_for(lambda: not read_state("nats0", run_dir).running, 10, "nats-server to die")
    rc, doc = status_json(platform.home, capsys)
    assert rc == 1 and {c["name"]: c["health"] for c in doc["components"]}["nats0"] == "stopped"
    result = up(platform.inventory)
    assert result.ok and result.run.changed >= 1
    rc, doc = status_json(platform.home, capsys)
    assert rc == 0, doc
    # the stream's messages survived the kill (file storage)
    assert sum(s["messages"] for s in doc["stream"]["streams"] if s["name"] == "EVENTS") >= 1


def test_killing_the_primary_postmaster_makes_the_standby_leader(platform, capsys):
    _, doc = status_json(platform.home, capsys)
    old_leader = doc["warehouse"]["leader"]
    pgdata = platform.home / "warehouse" / old_leader / "pgdata"
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)

    def new_leader():
        _, d = status_json(platform.home, capsys)
        lead = d["warehouse"]["leader"]
        return lead if lead and lead != old_leader else None

    leader = wait_for(new_leader, 60, "a new leader")

    def writable() -> str:
        # Patroni names the leader when it takes the leader key, a moment before its
        # PostgreSQL is promoted: until then every member answers "session is read-only"
        with psycopg.connect(endpoints.warehouse_conninfo(platform.home), autocommit=True) as conn:
            return str(conn.execute("SELECT v FROM public.t_sync WHERE id = 1").fetchone()[0])

    assert wait_for(writable, 30, "the new leader to accept writes") == "committed"
    with psycopg.connect(endpoints.warehouse_conninfo(platform.home), autocommit=True) as conn:
        conn.execute("INSERT INTO public.t_sync VALUES (2, 'after failover')")

    def old_primary_rejoined():
        _, d = status_json(platform.home, capsys)
        m = {x["name"]: x for x in d["warehouse"]["members"]}
        sync = [x for x in m.values() if x["sync_state"] == "sync"]
        return m[old_leader]["state"] == "streaming" and m[old_leader]["sync_state"] and len(sync) == 1

    wait_for(old_primary_rejoined, 90, "the old primary to rejoin, with one synchronous standby")
    _, doc = status_json(platform.home, capsys)
    assert doc["warehouse"]["leader"] == leader
    timelines = {m["name"]: m["timeline"] for m in doc["warehouse"]["members"]}
    assert len(set(timelines.values())) == 1 and timelines[old_leader] >= 2
    # the decision service found the new primary by itself
    decision = endpoints.load_platform(platform.home).by_component("decision")[0]
    base = f"http://{decision['address']}:{decision['ports']['http']}"
    with psycopg.connect(endpoints.warehouse_conninfo(platform.home)) as conn:
        customer = conn.execute("SELECT min(customer_id) FROM bank.customers").fetchone()[0]

    def decided():
        body = json.dumps(
            {"event_id": f"after-failover-{leader}", "type": "app_login", "customer_id": customer}
        )
        req = urllib.request.Request(
            f"{base}/v1/decisions",
            data=body.encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read()) if resp.status == 200 else None

    answer = wait_for(decided, 30, "a decision after the failover")
    assert answer["customer_id"] == customer


@pytest.mark.platform_last
def test_down_stops_everything_keeps_data_and_up_brings_it_back(platform, capsys):
    from dataplat.deploy.daemon import port_in_use

    plat = endpoints.load_platform(platform.home)
    with psycopg.connect(endpoints.warehouse_conninfo(platform.home), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.t_down (id int PRIMARY KEY)")
        conn.execute(
            "INSERT INTO public.t_down SELECT g FROM generate_series(1, 100) g ON CONFLICT DO NOTHING"
        )
    capsys.readouterr()
    assert main(["down", "--home", str(platform.home), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["changed"] >= 1
    for inst in plat.instances:
        for port in inst["ports"].values():
            if inst["component"] != "lake":
                assert not port_in_use(inst["address"], port), (inst["name"], port)
    assert (platform.home / "warehouse" / "pg0" / "pgdata").exists()
    rc, doc = status_json(platform.home, capsys)
    assert rc == 1 and all(c["health"] in ("stopped", "healthy") for c in doc["components"])
    # up again on the data that stayed: the committed rows are all there, and the
    # platform is back for the fixtures that clean up after themselves
    from dataplat.deploy.api import up

    assert up(platform.inventory).ok
    with psycopg.connect(endpoints.warehouse_conninfo(platform.home)) as conn:
        assert conn.execute("SELECT count(*) FROM public.t_down").fetchone()[0] == 100
    rc, doc = status_json(platform.home, capsys)
    assert rc == 0, doc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
