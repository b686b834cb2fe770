"""roles/rdma and roles/accelerators: parsers, the judgement against the inventory, real role runs.

No RDMA NIC, GPU or NPU exists on the machines that run these tests (and systemd is not
what runs them either): the parsers are tested on tool outputs in their real formats
(tests/inventory/samples/README-hardware.md says where each comes from), and the roles are
run for real through ansible-runner against localhost, where they must skip (nothing
declared) or report the missing hardware as an error at the inventory's file, line and field.
The perftest pairing is run for real too, with a sysfs tree under tmp_path and stand-ins for
ib_write_bw / ib_write_lat (fakeperftest/: a real TCP rendezvous, the tools' sample output).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from inventory_paths import EXAMPLE, LOCAL, SAMPLES

from dataplat.deploy.runner import run_playbook
from dataplat.inventory import accelerators, rdma
from dataplat.inventory.hwcheck import run_check
from dataplat.inventory.loader import load_inventory

RDMA = SAMPLES / "rdma"
ACC = SAMPLES / "accelerators"


def text(path: Path) -> str:
    return path.read_text()


def test_parse_ib_write_bw_nvidia_doc_sample() -> None:
    bw = rdma.parse_write_bw(text(RDMA / "ib_write_bw-roce-report_gbits.txt"))
    assert bw is not None
    assert (bw.device, bw.link_type, bw.gid_index, bw.mtu) == ("rocep1s0f0", "Ethernet", 3, 1024)
    assert bw.rows == 5 and bw.size_bytes == 65536
    assert bw.bw_avg_gbps == 92.57 and bw.bw_peak_gbps == 0.0  # --run_infinitely measures no peak


def test_parse_ib_write_bw_in_mib_converts_to_gbits() -> None:
    header = " #bytes     #iterations    BW peak[MiB/sec]    BW average[MiB/sec]   MsgRate[Mpps]"
    bw = rdma.parse_write_bw(
        header + "\n 65536      5000             11025.44            11024.71   0.176395\n"
    )
    assert bw is not None and bw.bw_avg_gbps == round(11024.71 * 1048576 * 8 / 1e9, 3)
    assert rdma.parse_write_bw("Couldn't connect to 10.0.0.2:18515\n") is None


def test_parse_ib_write_lat_source_layout() -> None:
    lat = rdma.parse_write_lat(text(RDMA / "ib_write_lat-roce.txt"))
    assert lat is not None
    assert (lat.device, lat.gid_index, lat.mtu, lat.size_bytes, lat.iterations) == (
        "mlx5_0",
        3,
        4096,
        2,
        1000,
    )
    assert (lat.t_min_us, lat.t_typical_us, lat.p99_us, lat.p999_us) == (1.54, 1.58, 1.65, 2.13)


def test_parse_ibv_devinfo_ports_and_gid_table() -> None:
    devices = rdma.parse_ibv_devinfo(text(RDMA / "ibv_devinfo-v-connectx6dx.txt"))
    assert list(devices) == ["mlx5_0", "mlx5_1"]
    up, down = devices["mlx5_0"].ports[1], devices["mlx5_1"].ports[1]
    assert devices["mlx5_0"].fw_ver == "22.39.2048" and devices["mlx5_0"].vendor_part_id == 4125
    assert up.active and up.active_mtu == 4096 and up.link_layer == "Ethernet"
    assert up.gids[3] == ("::ffff:10.20.12.31", "RoCE v2") and up.gids[2][1] == "RoCE v1"
    assert not down.active and down.active_mtu == 1024


def test_parse_mlnx_qos_and_ecn() -> None:
    qos = rdma.parse_mlnx_qos(text(RDMA / "mlnx_qos-pfc3.txt"))
    assert qos == rdma.Qos("dscp", (3,))
    assert rdma.parse_mlnx_qos("Priority trust state: pcp\n") is None
    ecn = rdma.parse_ecn("/sys/class/net/x/ecn/roce_np/enable/3:1\n/sys/class/net/x/ecn/roce_rp/enable/3:0\n")
    assert ecn == {"roce_np": {3: True}, "roce_rp": {3: False}}


def test_parse_rdma_link_json_and_text() -> None:
    js = (
        '[{"ifindex":0,"ifname":"mlx5_0","port":1,"state":"ACTIVE","physical_state":"LINK_UP","netdev":"e0"}]'
    )
    assert rdma.parse_rdma_link(js) == {
        "mlx5_0/1": {"state": "ACTIVE", "physical_state": "LINK_UP", "netdev": "e0"}
    }
    line = "link mlx5_1/1 state DOWN physical_state DISABLED netdev ens2f1np1 \n"
    assert rdma.parse_rdma_link(line)["mlx5_1/1"]["state"] == "DOWN"


def test_parse_nvidia_smi_query_csv() -> None:
    rows = accelerators.parse_gpu_csv(text(ACC / "nvidia-smi-query-a800-7of8.csv"))
    assert [r.index for r in rows] == list(range(7))
    assert {(r.name, r.driver_version, r.memory_mib) for r in rows} == {
        ("NVIDIA A800-SXM4-80GB", "535.161.08", 81920)
    }
    assert (
        accelerators.parse_gpu_csv("NVIDIA-SMI has failed because it couldn't communicate with the driver")
        == []
    )


def _atlas_probe(qos: str, ecn: str) -> str:
    """An rdma probe of as-npu-1 assembled from the samples (sysfs paths relative to /sys/class)."""
    sysfs = (
        (SAMPLES / "probe-atlas800t-a2.txt").read_text().split("@@@dataplat infiniband\n")[1].split("@@@")[0]
    )
    sysfs = sysfs.replace("/sys/class/", "")
    devinfo = text(RDMA / "ibv_devinfo-v-connectx6dx.txt")
    return (
        f"@@@dataplat infiniband\n{sysfs}@@@dataplat ibv_devinfo\n{devinfo}@@@rc 0\n"
        f"@@@dataplat rdma-link\n[]\n@@@rc 0\n"
        f"@@@dataplat mlnx_qos enp189s0f0np0\n{qos}@@@rc 0\n@@@dataplat ecn enp189s0f0np0\n{ecn}"
        "@@@dataplat mlnx_qos enp189s0f1np1\n@@@absent\n@@@dataplat ecn enp189s0f1np1\n"
        "@@@dataplat perftest\n/usr/bin/ib_write_bw\n/usr/bin/ib_write_lat\n"
    )


def test_rdma_analysis_locates_every_contradicted_claim() -> None:
    inv = load_inventory(EXAMPLE)
    ecn = "net/enp189s0f0np0/ecn/roce_np/enable/3:1\nnet/enp189s0f0np0/ecn/roce_rp/enable/3:0\n"
    result = {
        "host": "as-npu-1",
        "probe": _atlas_probe(text(RDMA / "mlnx_qos-pfc3.txt"), ecn),
        "perftest": {
            "peer": "as-npu-2",
            "bw": {"rc": 0, "stdout": text(RDMA / "ib_write_bw-roce-report_gbits.txt"), "stderr": ""},
            "lat": {"rc": 0, "stdout": text(RDMA / "ib_write_lat-roce.txt"), "stderr": ""},
        },
    }
    report = rdma.analyse(inv, [result])
    assert report.status == "failed"
    assert report.pairs[0]["bw"]["bw_avg_gbps"] == 92.57 and report.pairs[0]["lat"]["t_typical_us"] == 1.58
    errors = {
        (p.field.split(".")[-3:][0], p.field.rsplit(".", 1)[-1]): p for p in report.problems if p.is_error
    }
    fields = sorted(p.field for p in report.problems if p.is_error)
    # mlx5_1 is down with active_mtu 1024 in the ibv_devinfo sample; ECN is off on the rp side
    assert any(f.endswith("nics[1].rdma.mtu") for f in fields), fields
    assert any(f.endswith("nics[0].rdma.ecn") for f in fields), fields
    assert all(p.file == str(EXAMPLE) and p.line > 0 for p in report.problems if p.is_error), errors
    ok = {f.message for f in report.findings if f.status == "ok"}
    assert "enp189s0f0np0: PFC on priority 3" in ok
    assert any("92.57 Gb/s" in m and "1.58 us" in m for m in ok)
    infos = [p.message for p in report.problems if p.severity == "info"]
    assert any("mlnx_qos is not installed" in m for m in infos)


def test_rdma_analysis_pfc_off_and_failed_perftest() -> None:
    inv = load_inventory(EXAMPLE)
    qos = text(RDMA / "mlnx_qos-pfc3.txt").replace("enabled     0   0   0   1", "enabled     0   0   0   0")
    result = {
        "host": "as-npu-1",
        "probe": _atlas_probe(qos, ""),
        "perftest": {
            "peer": "as-npu-2",
            "bw": {"rc": 1, "stdout": "", "stderr": "Couldn't connect"},
            "lat": {},
        },
    }
    report = rdma.analyse(inv, [result])
    messages = [p.message for p in report.problems if p.is_error]
    assert any("PFC is not enabled on priority 3" in m for m in messages)
    assert any(
        "ib_write_bw from as-npu-1 to as-npu-2 gave no result" in m and "Couldn't connect" in m
        for m in messages
    )


def test_accelerator_count_mismatch_names_the_claim() -> None:
    inv = load_inventory(EXAMPLE)
    csv = text(ACC / "nvidia-smi-query-a800-7of8.csv")
    probe = f"@@@dataplat nvidia-smi\n{csv}@@@rc 0\n@@@dataplat npu-smi\n@@@absent\n"
    report = accelerators.analyse(inv, [{"host": "nv-gpu-1", "probe": probe}])
    assert report.status == "failed"
    (err,) = [p for p in report.problems if p.is_error]
    assert err.file == str(EXAMPLE) and err.line > 0
    assert err.field.endswith("nv-gpu-1.accelerators[0].count")
    assert "declared 8 nvidia accelerators but nvidia-smi shows 7" in err.message
    assert report.hosts["nv-gpu-1"]["nvidia"]["driver"] == ["535.161.08"]


def test_accelerator_npu_counts_match_and_extra_devices_are_errors() -> None:
    inv = load_inventory(EXAMPLE)
    npu = f"@@@dataplat nvidia-smi\n@@@absent\n@@@dataplat npu-smi\n{text(ACC / 'npu-smi-910b.txt')}@@@rc 0\n"
    report = accelerators.analyse(inv, [{"host": "as-npu-1", "probe": npu}])
    assert report.ok and report.status == "ok"
    assert report.hosts["as-npu-1"]["ascend"]["driver"] == ["23.0.6"]
    nine = text(ACC / "nvidia-smi-query-a800-7of8.csv") + "".join(
        f"{i}, NVIDIA A800-SXM4-80GB, GPU-x{i}, 535.161.08, 81920 MiB\n" for i in (7, 8)
    )
    report = accelerators.analyse(
        inv,
        [
            {
                "host": "nv-gpu-1",
                "probe": f"@@@dataplat nvidia-smi\n{nine}@@@rc 0\n@@@dataplat npu-smi\n@@@absent\n",
            }
        ],
    )
    assert [p.message for p in report.problems if p.is_error] == [
        "host nv-gpu-1: declared 8 nvidia accelerators but nvidia-smi shows 9"
    ]


# --------------------------------------------------------------------------- real role runs


def _claiming_inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "claims.yml"
    inv.write_text(
        "all:\n"
        "  vars:\n"
        "    ansible_connection: local\n"
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        "  hosts:\n"
        "    localhost:\n"
        "      ansible_host: 127.0.0.1\n"
        "      nics:\n"
        "        - name: eth0\n"
        "          rdma: {type: roce_v2, device: mlx5_0, mtu: 4096, gid_index: 3,"
        " pfc_priority: 3, ecn: true}\n"
        "      accelerators:\n"
        "        - {kind: nvidia, model: NVIDIA A800-SXM4-80GB, count: 8, memory_gb: 80}\n"
        "  children:\n"
        "    serving:\n"
        "      hosts:\n"
        "        localhost: {}\n"
    )
    return inv


def test_roles_skip_quickly_on_the_local_inventory(tmp_path: Path) -> None:
    """localhost declares neither RDMA nor accelerators: both roles skip it, change nothing."""
    t0 = time.perf_counter()
    result = run_playbook(
        "rdma.yml", LOCAL, tmp_path, extravars={"dataplat_home": str(tmp_path)}, ident_prefix="rdma"
    )
    seconds = time.perf_counter() - t0
    assert result.ok and result.changed == 0
    messages = [
        e["event_data"].get("res", {}).get("msg") for e in result.events() if e.get("event") == "runner_on_ok"
    ]
    assert "skipped: localhost declares no RDMA NIC (nics[].rdma)" in messages
    assert not (tmp_path / "rdma" / "report.json").exists()
    assert seconds < 15
    report = run_check("accelerators", LOCAL, tmp_path)
    assert report["status"] == "skipped" and report["ok"]
    assert report["reason"] == "no host of local.yml declares accelerators: nothing to check"
    assert json.loads((tmp_path / "accelerators" / "report.json").read_text())["status"] == "skipped"


def test_roles_report_missing_hardware_at_the_claims(tmp_path: Path) -> None:
    """This machine has no /sys/class/infiniband and no nvidia-smi: both claims are errors, located."""
    inv = _claiming_inventory(tmp_path)
    report = run_check("rdma", inv, tmp_path / "home")
    assert report["status"] == "failed" and not report["ok"]
    (err,) = [p for p in report["problems"] if p["severity"] == "error"]
    assert (err["file"], err["line"], err["field"]) == (
        str(inv),
        10,
        "all.hosts.localhost.nics[0].rdma.device",
    )
    assert "/sys/class/infiniband does not exist" in err["message"]
    assert json.loads((tmp_path / "home" / "rdma" / "report.json").read_text())["status"] == "failed"

    report = run_check("accelerators", inv, tmp_path / "home")
    (err,) = [p for p in report["problems"] if p["severity"] == "error"]
    assert (err["line"], err["field"]) == (12, "all.hosts.localhost.accelerators[0].count")
    assert "nvidia-smi is not installed" in err["message"]


def test_role_fails_the_play_on_a_contradicted_claim(tmp_path: Path) -> None:
    """In `up` (rdma_fail_on_error default true) the play fails with the located message."""
    inv = _claiming_inventory(tmp_path)
    result = run_playbook("accelerators.yml", inv, tmp_path, extravars={"dataplat_home": str(tmp_path)})
    assert not result.ok
    (failure,) = result.failures
    assert f"{inv}:12:" in failure["msg"] and "accelerators[0].count" in failure["msg"]


@pytest.mark.parametrize("kind", ["rdma", "accelerators"])
def test_cli_shows_the_skip(kind: str, tmp_path: Path, dataplat) -> None:  # type: ignore[no-untyped-def]
    rc, out, _ = dataplat("inventory", kind, "-i", str(LOCAL), "--home", str(tmp_path), "--json")
    assert rc == 0 and json.loads(out)["status"] == "skipped"
    rc, out, _ = dataplat("inventory", kind, "-i", str(LOCAL), "--home", str(tmp_path), "--last")
    assert rc == 0 and "skipped" in out and "nothing to check" in out


def _two_free_ports() -> int:
    """A port free, with the next one free too, on 127.0.0.1 and 127.0.0.2 (a busy machine runs
    other platforms whose ports may sit right after a free one)."""
    import socket

    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        try:
            for p in (port, port + 1):
                for host in ("127.0.0.1", "127.0.0.2"):
                    with socket.socket() as s:
                        s.bind((host, p))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free ports")


def test_perftest_pairs_run_server_then_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hosts (127.0.0.1, 127.0.0.2, connection local) declare mlx5_0: the role starts the server
    on the second, the client on the first waits for it, runs, and the report has the pair.

    No RDMA NIC exists here: a sysfs tree under tmp_path stands in for /sys/class (rdma_sysfs_root)
    and fakeperftest/ for ib_write_bw / ib_write_lat (real sample output, real TCP rendezvous).
    """

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = Path(__file__).resolve().parent / "fakeperftest" / "fake_perftest.py"
    for tool in ("ib_write_bw", "ib_write_lat"):
        (bin_dir / f"{tool}.py").symlink_to(fake)  # the fake tells bw from lat by its name
        (bin_dir / tool).write_text(f'#!/bin/sh\nexec {sys.executable} {bin_dir / (tool + ".py")} "$@"\n')
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for rel, value in {
        "infiniband/mlx5_0/ports/1/state": "4: ACTIVE",
        "infiniband/mlx5_0/ports/1/link_layer": "Ethernet",
        "infiniband/mlx5_0/ports/1/gids/3": "0000:0000:0000:0000:0000:ffff:7f00:0001",
        "infiniband/mlx5_0/ports/1/gid_attrs/types/3": "RoCE v2",
        "infiniband/mlx5_0/device/net/eth0/mtu": "9000",
    }.items():
        (tmp_path / "sys" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "sys" / rel).write_text(value + "\n")
    free = _two_free_ports()  # the bw server listens on the port, the lat server on the next
    inv = tmp_path / "pair.yml"
    inv.write_text(
        "all:\n  vars:\n    ansible_connection: local\n"
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        f"    rdma_perftest_port: {free}\n"
        f"    rdma_sysfs_root: {tmp_path / 'sys'}\n"
        "    nics:\n      - name: eth0\n"
        "        rdma: {type: roce_v2, device: mlx5_0, mtu: 4096, gid_index: 3}\n"
        "  hosts:\n    rdma-a: {ansible_host: 127.0.0.1}\n    rdma-b: {ansible_host: 127.0.0.2}\n"
    )
    report = run_check("rdma", inv, tmp_path / "home")
    assert report["status"] == "ok", report["problems"]
    (pair,) = report["pairs"]
    assert (pair["client"], pair["server"]) == ("rdma-a", "rdma-b")
    assert pair["bw"]["bw_avg_gbps"] == 92.57 and pair["lat"]["t_typical_us"] == 1.58
    again = run_playbook(
        "rdma.yml", inv, tmp_path, extravars={"dataplat_home": str(tmp_path / "home")}, ident_prefix="rdma"
    )
    assert again.ok and again.changed == 0
