"""Placement: instances, ports, spreading over racks/AZs, accelerator pools, the plan contract."""

from __future__ import annotations

import json
from pathlib import Path

from inventory_paths import EXAMPLE, LOCAL

from dataplat.inventory.loader import load_inventory
from dataplat.inventory.placement import Instance, Plan, plan


def test_local_plan() -> None:
    p = plan(load_inventory(LOCAL))
    names = [i.name for i in p.instances]
    assert names[:9] == [
        "pg0",
        "pg1",
        "pg2",
        "witness",
        "nats0",
        "lake",
        "metrics-localhost",
        "serving-cpu-0",
        "decision-0",
    ]
    assert names[9:] == ["loadgen-localhost"]
    pg0, pg1, pg2 = p.by_component("warehouse")
    assert (pg0.host, pg1.host, pg2.host) == ("localhost", "localhost", "localhost")
    assert pg0.address == "127.0.0.1"
    assert pg0.ports == {"pg": 55432, "rest": 58008, "raft": 52370}
    assert pg1.ports == {"pg": 55433, "rest": 58009, "raft": 52371}
    assert pg2.ports == {"pg": 55434, "rest": 58010, "raft": 52372}
    (witness,) = p.by_component("warehouse-witness")
    assert witness.ports == {"raft": 52380}
    (nats,) = p.by_component("stream")
    assert nats.ports == {"client": 54222, "monitor": 58222, "cluster": 56222}
    assert p.get("lake").ports == {}
    assert p.get("metrics-localhost").ports == {"http": 59100}
    serving = p.get("serving-cpu-0")
    assert (serving.pool, serving.accelerator, serving.ports) == ("cpu", "cpu", {"http": 58100})
    assert p.get("decision-0").ports == {"http": 58300}
    # every address:port is bound once
    bound = [(i.address, port) for i in p.instances for port in i.ports.values()]
    assert len(bound) == len(set(bound))
    # the members cannot be spread on one machine: a warning naming the component, not an error
    assert [pr.severity for pr in p.problems] == ["warning"]
    assert "warehouse" in p.problems[0].message and "pg0, pg1, pg2" in p.problems[0].message


def test_plan_roundtrips_through_json() -> None:
    p = plan(load_inventory(EXAMPLE))
    again = Plan.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    d = p.to_dict()
    assert set(d) == {"instances", "problems"}
    assert set(d["instances"][0]) == {
        "component",
        "name",
        "host",
        "address",
        "ports",
        "arch",
        "rack",
        "az",
        "pool",
        "accelerator",
    }
    assert isinstance(again.instances[0], Instance)


def test_example_plan_spreads_and_matches_accelerators() -> None:
    inv = load_inventory(EXAMPLE)
    p = plan(inv)
    assert p.problems == ()
    names = [i.name for i in p.instances]
    assert len(names) == len(set(names))
    members = p.by_component("warehouse")
    assert [m.name for m in members] == ["pg0", "pg1", "pg2"]
    assert {m.az for m in members} == {"az1", "az2", "az3"}
    assert {m.arch for m in members} == {"aarch64"}  # Kunpeng 920
    assert p.by_component("warehouse-witness") == []  # etcd3: no Raft witness
    assert {n.az for n in p.by_component("stream")} == {"az1", "az2", "az3"}
    assert {n.arch for n in p.by_component("stream")} == {"x86_64"}  # Hygon

    def kinds(host: str) -> set[str]:
        return {a["kind"] for a in inv.var(host, "accelerators", [])}

    ascend = [i for i in p.by_component("serving") if i.pool == "ascend-910b"]
    nvidia = [i for i in p.by_component("serving") if i.pool == "a800"]
    assert len(ascend) == 2 and len(nvidia) == 2
    assert all(kinds(i.host) == {"ascend"} and i.accelerator == "ascend" for i in ascend)
    assert all(kinds(i.host) == {"nvidia"} and i.accelerator == "nvidia" for i in nvidia)
    assert len({i.az for i in ascend}) == 2 and len({i.az for i in nvidia}) == 2
    assert {i.arch for i in ascend} == {"aarch64"} and {i.arch for i in nvidia} == {"x86_64"}
    # several pools on one host count up from serving_port
    per_host: dict[str, list[int]] = {}
    for i in p.by_component("serving"):
        per_host.setdefault(i.host, []).append(i.ports["http"])
    for ports in per_host.values():
        assert sorted(ports) == list(range(58100, 58100 + len(ports)))
    assert {d.az for d in p.by_component("decision")} == {"az1", "az2", "az3"}
    running = {i.host for i in p.instances if i.component != "metrics"}
    assert {m.host for m in p.by_component("metrics")} == running
    assert [i.name for i in p.by_component("lake")] == ["lake", "lake-1"]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text(text)
    return path


def test_witness_goes_to_a_host_without_members_in_another_az(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
all:
  children:
    warehouse:
      hosts:
        w1: {az: a, rack: a1}
        w2: {az: b, rack: b1}
    stream:
      hosts:
        s1: {az: a, rack: a2}
        s2: {az: c, rack: c1}
""",
    )
    p = plan(load_inventory(path))
    (witness,) = p.by_component("warehouse-witness")
    assert witness.host == "s2"


def test_witness_flag_wins(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
all:
  children:
    warehouse:
      hosts:
        w1: {az: a}
        w2: {az: b, warehouse_witness: true}
    stream:
      hosts:
        s1: {az: c}
""",
    )
    assert plan(load_inventory(path)).get("witness").host == "w2"


def test_replicas_spread_over_azs_then_racks(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
all:
  vars:
    serving_pools:
      - {name: npu, accelerator: ascend, replicas: 3}
  children:
    serving:
      vars:
        accelerators: [{kind: ascend, count: 8}]
      hosts:
        n1: {az: a, rack: a1}
        n2: {az: a, rack: a2}
        n3: {az: b, rack: b1}
        n4: {az: c, rack: c1}
""",
    )
    p = plan(load_inventory(path))
    placed = p.by_component("serving")
    assert {i.az for i in placed} == {"a", "b", "c"}
    assert all(i.ports["http"] == 58100 for i in placed)


def test_replicas_that_cannot_be_spread_are_a_warning(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
all:
  vars:
    serving_pools:
      - {name: gpu, accelerator: nvidia, replicas: 2}
  children:
    serving:
      hosts:
        g1: {az: a, accelerators: [{kind: nvidia, count: 8}]}
        c1: {az: b}
""",
    )
    p = plan(load_inventory(path))
    placed = p.by_component("serving")
    assert [(i.host, i.ports["http"]) for i in placed] == [("g1", 58100), ("g1", 58101)]
    (warning,) = [pr for pr in p.problems if pr.severity == "warning" and "serving" in pr.message]
    assert "serving pool gpu" in warning.message and "share a host" in warning.message
    assert warning.field == "all.vars.serving_pools[0].replicas"
