"""The Kubernetes target, rendered and validated offline (no API server exists here)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataplat.inventory.loader import load_inventory
from dataplat.k8s import cli as k8s_cli
from dataplat.k8s.render import K8S_ARCH, RenderResult, render_inventory, write_manifests
from dataplat.k8s.validate import validate_object

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "inventory" / "local.yml"
EXAMPLE = REPO / "inventory" / "examples" / "xinchuang-3az.yml"


@pytest.fixture(scope="module")
def example() -> RenderResult:
    return render_inventory(EXAMPLE)


@pytest.fixture(scope="module")
def local() -> RenderResult:
    return render_inventory(LOCAL)


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def arch_values(affinity: dict[str, Any] | None) -> set[str] | None:
    """The kubernetes.io/arch values a node affinity requires (None: no constraint)."""
    if not affinity:
        return None
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    for term in terms:
        for expr in term["matchExpressions"]:
            if expr["key"] == "kubernetes.io/arch":
                assert expr["operator"] == "In"
                return set(expr["values"])
    return None


@pytest.mark.parametrize("inventory", [LOCAL, EXAMPLE], ids=["local", "xinchuang-3az"])
def test_every_object_renders_and_validates(inventory: Path, tmp_path: Path) -> None:
    result = render_inventory(inventory)
    assert result.ok, "\n".join(p.render() for p in result.problems)
    kinds = {m.kind for m in result.manifests}
    assert {
        "Namespace",
        "Cluster",
        "ScheduledBackup",
        "StatefulSet",
        "ConfigMap",
        "Job",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "NetworkPolicy",
    } <= kinds
    for m in result.manifests:
        assert validate_object(m.obj) == [], (m.kind, m.name)
        assert m.obj["metadata"].get("namespace", "dataplat") == "dataplat"
    files = write_manifests(result, tmp_path)
    assert [f.name for f in files][:2] == ["00-global.yaml", "01-warehouse.yaml"]
    reread = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    assert reread == result.objects


def test_warehouse_spread_by_zone_with_sync_replication(example: RenderResult, local: RenderResult) -> None:
    cluster = example.get("Cluster", "warehouse")
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["affinity"]["enablePodAntiAffinity"] is True
    assert spec["affinity"]["topologyKey"] == "topology.kubernetes.io/zone"
    assert spec["affinity"]["podAntiAffinityType"] == "required"  # three members in three AZs
    assert spec["postgresql"]["synchronous"] == {"method": "any", "number": 1, "dataDurability": "required"}
    assert spec["postgresql"]["parameters"]["max_connections"] == "1000"
    creds = spec["backup"]["barmanObjectStore"]["s3Credentials"]
    assert creds["accessKeyId"]["name"] == creds["secretAccessKey"]["name"] == "warehouse-backup-s3"
    assert spec["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")
    assert example.get("ScheduledBackup", "warehouse-daily")["spec"]["cluster"]["name"] == "warehouse"
    # Kunpeng warehouse hosts
    assert arch_values(spec["affinity"]["nodeAffinity"]) == {"arm64"}
    # the embedded default: three members on one host, zone "local": still spread, but softly
    lspec = local.get("Cluster", "warehouse")["spec"]
    assert lspec["instances"] == 3
    assert lspec["affinity"]["podAntiAffinityType"] == "preferred"
    assert "nodeAffinity" not in lspec["affinity"]  # localhost declares no arch


def test_stream_statefulset_routes_and_r3_streams(example: RenderResult, local: RenderResult) -> None:
    sts = example.get("StatefulSet", "stream")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == "stream-headless"
    assert example.get("Service", "stream-headless")["spec"]["clusterIP"] == "None"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    aff = pod_spec(sts)["affinity"]
    assert aff["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert arch_values(aff["nodeAffinity"]) == {"amd64"}  # Hygon stream hosts
    conf = example.get("ConfigMap", "stream-config")["data"]
    assert conf["nats.conf"].count("nats://stream-") == 3
    assert "max_file_store: 2TB" in conf["nats.conf"]
    script = conf["create-streams.sh"]
    assert "stream add EVENTS --subjects 'bank.events.>' --replicas 3" in script
    assert "stream add DECISIONS --subjects 'bank.decisions.>' --replicas 3" in script
    job = example.get("Job", "stream-streams")
    assert pod_spec(job)["containers"][0]["command"][-1] == "/scripts/create-streams.sh"
    # one stream host: one node, no routes, streams capped at R1
    lconf = local.get("ConfigMap", "stream-config")["data"]
    assert local.get("StatefulSet", "stream")["spec"]["replicas"] == 1
    assert "routes" not in lconf["nats.conf"]
    assert "--replicas 1" in lconf["create-streams.sh"]


def test_lake_catalog_on_s3(example: RenderResult) -> None:
    data = example.get("ConfigMap", "lake-catalog")["data"]
    assert data["ICEBERG_WAREHOUSE"] == "s3://bank-lake/warehouse"
    assert data["ICEBERG_CATALOG_TYPE"] == "sql"
    assert data["ICEBERG_CATALOG_URI"].startswith("postgresql+psycopg://")
    assert not example.of_kind("StatefulSet")[1:]  # no MinIO unless asked


def test_accelerators_rdma_and_arch_per_pool(example: RenderResult) -> None:
    inv = load_inventory(EXAMPLE)
    from dataplat.inventory.placement import plan

    placed = plan(inv)
    deployments = {d["metadata"]["name"]: d for d in example.of_kind("Deployment")}
    assert {"serving-ascend-910b", "serving-a800", "serving-cpu", "decision"} == set(deployments)
    expected = {"serving-ascend-910b": "huawei.com/Ascend910", "serving-a800": "nvidia.com/gpu"}
    for name, dep in deployments.items():
        if not name.startswith("serving-"):
            continue
        pool = name.removeprefix("serving-")
        spec = pod_spec(dep)
        container = spec["containers"][0]
        limits = container["resources"]["limits"]
        accel = {k for k in limits if k in ("nvidia.com/gpu", "huawei.com/Ascend910")}
        assert accel == ({expected[name]} if name in expected else set()), name
        if name in expected:
            assert limits[expected[name]] == 1  # acceleratorsPerReplica default
            # RoCEv2 fabric: RDMA resource and the secondary network
            assert limits["rdma/hca_shared_devices_a"] == 1
            networks = dep["spec"]["template"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
            nad = networks.split("/", 1)[1]
            assert example.get("NetworkAttachmentDefinition", nad)["spec"]["config"]
        else:
            assert not any(k.startswith("rdma/") for k in limits)
        hosts = {i.host for i in placed.by_component("serving") if i.pool == pool}
        archs = {K8S_ARCH[inv.hosts[h].vars["arch"]] for h in hosts}
        assert arch_values(spec["affinity"]["nodeAffinity"]) == archs, name
        image = container["image"]
        assert ("mindie" in image) == (name == "serving-ascend-910b")
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert arch_values(pod_spec(deployments["serving-ascend-910b"])["affinity"]["nodeAffinity"]) == {"arm64"}
    assert arch_values(pod_spec(deployments["serving-a800"])["affinity"]["nodeAffinity"]) == {"amd64"}


@pytest.mark.parametrize("which", ["local", "example"])
def test_decision_autoscaling_and_pdb(which: str, example: RenderResult, local: RenderResult) -> None:
    result = example if which == "example" else local
    hpa = result.get("HorizontalPodAutoscaler", "decision")["spec"]
    pdb = result.get("PodDisruptionBudget", "decision")["spec"]
    assert pdb["minAvailable"] < hpa["minReplicas"] <= hpa["maxReplicas"]
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    if which == "example":
        assert hpa["minReplicas"] == 3  # decision_replicas: 3


def test_network_policies_monitors_secrets_images(example: RenderResult) -> None:
    policies = {p["metadata"]["name"]: p for p in example.of_kind("NetworkPolicy")}
    serving = policies["serving"]["spec"]
    assert serving["podSelector"]["matchLabels"] == {"dataplat.io/role": "serving"}
    sources = [peer for rule in serving["ingress"] for peer in rule["from"]]
    pod_sources = [p["podSelector"]["matchLabels"] for p in sources if "podSelector" in p]
    assert pod_sources == [{"dataplat.io/role": "decision"}]
    # decision pods carry the label the policy admits
    decision = example.get("Deployment", "decision")
    assert decision["spec"]["template"]["metadata"]["labels"]["dataplat.io/role"] == "decision"
    args = pod_spec(decision)["containers"][0]["args"]
    pools = {a.split("=", 1)[0] for a in args[1::2]}
    assert pools == {"ascend-910b", "a800", "cpu"} and set(args[::2]) == {"--pool"}
    wh = policies["warehouse"]["spec"]
    roles = [
        e["values"]
        for rule in wh["ingress"]
        for peer in rule["from"]
        for e in peer.get("podSelector", {}).get("matchExpressions", [])
    ]
    assert roles == [["decision", "batch", "lake", "loadgen"]]
    monitored = {m["metadata"]["name"] for m in example.of_kind("ServiceMonitor")}
    assert {"warehouse", "stream", "serving", "decision"} <= monitored
    assert not [s for s in example.of_kind("Secret") if s.get("data") or s.get("stringData")]
    images = [
        c["image"]
        for obj in example.objects
        if obj["kind"] in ("Deployment", "StatefulSet", "Job")
        for c in pod_spec(obj)["containers"]
    ]
    images.append(example.get("Cluster", "warehouse")["spec"]["imageName"])
    assert images and all(":" in i.rsplit("/", 1)[-1] and not i.endswith(":latest") for i in images)


def _variant(tmp_path: Path, extra_vars: str = "", replace: tuple[str, str] | None = None) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    if replace:
        assert replace[0] in text
        text = text.replace(replace[0], replace[1], 1)
    if extra_vars:
        text = text.replace("    decision_replicas: 3\n", "    decision_replicas: 3\n" + extra_vars, 1)
    path = tmp_path / "inventory.yml"
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(needle)


def test_keda_and_minio_switches(tmp_path: Path) -> None:
    inv = _variant(tmp_path, "    decision_autoscaler: keda\n    lake_minio: true\n")
    result = render_inventory(inv)
    assert result.ok, [p.render() for p in result.problems]
    assert not result.of_kind("HorizontalPodAutoscaler")
    so = result.get("ScaledObject", "decision")["spec"]
    assert so["triggers"][0]["type"] == "nats-jetstream"
    assert so["triggers"][0]["metadata"]["stream"] == "EVENTS"
    assert so["minReplicaCount"] == 3
    assert (
        so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        == 300
    )
    minio = result.get("StatefulSet", "minio")
    env = pod_spec(minio)["containers"][0]["env"]
    assert all("value" not in e for e in env if e["name"].startswith("MINIO_ROOT"))
    assert "minio" in {m["metadata"]["name"] for m in result.of_kind("ServiceMonitor")}


BROKEN = [
    pytest.param(
        "    decision_min_replicas: -1\n",
        None,
        "decision_min_replicas: -1",
        "all.vars.decision_min_replicas",
        "less than the minimum of 1",
        id="negative-min-replicas",
    ),
    pytest.param(
        "    decision_min_replicas: 4\n    decision_max_replicas: 2\n",
        None,
        "decision_max_replicas: 2",
        "all.vars.decision_max_replicas",
        "maxReplicas 2 is below minReplicas 4",
        id="max-below-min",
    ),
    pytest.param(
        "    k8s_values:\n      serving:\n        images: {ascend: null}\n",
        None,
        "accelerator: ascend",
        "all.vars.serving_pools[0].accelerator",
        "no image is set for ascend",
        id="kind-without-image",
    ),
    pytest.param(
        "",
        (
            "        accelerator: nvidia\n",
            "        accelerator: nvidia\n        image: nvcr.io/nvidia/tritonserver:latest\n",
        ),
        "image: nvcr.io/nvidia/tritonserver:latest",
        "all.vars.serving_pools[1].image",
        "is not allowed",
        id="image-latest",
    ),
    pytest.param(
        "",
        (
            "        accelerator: nvidia\n",
            "        accelerator: nvidia\n        accelerators_per_replica: 16\n",
        ),
        "accelerators_per_replica: 16",
        "all.vars.serving_pools[1].accelerators_per_replica",
        "asks 16 nvidia devices per replica",
        id="too-many-devices",
    ),
    pytest.param(
        "",
        ("    lake_warehouse: s3://bank-lake/warehouse\n", "    lake_warehouse: file:///data/lake\n"),
        "lake_warehouse: file:///data/lake",
        "all.vars.lake_warehouse",
        "does not match",
        id="lake-not-on-s3",
    ),
    pytest.param(
        "",
        ("        replicas: 2\n", "        replicas: -2\n"),
        "replicas: -2",
        "all.vars.serving_pools[0].replicas",
        "must be at least 0",
        id="negative-pool-replicas",
    ),
]


@pytest.mark.parametrize(("extra", "replace", "needle", "field", "message"), BROKEN)
def test_broken_inventory_points_at_inventory_line(
    tmp_path: Path, extra: str, replace: tuple[str, str] | None, needle: str, field: str, message: str
) -> None:
    inv = _variant(tmp_path, extra, replace)
    result = render_inventory(inv)
    assert not result.ok
    assert not result.manifests
    errors = [p for p in result.problems if p.is_error]
    hit = [p for p in errors if p.field == field]
    assert hit, [p.render() for p in errors]
    problem = hit[0]
    assert problem.file == str(inv)
    assert problem.line == _line_of(inv, needle)
    assert message in problem.message
    assert f"{inv}:{problem.line}:" in problem.render()


def test_cli_writes_files_and_reports_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="dataplat")
    k8s_cli.register(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["render", "-i", str(EXAMPLE), "--target", "k8s", "-o", str(out), "--json"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] and summary["namespace"] == "dataplat" and len(summary["files"]) == 6
    assert (out / "04-serving.yaml").exists()

    args = parser.parse_args(
        ["render", "-i", str(EXAMPLE), "--namespace", "bank-dp", "--k8s-version", "1.33"]
    )
    assert args.func(args) == 0
    assert "valid against Kubernetes 1.33" in capsys.readouterr().out

    bad = _variant(tmp_path, "    decision_target_inflight: 0\n")
    args = parser.parse_args(["render", "-i", str(bad), "-o", str(tmp_path / "bad-out")])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert f"{bad}:{_line_of(bad, 'decision_target_inflight: 0')}:" in err
    assert "all.vars.decision_target_inflight" in err
    assert not (tmp_path / "bad-out").exists()
