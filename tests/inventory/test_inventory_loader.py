"""Loading and validating inventories: every problem with its file, line, column and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from inventory_paths import BAD, EXAMPLE, LOCAL

from dataplat.errors import InventoryError
from dataplat.inventory.loader import expand_host_pattern, load_inventory, validate_inventory
from dataplat.inventory.model import InventoryParseError, Problem


def errors_of(path: Path) -> list[Problem]:
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    problems = info.value.problems
    assert all(isinstance(p, Problem) for p in problems)
    return [p for p in problems if p.severity == "error"]


def only(problems: list[Problem], field: str) -> Problem:
    matching = [p for p in problems if p.field == field]
    assert len(matching) == 1, [p.render() for p in problems]
    return matching[0]


def test_local_inventory_loads_with_ansible_precedence() -> None:
    inv = load_inventory(LOCAL)
    assert list(inv.hosts) == ["localhost"]
    host = inv.hosts["localhost"]
    assert set(host.groups) == {"warehouse", "lake", "stream", "serving", "decision", "loadgen"}
    assert inv.var("localhost", "warehouse_members_per_host") == 3  # all.vars beats the role default
    assert inv.var("localhost", "warehouse_pg_port") == 55432  # role default
    assert inv.var("localhost", "ansible_host") == "127.0.0.1"
    assert inv.var("localhost", "nope", "fallback") == "fallback"
    assert inv.declared("localhost", "warehouse_pg_port") is None  # a role default, not set here
    assert inv.declared("localhost", "warehouse_members_per_host") == 3
    assert inv.groups["warehouse"] == ["localhost"]
    assert inv.groups["ungrouped"] == []
    assert all(p.severity != "error" for p in inv.problems)


def test_example_inventory_validates() -> None:
    inv = load_inventory(EXAMPLE)
    assert len(inv.hosts) == 16
    # group vars reach the hosts, host vars beat group vars
    assert inv.var("kp-wh-1", "arch") == "aarch64"
    assert inv.var("kp-wh-3", "os") == {"family": "openeuler", "version": "22.03"}
    assert inv.var("hg-st-2", "os")["family"] == "uos"
    assert inv.var("nv-gpu-1", "accelerators")[0]["kind"] == "nvidia"
    assert inv.var("as-npu-1", "nics")[0]["rdma"] == {
        "type": "roce_v2",
        "device": "mlx5_0",
        "mtu": 4096,
        "gid_index": 3,
        "pfc_priority": 3,
        "ecn": True,
    }
    assert [p for p in inv.problems if p.severity == "warning"] == []


def test_precedence_child_group_over_parent_and_host_over_group(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(
        "all:\n"
        "  vars:\n"
        "    dataplat_extra_groups: [gpu]\n"
        "    decision_port: 1000\n"
        "    serving_port: 2000\n"
        "    metrics_port: 3000\n"
        "  children:\n"
        "    serving:\n"
        "      vars: {decision_port: 1100, serving_port: 2100}\n"
        "      children:\n"
        "        gpu:\n"
        "          vars: {decision_port: 1200}\n"
        "          hosts:\n"
        "            g[1:2]:\n"
        "    warehouse:\n"
        "      vars: {warehouse_members_per_host: 2}\n"
        "      hosts:\n"
        "        g1: {decision_port: 1300}\n"
    )
    inv, problems = validate_inventory(path)
    assert [p for p in problems if p.severity == "error"] == []
    assert inv is not None
    assert list(inv.hosts) == ["g1", "g2"]
    assert inv.var("g1", "decision_port") == 1300  # host
    assert inv.var("g2", "decision_port") == 1200  # child group beats parent group
    assert inv.var("g2", "serving_port") == 2100  # parent group beats all
    assert inv.var("g2", "metrics_port") == 3000  # all beats role defaults
    assert inv.groups["serving"] == ["g1", "g2"]
    assert set(inv.hosts["g2"].groups) == {"gpu", "serving"}
    origin = inv.origin("g2", "decision_port")
    assert (origin.line, origin.field) == (12, "all.children.serving.children.gpu.vars.decision_port")


def test_host_in_group_without_vars_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  children:\n    warehouse:\n      hosts:\n        wh-1:\n        wh-2: {}\n")
    inv = load_inventory(path)
    assert list(inv.hosts) == ["wh-1", "wh-2"]
    assert inv.hosts["wh-1"].address == "wh-1"


def test_expand_host_pattern() -> None:
    assert expand_host_pattern("kp-wh-[1:3]") == ["kp-wh-1", "kp-wh-2", "kp-wh-3"]
    assert expand_host_pattern("n[08:10].bank") == ["n08.bank", "n09.bank", "n10.bank"]
    assert expand_host_pattern("r[a:c]") == ["ra", "rb", "rc"]
    assert expand_host_pattern("plain") == ["plain"]


def test_wrong_types_are_all_reported_with_line_and_field() -> None:
    path = BAD / "wrong-types.yml"
    errs = errors_of(path)
    port = only(errs, "all.vars.stream_client_port")
    assert (port.file, port.line, port.column) == (str(path), 4, 5)
    assert "integer" in port.message and "drop the quotes" in port.hint
    assert only(errs, "all.vars.warehouse_members_per_host").line == 5
    cores = only(errs, "all.hosts.kp-wh-1.cores")
    assert (cores.line, cores.column) == (10, 7)
    assert "sixty-four" in cores.message
    assert only(errs, "all.hosts.kp-wh-1.memory_gb").line == 11
    assert only(errs, "all.hosts.kp-wh-1.nics").line == 12
    # a rejected members_per_host does not also produce a second, derived error
    assert len(errs) == 5, [p.render() for p in errs]


def test_unknown_group() -> None:
    path = BAD / "unknown-group.yml"
    errs = errors_of(path)
    assert len(errs) == 1
    p = errs[0]
    assert (p.line, p.column, p.field) == (11, 5, "all.children.databases")
    assert "unknown group 'databases'" in p.message
    assert "dataplat_extra_groups" in p.hint
    assert p.render().startswith(f"{path}:11:5: all.children.databases: unknown group")


def test_extra_groups_are_allowed(tmp_path: Path) -> None:
    text = (
        (BAD / "unknown-group.yml")
        .read_text()
        .replace("all:\n", "all:\n  vars:\n    dataplat_extra_groups: [databases]\n", 1)
    )
    path = tmp_path / "ok.yml"
    path.write_text(text)
    inv = load_inventory(path)
    assert inv.groups["databases"] == ["db-1"]


def test_duplicate_ports_after_placement() -> None:
    path = BAD / "duplicate-ports.yml"
    errs = errors_of(path)
    assert len(errs) == 1
    p = errs[0]
    assert (p.file, p.line, p.field) == (str(path), 5, "all.vars.stream_client_port")
    assert "10.0.0.31:55432 is bound twice" in p.message
    assert "pg0" in p.message and "nats0" in p.message
    assert "stream_client_port" in p.hint


def test_member_ports_collide_with_another_component(tmp_path: Path) -> None:
    # the second member's PostgreSQL port (55433) is the stream client port
    path = tmp_path / "inv.yml"
    path.write_text(
        "all:\n  vars:\n    warehouse_members_per_host: 2\n    stream_client_port: 55433\n"
        "  hosts:\n    h1:\n  children:\n    warehouse: {hosts: {h1: }}\n    stream: {hosts: {h1: }}\n"
    )
    errs = errors_of(path)
    assert [(p.line, p.field) for p in errs] == [(4, "all.vars.stream_client_port")]
    assert "pg1" in errs[0].message


def test_serving_pool_without_matching_accelerator() -> None:
    path = BAD / "pool-without-accelerator.yml"
    errs = errors_of(path)
    assert len(errs) == 1
    p = errs[0]
    assert (p.line, p.column, p.field) == (9, 9, "all.vars.serving_pools[1].accelerator")
    assert "'gpu' needs nvidia" in p.message and "ascend" in p.message
    assert "kind: nvidia" in p.hint


def test_bad_arch() -> None:
    path = BAD / "bad-arch.yml"
    errs = errors_of(path)
    assert len(errs) == 1
    p = errs[0]
    assert (p.line, p.column, p.field) == (10, 11, "all.children.warehouse.hosts.kp-wh-1.arch")
    assert "arm64" in p.message
    assert "aarch64" in p.hint


def test_yaml_syntax_error_is_a_parse_error() -> None:
    path = BAD / "yaml-syntax.yml"
    with pytest.raises(InventoryParseError) as info:
        load_inventory(path)
    assert info.value.exit_code == 2
    (p,) = info.value.problems
    assert (p.file, p.line, p.column) == (str(path), 7, 3)
    assert "YAML syntax error" in p.message and "line 6" in p.message


@pytest.mark.parametrize("name,expected", [("not-a-mapping.yml", "mapping of groups, not a list")])
def test_other_unparseable_files(name: str, expected: str) -> None:
    with pytest.raises(InventoryParseError) as info:
        load_inventory(BAD / name)
    assert expected in info.value.problems[0].message


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InventoryParseError, match="not found"):
        load_inventory(tmp_path / "missing.yml")
    (tmp_path / "empty.yml").write_text("# nothing\n")
    with pytest.raises(InventoryParseError, match="empty"):
        load_inventory(tmp_path / "empty.yml")


def test_several_errors_are_all_reported_at_once() -> None:
    path = BAD / "several-errors.yml"
    errs = errors_of(path)
    where = {(p.line, p.field) for p in errs}
    assert (8, "all.hosts.hg-1.arch") in where
    assert (9, "all.hosts.hg-1.cores") in where
    assert (15, "all.hosts.hg-2.nics[0].rdma.mtu") in where
    assert (24, "all.children.analytics") in where
    assert (4, "all.vars.stream_monitor_port") in where  # collides with metrics_port 59100
    assert (17, "all.children.warehouse") in where  # one member: no synchronous standby
    mtu = only(errs, "all.hosts.hg-2.nics[0].rdma.mtu")
    assert "1500" in mtu.message and "4096" in mtu.hint
    sync = only(errs, "all.children.warehouse")
    assert "synchronous standby" in sync.message and "warehouse_members_per_host: 2" in sync.hint
    # sorted by line
    assert [p.line for p in errs] == sorted(p.line for p in errs)


def test_single_member_with_synchronous_mode() -> None:
    errs = errors_of(BAD / "single-member-sync.yml")
    assert len(errs) == 1
    assert errs[0].field == "all.children.warehouse.hosts.wh-1.warehouse_members_per_host"
    assert errs[0].line == 8


def test_cpu_model_contradicts_arch(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(
        "all:\n  hosts:\n    h1:\n      arch: aarch64\n      cpu_model: Hygon C86 7285\n"
        "  children:\n    loadgen: {hosts: {h1: }}\n"
    )
    errs = errors_of(path)
    assert [(p.line, p.field) for p in errs] == [(4, "all.hosts.h1.arch")]
    assert "x86_64" in errs[0].hint


def test_problem_render_and_roundtrip() -> None:
    p = Problem("error", "inv.yml", 3, 7, "all.hosts.h1.arch", "bad arch", "use aarch64")
    assert p.render() == "inv.yml:3:7: all.hosts.h1.arch: bad arch (fix: use aarch64)"
    assert Problem.from_dict(p.to_dict()) == p
    assert Problem("warning", "f", 1, 1, "x", "m").render() == "f:1:1: x: m"
