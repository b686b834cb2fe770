"""Parsing probe outputs and comparing claims with facts.

The hardware of these samples (Kunpeng 920, Ascend 910B NPUs, NVIDIA A800 GPUs,
ConnectX RDMA NICs) cannot exist on the machines that run the tests: the parsers
are tested on captured outputs in the tools' real formats (tests/inventory/samples/).
"""

from __future__ import annotations

from inventory_paths import EXAMPLE, SAMPLES

from dataplat.inventory.facts import (
    HostFacts,
    compare,
    parse_infiniband,
    parse_npu_smi,
    parse_nvidia_smi,
    parse_os_release,
    parse_probe,
    split_probe,
)
from dataplat.inventory.loader import load_inventory


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def by_item(findings: list, item: str) -> list:
    return [f for f in findings if f.item == item]


def test_parse_nvidia_smi() -> None:
    gpus = parse_nvidia_smi(sample("nvidia-smi-a800.txt"))
    assert len(gpus) == 8
    assert gpus[0].name == "NVIDIA A800-SXM4-80GB" and gpus[0].memory_gb == 80.0
    assert parse_nvidia_smi(sample("nvidia-smi-driver-failed.txt")) == []


def test_parse_npu_smi_910b() -> None:
    npus = parse_npu_smi(sample("npu-smi-910b.txt"))
    assert [n.index for n in npus] == list(range(8))
    assert {n.name for n in npus} == {"910B3"}
    assert {n.health for n in npus} == {"OK"}
    assert {n.memory_gb for n in npus} == {64.0}


def test_parse_npu_smi_legacy_910() -> None:
    npus = parse_npu_smi(sample("npu-smi-910-legacy.txt"))
    got = [(n.name, n.health, n.memory_gb) for n in npus]
    assert got == [("910A", "OK", 32.0), ("910A", "Warning", 32.0)]


def test_parse_infiniband_sysfs() -> None:
    section = split_probe(sample("probe-a800-server.txt"))["infiniband"]
    devices = parse_infiniband(section)
    assert devices is not None and list(devices) == ["mlx5_0", "mlx5_1", "mlx5_2"]
    port = devices["mlx5_0"].ports[1]
    assert port.link_layer == "Ethernet" and port.active
    assert port.gids[3].type == "RoCE v2" and port.gids[3].ndev == "ens1f0np0"
    assert port.gids[3].gid.endswith("ffff:0a14:1629")  # 10.20.22.41
    assert devices["mlx5_0"].netdev_mtus == {"ens1f0np0": 9000}
    assert devices["mlx5_0"].roce_mtu() == 4096
    assert devices["mlx5_2"].roce_mtu() == 1024 and not devices["mlx5_2"].ports[1].active
    assert parse_infiniband("@@@absent") is None


def test_parse_os_release_kylin() -> None:
    release = parse_os_release('NAME="Kylin Linux Advanced Server"\nID="kylin"\nVERSION_ID="V10"\n')
    assert release["ID"] == "kylin" and release["VERSION_ID"] == "V10"


def test_parse_probe_atlas() -> None:
    facts = parse_probe(sample("probe-atlas800t-a2.txt"))
    assert (facts.arch, facts.cores, facts.numa_nodes) == ("aarch64", 192, 8)
    assert facts.cpu_model == "Kunpeng-920"
    assert facts.memory_gb is not None and 1000 < facts.memory_gb < 1024
    assert (facts.os_family, facts.os_version) == ("openeuler", "22.03")
    assert facts.gpus is None and "not installed" in facts.gpu_note
    assert facts.npus is not None and len(facts.npus) == 8
    assert facts.rdma is not None and set(facts.rdma) == {"mlx5_0", "mlx5_1"}


def test_compare_atlas_host_with_example_claims_is_all_ok() -> None:
    inv = load_inventory(EXAMPLE)
    findings = compare("as-npu-1", inv.hosts["as-npu-1"].vars, parse_probe(sample("probe-atlas800t-a2.txt")))
    assert [f for f in findings if f.status == "mismatch"] == [], [f.message for f in findings]
    statuses = {f.item: f.status for f in findings if f.status == "ok"}
    for item in (
        "arch",
        "cpu_model",
        "cores",
        "memory_gb",
        "numa_nodes",
        "os",
        "rdma:mlx5_0",
        "rdma:mlx5_1",
        "accelerators:ascend",
    ):
        assert statuses.get(item) == "ok", item
    nvidia = by_item(findings, "accelerators:nvidia")
    assert [f.status for f in nvidia] == ["unverifiable"]
    assert "nvidia-smi is not installed" in nvidia[0].message
    pfc = [f for f in findings if "PFC" in f.message]
    assert pfc and all(f.status == "unverifiable" for f in pfc)


def test_compare_a800_host_finds_every_mismatch() -> None:
    inv = load_inventory(EXAMPLE)
    findings = compare("nv-gpu-1", inv.hosts["nv-gpu-1"].vars, parse_probe(sample("probe-a800-server.txt")))
    bad = [f for f in findings if f.status == "mismatch"]
    messages = " | ".join(f.message for f in bad)
    assert all(f.severity == "error" for f in bad)
    # 7 GPUs where 8 are declared
    (gpus,) = [f for f in bad if f.item == "accelerators:nvidia"]
    assert "declared 8" in gpus.message and "shows 7" in gpus.message
    assert (gpus.var, gpus.sub) == ("accelerators", (0, "count"))
    # mlx5_2 is down and its interface has MTU 1500; mlx5_3 does not exist
    assert "mlx5_2 port 1 is not ACTIVE" in messages
    assert "mlx5_2 MTU is 1024" in messages
    (absent,) = [f for f in bad if f.item == "rdma:mlx5_3"]
    assert "absent" in absent.message and absent.sub == (3, "rdma", "device")
    assert {f.item for f in bad} == {"accelerators:nvidia", "rdma:mlx5_2", "rdma:mlx5_3"}


def test_compare_arch_cores_memory_mismatch() -> None:
    claims = {
        "arch": "aarch64",
        "cores": 128,
        "memory_gb": 512,
        "numa_nodes": 4,
        "os": {"family": "kylin", "version": "V10"},
    }
    facts = HostFacts(
        arch="x86_64",
        cores=64,
        memory_gb=250.0,
        numa_nodes=2,
        os_family="uos",
        os_id="uos",
        os_version="20",
        os_name="UOS Server 20",
    )
    found = {f.item: f for f in compare("h", claims, facts)}
    for item in ("arch", "cores", "memory_gb", "numa_nodes", "os"):
        assert found[item].status == "mismatch", item
    assert "declared arch aarch64 but the host is x86_64" in found["arch"].message
    assert found["arch"].hint == "set arch: x86_64 (binaries are chosen by arch)"


def test_memory_tolerates_what_the_kernel_reserves() -> None:
    found = compare("h", {"memory_gb": 512}, HostFacts(memory_gb=497.3))
    (mem,) = [f for f in found if f.item == "memory_gb"]
    assert mem.status == "ok"


def test_declared_accelerators_without_tools_are_errors() -> None:
    claims = {
        "accelerators": [{"kind": "ascend", "count": 8}],
        "nics": [{"name": "eth1", "rdma": {"type": "roce_v2", "device": "mlx5_0"}}],
    }
    facts = HostFacts(
        arch="x86_64", gpu_note="nvidia-smi is not installed", npu_note="npu-smi is not installed"
    )
    found = compare("h", claims, facts)
    (npu,) = by_item(found, "accelerators:ascend")
    assert npu.status == "mismatch" and "declared 8 ascend accelerators not found" in npu.message
    (gpu,) = by_item(found, "accelerators:nvidia")
    assert gpu.status == "unverifiable"  # nothing declared: cannot check, not an error
    (rdma,) = by_item(found, "rdma:mlx5_0")
    assert rdma.status == "mismatch" and "/sys/class/infiniband does not exist" in rdma.message
