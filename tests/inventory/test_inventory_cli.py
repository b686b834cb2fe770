"""`dataplat inventory check` through the real entry point, offline and online."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
from inventory_paths import BAD, EXAMPLE, LOCAL

from dataplat.inventory.check import check_inventory


def test_offline_json_local_is_ok(dataplat) -> None:
    rc, out, _ = dataplat("inventory", "check", "-i", str(LOCAL), "--offline", "--json")
    assert rc == 0
    report = json.loads(out)
    assert report["ok"] is True and report["parsed"] is True and report["offline"] is True
    assert report["counts"]["error"] == 0 and report["counts"]["warning"] == 1
    names = [i["name"] for i in report["plan"]["instances"]]
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
    assert report["findings"] == [] and report["facts"] == {}


def test_offline_default_inventory_is_local(dataplat) -> None:
    rc, out, _ = dataplat("inventory", "check", "--offline", "--json")
    assert rc == 0
    assert json.loads(out)["inventory"] == str(LOCAL)


def test_offline_example_is_ok(dataplat) -> None:
    rc, out, _ = dataplat("inventory", "check", "-i", str(EXAMPLE), "--offline", "--json")
    assert rc == 0, out
    report = json.loads(out)
    assert report["counts"] == {"error": 0, "warning": 0, "info": 0}
    assert len(report["hosts"]) == 16


@pytest.mark.parametrize(
    "name",
    [
        "wrong-types.yml",
        "unknown-group.yml",
        "duplicate-ports.yml",
        "pool-without-accelerator.yml",
        "bad-arch.yml",
        "several-errors.yml",
        "single-member-sync.yml",
    ],
)
def test_offline_json_errors_exit_1(dataplat, name: str) -> None:
    rc, out, _ = dataplat("inventory", "check", "-i", str(BAD / name), "--offline", "--json")
    assert rc == 1
    report = json.loads(out)
    assert report["ok"] is False and report["counts"]["error"] >= 1
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    assert all(p["file"] and p["line"] > 0 and p["field"] and p["hint"] for p in errors), errors


@pytest.mark.parametrize("name", ["yaml-syntax.yml", "not-a-mapping.yml", "does-not-exist.yml"])
def test_unparseable_exits_2(dataplat, name: str) -> None:
    rc, out, _ = dataplat("inventory", "check", "-i", str(BAD / name), "--offline", "--json")
    assert rc == 2
    report = json.loads(out)
    assert report["parsed"] is False and report["problems"][0]["severity"] == "error"


def test_human_output(dataplat) -> None:
    rc, out, _ = dataplat("inventory", "check", "-i", str(BAD / "duplicate-ports.yml"), "--offline")
    assert rc == 1
    assert f"error: {BAD / 'duplicate-ports.yml'}:5:5: all.vars.stream_client_port: " in out
    assert "Placement" in out and "nats0" in out and "FAILED" in out
    rc, _, err = dataplat("inventory", "check", "-i", str(BAD / "yaml-syntax.yml"))
    assert rc == 2 and "yaml-syntax.yml:7:3" in err


def test_online_check_of_the_local_inventory(tmp_path: Path) -> None:
    """A real facts run through Ansible against localhost; no GPU, NPU or RDMA NIC exists here."""
    report = check_inventory(LOCAL, offline=False, home=tmp_path / "home")
    assert report.ok, [p.render() for p in report.errors]
    assert report.unreachable == {}
    facts = report.facts["localhost"]
    assert facts.arch == platform.machine()
    assert facts.cores and facts.cores >= 1 and facts.memory_gb and facts.memory_gb > 0
    assert facts.os_id
    found = {f.item: f for f in report.findings}
    assert found["arch"].status == "unverifiable" and found["arch"].fact == platform.machine()
    for item in ("accelerators:nvidia", "accelerators:ascend", "rdma"):
        assert found[item].status == "unverifiable"
        assert "cannot check" in found[item].message
    assert Path(report.facts_run).is_dir()  # the run's artefacts under <home>/runs/
    assert str(tmp_path / "home" / "runs") in report.facts_run


def test_online_check_finds_a_wrong_arch_claim(tmp_path: Path) -> None:
    wrong = "aarch64" if platform.machine() == "x86_64" else "x86_64"
    text = LOCAL.read_text().replace(
        "      rack: local\n",
        f"      rack: local\n      arch: {wrong}\n      accelerators: [{{kind: nvidia, count: 1}}]\n",
    )
    path = tmp_path / "local.yml"
    path.write_text(text)
    report = check_inventory(path, offline=False, home=tmp_path / "home")
    assert not report.ok
    fields = {p.field: p for p in report.errors}
    arch = fields["all.hosts.localhost.arch"]
    assert f"declared arch {wrong} but the host is {platform.machine()}" in arch.message
    assert arch.line > 0 and arch.file == str(path)
    assert any("declared 1 nvidia accelerators not found" in p.message for p in report.errors)


def test_online_unreachable_host_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(
        "all:\n"
        "  vars:\n"
        "    warehouse_members_per_host: 2\n"
        "  hosts:\n"
        "    ghost:\n"
        "      ansible_connection: ssh\n"
        "      ansible_host: 127.0.0.1\n"
        "      ansible_port: 1\n"
        "      ansible_ssh_common_args: -o ConnectTimeout=2 -o BatchMode=yes\n"
        "  children:\n"
        "    warehouse: {hosts: {ghost: }}\n"
    )
    report = check_inventory(path, offline=False, home=tmp_path / "home")
    assert "ghost" in report.unreachable
    (err,) = [p for p in report.errors if "ghost" in p.message]
    assert (err.line, err.field) == (5, "all.hosts.ghost")
