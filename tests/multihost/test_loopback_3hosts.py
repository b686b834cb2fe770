"""The multi-host deploy, for real: inventory/examples/loopback-3hosts.yml (hosts h1, h2, h3
on 127.0.0.2, .3, .4, Ansible's local connection) deployed by ``dataplat up -i``.

Every service must listen on its host's address only (read from the kernel: the listening
sockets each platform process holds), the warehouse's members sit on three hosts, and a
failover moves the primary to another host with no acknowledged commit lost. Tests run in
file order against one platform; the last one stops it.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from helpers import wait_for
from multihost_testkit import (
    ADDRESSES,
    LoopbackPlatform,
    connect_refused,
    dataplat,
    listeners_of,
    listening_sockets,
    process_tree,
)

from dataplat.dr.scenario import SCENARIO_DIR
from dataplat.platform import endpoints

HOSTS = {"h1": ADDRESSES[0], "h2": ADDRESSES[1], "h3": ADDRESSES[2]}


def _status(home: Path) -> tuple[int, dict[str, Any]]:
    rc, out, err = dataplat("status", "--home", str(home), "--json")
    assert out, err
    return rc, json.loads(out)


def _healthy(home: Path) -> dict[str, Any] | None:
    rc, doc = _status(home)
    members = doc.get("warehouse", {}).get("members", [])
    ok = rc == 0 and any(m["sync_state"] == "sync" for m in members)
    return doc if ok else None


def _drill(home: Path, tmp_path: Path, name: str, **changes: Any) -> tuple[int, dict[str, Any]]:
    """``dataplat drill run`` of a copy of a shipped scenario with some sections changed."""
    doc = yaml.safe_load((SCENARIO_DIR / f"{name}.yml").read_text())
    for section, value in changes.items():
        doc[section].update(value)
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    rc, out, err = dataplat("drill", "run", str(path), "--home", str(home), "--json")
    assert out, err[-4000:]
    return rc, json.loads(out)


def _daemon_pids(home: Path) -> dict[str, list[int]]:
    """instance name -> its processes (the daemon's tree; a member's postmaster tree too)."""
    out: dict[str, list[int]] = {}
    for pid_file in sorted((home / "run").glob("*.pid")):
        pids = process_tree(int(pid_file.read_text().strip()))
        postmaster = home / "warehouse" / pid_file.stem / "pgdata" / "postmaster.pid"
        if postmaster.exists():
            pids += process_tree(int(postmaster.read_text().split()[0]))
        out[pid_file.stem] = pids
    return out


def test_up_placed_one_member_and_one_nats_node_per_host(loopback_platform: LoopbackPlatform) -> None:
    assert loopback_platform.up["ok"] and loopback_platform.up["changed"] > 0
    assert set(loopback_platform.up["stats"]) == set(HOSTS)
    plat = endpoints.load_platform(loopback_platform.home)
    for component in ("warehouse", "stream", "metrics"):
        placed = {i["host"]: i["address"] for i in plat.by_component(component)}
        assert placed == HOSTS, (component, placed)
    # three Raft voters on three hosts: no witness (one beside a member would cost quorum on a host loss)
    assert plat.by_component("warehouse-witness") == []
    assert {i["host"] for i in plat.by_component("serving")} == {"h1"}
    assert {i["host"] for i in plat.by_component("decision")} == {"h2"}


def test_every_process_listens_on_its_hosts_address_only(loopback_platform: LoopbackPlatform) -> None:
    home = loopback_platform.home
    plat = endpoints.load_platform(home)
    placed = {i["name"]: i for i in plat.instances}
    pids = _daemon_pids(home)
    assert set(pids) == {n for n, i in placed.items() if i["component"] != "lake"}
    seen: dict[str, set[tuple[str, int]]] = {}
    for name, tree in pids.items():
        listens = listeners_of(tree)
        seen[name] = listens
        address = placed[name]["address"]
        assert listens, f"{name} listens on nothing"
        assert {a for a, _ in listens} == {address}, f"{name} on {placed[name]['host']}: {sorted(listens)}"
    # every port of the plan is among them (serving replicas behind their supervisor add theirs)
    for name, inst in placed.items():
        for port_name, port in inst["ports"].items():
            assert (inst["address"], port) in seen[name], f"{name} {port_name} {inst['address']}:{port}"
    # nobody else took those ports on a wildcard or on 127.0.0.1, and 127.0.0.1 refuses them
    ports = {p for i in plat.instances for p in i["ports"].values()}
    wildcard = {(a, p) for a, p in listening_sockets().values() if p in ports and a not in ADDRESSES}
    assert not wildcard, sorted(wildcard)
    for port in sorted(ports):
        assert connect_refused("127.0.0.1", port), port
    # PostgreSQL itself is told so (Patroni's postgresql.listen)
    pg0 = placed["pg0"]
    with psycopg.connect(endpoints.conninfo(plat, [pg0], read_write=False)) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == (pg0["address"],)


def test_status_shows_members_on_three_hosts_and_a_cross_host_conninfo(
    loopback_platform: LoopbackPlatform,
) -> None:
    doc = wait_for(lambda: _healthy(loopback_platform.home), 60, "a healthy platform")
    wh = doc["warehouse"]
    members = {m["name"]: m for m in wh["members"]}
    assert {m["host"] for m in members.values()} == set(HOSTS)
    assert all(m["address"] == HOSTS[m["host"]] for m in members.values())
    leader = members[wh["leader"]]
    assert wh["leader_host"] == leader["host"]
    syncs = [m for m in members.values() if m["sync_state"] == "sync"]
    # warehouse_synchronous_node_count 2: both standbys, each on another host than the primary
    assert len(syncs) == 2 and leader["host"] not in {m["host"] for m in syncs}
    assert "host=127.0.0.2,127.0.0.3,127.0.0.4" in wh["cluster_conninfo"]
    with psycopg.connect(wh["cluster_conninfo"]) as conn:
        assert conn.info.host == leader["address"]
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    # the NATS cluster: every node routes to the two others, streams are replicated three times
    plat = endpoints.load_platform(loopback_platform.home)
    for url in endpoints.nats_monitor_urls(plat):
        with urllib.request.urlopen(f"{url}/routez", timeout=5) as resp:
            routes = json.loads(resp.read())
        peers = {r["remote_name"] for r in routes["routes"]}
        assert len(peers) == 2, (url, peers)
    with urllib.request.urlopen(f"{endpoints.nats_monitor_urls(plat)[0]}/jsz?streams=true&config=true") as r:
        jsz = json.loads(r.read())
    streams = {s["name"]: s for a in jsz["account_details"] for s in a["stream_detail"]}
    assert {streams[n]["config"]["num_replicas"] for n in ("EVENTS", "DECISIONS")} == {3}


def _assert_failover_across_hosts(doc: dict[str, Any]) -> dict[str, Any]:
    rep = doc["repetitions"][0]
    checks = {c["name"]: c for c in rep["checks"]}
    assert all(c["passed"] for c in checks.values()), json.dumps(checks, indent=1)
    info = rep["info"]
    assert info["old_leader_host"] != info["new_leader_host"], info
    assert rep["metrics"]["rpo_commits"] == 0 and rep["metrics"]["rto_s"] > 0
    events = [e["label"] for e in rep["events"]]
    assert any(info["new_leader_host"] in e and e.startswith("new leader") for e in events), events
    return rep


def test_failover_moves_the_primary_to_another_host(
    loopback_platform: LoopbackPlatform, tmp_path: Path
) -> None:
    rc, doc = _drill(
        loopback_platform.home,
        tmp_path,
        "failover-postmaster-kill",
        workload={"before_s": 1, "after_s": 1},
        targets={"rto_s": {"max": 60}, "rpo_commits": {"max": 0}},
    )
    assert rc == 0, json.dumps(doc["repetitions"][0]["checks"], indent=1)
    _assert_failover_across_hosts(doc)
    wait_for(lambda: _healthy(loopback_platform.home), 120, "a healthy platform after the drill")


@pytest.mark.slow
def test_host_loss_kills_every_daemon_of_the_primarys_host(
    loopback_platform: LoopbackPlatform, tmp_path: Path
) -> None:
    rc, doc = _drill(
        loopback_platform.home, tmp_path, "failover-host-loss", workload={"before_s": 1, "after_s": 1}
    )
    rep = _assert_failover_across_hosts(doc)
    lost = rep["info"]["lost_host"]
    assert lost["whole_host"] and lost["host"] == rep["info"]["old_leader_host"]
    plat = endpoints.load_platform(loopback_platform.home)
    on_host = {i["name"] for i in plat.instances if i["host"] == lost["host"] and i["component"] != "lake"}
    assert set(lost["daemons"]) == on_host
    assert rc == 0, json.dumps(doc["verdicts"], indent=1)  # RTO within ttl + 5
    # the lost host's daemons are back and the whole platform healthy
    doc = wait_for(lambda: _healthy(loopback_platform.home), 120, "a healthy platform, the host back")
    assert all(c["health"] == "healthy" for c in doc["components"])


def test_down_stops_every_process_on_every_host(loopback_platform: LoopbackPlatform) -> None:
    home = loopback_platform.home
    plat = endpoints.load_platform(home)
    ports = {p for i in plat.instances for p in i["ports"].values()}
    rc, out, err = dataplat("down", "--home", str(home), "--json")
    assert rc == 0, err[-3000:]
    assert set(json.loads(out)["stats"]) == set(HOSTS)
    left = {(a, p) for a, p in listening_sockets().values() if p in ports and a in ADDRESSES}
    assert not left, sorted(left)
    rc, doc = _status(home)
    assert rc == 1 and {c["health"] for c in doc["components"] if c["component"] != "lake"} == {"stopped"}
