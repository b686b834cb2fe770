"""The loopback example's plan, without deploying: hosts and addresses, no Raft witness beside
an odd member set, the ports each host lets in, and what a lost host takes with it."""

from __future__ import annotations

from pathlib import Path

from multihost_testkit import ADDRESSES, LOOPBACK_INVENTORY

from dataplat.dr.faults import lost_host
from dataplat.inventory.loader import load_inventory
from dataplat.inventory.placement import plan
from dataplat.platform.endpoints import Platform

REPO = Path(__file__).resolve().parents[2]


def test_members_on_three_hosts_each_bound_to_its_address() -> None:
    p = plan(load_inventory(LOOPBACK_INVENTORY))
    assert not p.problems
    members = p.by_component("warehouse")
    assert [(m.name, m.host, m.address) for m in members] == [
        ("pg0", "h1", ADDRESSES[0]),
        ("pg1", "h2", ADDRESSES[1]),
        ("pg2", "h3", ADDRESSES[2]),
    ]
    assert p.by_component("warehouse-witness") == []
    hosts = ("h1", "h2", "h3")
    assert [(n.host, n.address) for n in p.by_component("stream")] == list(zip(hosts, ADDRESSES, strict=True))


def test_a_host_can_still_ask_for_the_witness(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    h3 = "      ansible_host: 127.0.0.4\n"
    path.write_text(LOOPBACK_INVENTORY.read_text().replace(h3, h3 + "      warehouse_witness: true\n"))
    (witness,) = plan(load_inventory(path)).by_component("warehouse-witness")
    assert (witness.host, witness.address) == ("h3", ADDRESSES[2])


def test_the_one_machine_platform_keeps_its_witness_on_127_0_0_1() -> None:
    p = plan(load_inventory(REPO / "inventory" / "local.yml"))
    (witness,) = p.by_component("warehouse-witness")
    assert witness.address == "127.0.0.1"
    assert {i.address for i in p.instances} == {"127.0.0.1"}


def test_open_ports_per_host_are_the_ports_of_its_instances() -> None:
    p = plan(load_inventory(LOOPBACK_INVENTORY))
    ports = p.open_ports()
    assert set(ports) == {"h1", "h2", "h3"}
    for host, listed in ports.items():
        expected = {port for i in p.instances if i.host == host for port in i.ports.values()}
        assert listed == sorted(expected)
    assert 58300 in ports["h2"] and 58300 not in ports["h1"]  # the decision service runs on h2 only


def test_a_lost_host_is_the_whole_host_only_when_no_other_member_shares_it(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    for inventory, whole in ((LOOPBACK_INVENTORY, True), (REPO / "inventory" / "local.yml", False)):
        instances = tuple(i.to_dict() for i in plan(load_inventory(inventory)).instances)
        lost = lost_host(Platform(tmp_path, instances, {}, str(inventory)), "pg0")
        assert lost.whole_host is whole
        assert lost.daemons == ("pg0",)  # nothing runs under this home: only the member itself
        assert lost.host == instances[0]["host"]
