"""Render the platform's Kubernetes manifests from ``charts/`` and an inventory.

:func:`render` loads and checks the inventory, plans placement, builds every chart's
values (:mod:`dataplat.k8s.values`: chart defaults < inventory < ``k8s_values``), checks
them against ``values.schema.json`` (problems point at the inventory's file, line and
field), renders ``charts/<component>/templates/*.yaml.j2`` with Jinja and validates every
object offline (:mod:`dataplat.k8s.validate`). :func:`write_manifests` writes one
multi-document YAML file per component.

Nothing here talks to a cluster.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from dataplat.config import PROJECT_ROOT
from dataplat.inventory.loader import validate_inventory
from dataplat.inventory.model import Host, Inventory, Origin, PathElem, Problem
from dataplat.inventory.placement import Instance, Plan
from dataplat.inventory.placement import plan as place
from dataplat.k8s.validate import DEFAULT_K8S_VERSION, validate_objects
from dataplat.k8s.values import Values, load_chart_values, load_schema, validate_values

__all__ = [
    "CHARTS_DIR",
    "COMPONENTS",
    "Manifest",
    "RenderResult",
    "render",
    "render_inventory",
    "write_manifests",
]

CHARTS_DIR = PROJECT_ROOT / "charts"
"""The charts of the source checkout."""

COMPONENTS: tuple[str, ...] = ("global", "warehouse", "stream", "lake", "serving", "decision")
"""Charts in the order their manifests are written (and applied)."""

K8S_ARCH = {"aarch64": "arm64", "x86_64": "amd64"}
"""``uname -m`` -> the node label ``kubernetes.io/arch``."""

ACCEL_TAINTS = {"nvidia": "nvidia.com/gpu", "ascend": "huawei.com/Ascend910"}


@dataclass(frozen=True)
class Manifest:
    """One rendered Kubernetes object and the template it came from."""

    component: str
    template: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(apiVersion, kind, namespace, name): what identifies the object in a cluster."""
        meta = self.obj.get("metadata") or {}
        return (str(self.obj.get("apiVersion", "")), self.kind, str(meta.get("namespace", "")), self.name)


@dataclass
class RenderResult:
    """The manifests of a render, every problem found, and the files written (if any)."""

    inventory: Path
    namespace: str
    k8s_version: str
    manifests: list[Manifest] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No error among the problems."""
        return not any(p.is_error for p in self.problems)

    @property
    def objects(self) -> list[dict[str, Any]]:
        """The rendered objects, in apply order."""
        return [m.obj for m in self.manifests]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """The rendered objects of ``kind``."""
        return [m.obj for m in self.manifests if m.kind == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """The object ``kind``/``name``; KeyError when it was not rendered."""
        for m in self.manifests:
            if m.kind == kind and m.name == name:
                return m.obj
        raise KeyError(f"{kind}/{name}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (objects by kind/name, problems, files)."""
        return {
            "ok": self.ok,
            "inventory": str(self.inventory),
            "namespace": self.namespace,
            "k8s_version": self.k8s_version,
            "objects": [
                {"component": m.component, "apiVersion": m.key[0], "kind": m.kind, "name": m.name}
                for m in self.manifests
            ],
            "problems": [p.to_dict() for p in self.problems],
            "files": [str(f) for f in self.files],
        }


# -- helpers ------------------------------------------------------------------------------------


def _labels_factory(g: Mapping[str, Any]) -> Callable[..., dict[str, str]]:
    def labels(
        component: str,
        *,
        role: str | None = None,
        pool: str | None = None,
        metrics: bool = False,
        monitor: bool = False,
        selector: bool = False,
    ) -> dict[str, str]:
        out = {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": "dataplat"}
        if not selector:
            out["app.kubernetes.io/managed-by"] = "dataplat"
        if pool:
            out["dataplat.io/pool"] = pool
        if role and not selector:
            out["dataplat.io/role"] = role
        if metrics:
            out["dataplat.io/metrics"] = "true"
        if monitor and not selector:
            out.update({str(k): str(v) for k, v in (g.get("serviceMonitorLabels") or {}).items()})
        return out

    return labels


def node_affinity(arches: Sequence[str | None]) -> dict[str, Any] | None:
    """Required node affinity on ``kubernetes.io/arch`` for the hosts' architectures
    (None when any host's architecture is unknown: no constraint)."""
    if not arches or any(a not in K8S_ARCH for a in arches):
        return None
    values = sorted({K8S_ARCH[a] for a in arches if a})
    return {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": values}]}
            ]
        }
    }


def _spread_type(setting: str, instances: Sequence[Instance]) -> str:
    """``required`` when every instance sits in its own AZ (or the setting says so)."""
    if setting in ("required", "preferred"):
        return setting
    azs = [i.az for i in instances]
    return "required" if len(azs) > 1 and None not in azs and len(set(azs)) == len(azs) else "preferred"


def _pod_affinity(
    arches: Sequence[str | None], selector: Mapping[str, str], topology_key: str, spread: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    na = node_affinity(arches)
    if na:
        out["nodeAffinity"] = na
    term = {"labelSelector": {"matchLabels": dict(selector)}, "topologyKey": topology_key}
    if spread == "required":
        out["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    else:
        out["podAntiAffinity"] = {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
        }
    return out


def _rdma_fabric(hosts: Sequence[Host]) -> tuple[str, list[str]] | None:
    """(fabric type, NIC names) of the first RDMA NICs of ``hosts`` (None: no RDMA)."""
    kind: str | None = None
    nics: list[str] = []
    for host in hosts:
        for nic in host.vars.get("nics") or []:
            if isinstance(nic, Mapping) and isinstance(nic.get("rdma"), Mapping):
                kind = kind or str(nic["rdma"].get("type"))
                name = str(nic.get("name"))
                if name not in nics:
                    nics.append(name)
                break
    return (kind, nics) if kind else None


# -- values from the inventory ------------------------------------------------------------------


class _Builder:
    """Builds every chart's values from the inventory and plan, remembering origins."""

    def __init__(self, inv: Inventory, plan: Plan, charts_dir: Path) -> None:
        self.inv = inv
        self.plan = plan
        self.charts_dir = charts_dir
        self.problems: list[Problem] = []

    def ref(self, group: str) -> str | None:
        hosts = self.inv.groups.get(group) or []
        return hosts[0] if hosts else (next(iter(self.inv.hosts), None))

    def from_var(
        self,
        values: Values,
        path: Sequence[PathElem],
        group: str,
        var: str,
        *,
        declared: bool = False,
        convert: Callable[[Any], Any] | None = None,
    ) -> bool:
        """Copy variable ``var`` (as ``group``'s first host sees it) to ``path``; False when unset."""
        host = self.ref(group)
        if host is None:
            return False
        value = self.inv.declared(host, var) if declared else self.inv.var(host, var)
        if value is None or value == "":
            return False
        values.set(path, convert(value) if convert else value, self.inv.origin(host, var))
        return True

    def build(self, component: str) -> Values:
        values = load_chart_values(self.charts_dir, component)
        getattr(self, f"_{component}")(values)
        overrides = self.inv.all_vars.get("k8s_values") or {}
        if isinstance(overrides, Mapping) and isinstance(overrides.get(component), Mapping):
            values.merge(overrides[component], lambda p: self.inv.origin(None, "k8s_values", component, *p))
        return values

    # one method per chart ------------------------------------------------------------------------
    def _global(self, values: Values) -> None:
        return None

    def _warehouse(self, values: Values) -> None:
        members = self.plan.by_component("warehouse")
        if members:
            host = members[0].host
            origin = self.inv.origin(host, "warehouse_members_per_host")
            if not self.inv.in_inventory(origin):
                origin = self.inv.group_origin("warehouse")
            values.set(("instances",), len(members), origin)
        self.from_var(values, ("database",), "warehouse", "warehouse_database")
        self.from_var(values, ("owner",), "warehouse", "warehouse_app_user")
        self.from_var(
            values, ("parameters", "max_connections"), "warehouse", "warehouse_max_connections", convert=str
        )
        self.from_var(
            values, ("parameters", "shared_buffers"), "warehouse", "warehouse_shared_buffers", convert=str
        )

    def _stream(self, values: Values) -> None:
        nodes = self.plan.by_component("stream")
        if nodes:
            values.set(("replicas",), len(nodes), self.inv.group_origin("stream"))
        self.from_var(values, ("maxFileStore",), "stream", "stream_max_file_store", convert=str)
        self.from_var(values, ("maxMemoryStore",), "stream", "stream_max_memory_store", convert=str)
        host = self.ref("stream")
        streams = self.inv.var(host, "stream_streams") if host else None
        if isinstance(streams, list):
            values.set(("streams",), streams, None)
            for i, s in enumerate(streams):
                values.origins[("streams", i)] = self.inv.origin(host, "stream_streams", i)
                if isinstance(s, Mapping):
                    for k in s:
                        values.origins[("streams", i, str(k))] = self.inv.origin(
                            host, "stream_streams", i, str(k)
                        )

    def _lake(self, values: Values) -> None:
        self.from_var(values, ("catalogUri",), "lake", "lake_catalog_uri")
        self.from_var(values, ("warehouse",), "lake", "lake_warehouse")
        self.from_var(values, ("s3Endpoint",), "lake", "lake_s3_endpoint")
        self.from_var(values, ("minio", "enabled"), "lake", "lake_minio")

    def _serving(self, values: Values) -> None:
        host = self.ref("serving")
        if host is None or not self.inv.groups.get("serving"):
            values.set(("pools",), [], None)
            return
        pools = self.inv.var(host, "serving_pools") or []
        out: list[dict[str, Any]] = []
        origins: dict[tuple[PathElem, ...], Origin] = {}
        rename = {"accelerators_per_replica": "acceleratorsPerReplica"}
        for i, pool in enumerate(pools if isinstance(pools, list) else []):
            if not isinstance(pool, Mapping):
                continue
            item: dict[str, Any] = {}
            origins[("pools", i)] = self.inv.origin(host, "serving_pools", i)
            for key, value in pool.items():
                if key not in (
                    "name",
                    "accelerator",
                    "replicas",
                    "priority",
                    "image",
                    "accelerators_per_replica",
                ):
                    continue
                vkey = rename.get(str(key), str(key))
                item[vkey] = value
                origins[("pools", i, vkey)] = self.inv.origin(host, "serving_pools", i, str(key))
            out.append(item)
        values.set(("pools",), out, self.inv.origin(host, "serving_pools"))
        values.origins.update(origins)

    def _decision(self, values: Values) -> None:
        if not self.from_var(values, ("minReplicas",), "decision", "decision_min_replicas", declared=True):
            self.from_var(values, ("minReplicas",), "decision", "decision_replicas", declared=True)
        self.from_var(values, ("maxReplicas",), "decision", "decision_max_replicas", declared=True)
        self.from_var(values, ("targetInflight",), "decision", "decision_target_inflight", declared=True)
        self.from_var(values, ("autoscaler",), "decision", "decision_autoscaler", declared=True)


# -- checks across values (after the schemas) ---------------------------------------------------


def _cross_checks(inv: Inventory, values: Mapping[str, Values]) -> list[Problem]:
    problems: list[Problem] = []
    wh = values["warehouse"]
    number = wh.get("synchronous", "number")
    instances = wh.get("instances")
    durability = wh.get("synchronous", "dataDurability")
    if (
        isinstance(number, int)
        and isinstance(instances, int)
        and number >= instances
        and durability == "required"
    ):
        problems.append(
            wh.origin_of(("instances",)).problem(
                "error",
                f"the warehouse has {instances} instance(s) but synchronous replication with "
                f"dataDurability: required waits for {number} standby(s): no write could commit",
                "add warehouse members (hosts or warehouse_members_per_host), or lower "
                "k8s_values.warehouse.synchronous.number",
            )
        )
    dc = values["decision"]
    lo, hi = dc.get("minReplicas"), dc.get("maxReplicas")
    if isinstance(lo, int) and isinstance(hi, int) and hi < lo:
        where = dc.origin_of(("maxReplicas",))
        if not inv.in_inventory(where):
            where = dc.origin_of(("minReplicas",))
        problems.append(
            where.problem(
                "error",
                f"decision maxReplicas {hi} is below minReplicas {lo}",
                "set decision_max_replicas at least decision_min_replicas",
            )
        )
    sv = values["serving"]
    images = sv.get("images") or {}
    for i, pool in enumerate(sv.get("pools") or []):
        if not isinstance(pool, Mapping):
            continue
        kind = pool.get("accelerator")
        name = pool.get("name")
        if not pool.get("image") and not images.get(kind):
            problems.append(
                sv.origin_of(("pools", i, "accelerator")).problem(
                    "error",
                    f"serving pool {name!r} runs on {kind} accelerators but no image is set for {kind}",
                    f"set all.vars.k8s_values.serving.images.{kind} (a fixed tag, never latest), or image: "
                    f"on the pool",
                )
            )
        if kind in ("nvidia", "ascend"):
            per = pool.get("acceleratorsPerReplica") or (sv.get("acceleratorsPerReplica") or {}).get(kind, 1)
            most = 0
            for host in inv.hosts_of("serving"):
                for acc in host.vars.get("accelerators") or []:
                    if (
                        isinstance(acc, Mapping)
                        and acc.get("kind") == kind
                        and isinstance(acc.get("count"), int)
                    ):
                        most = max(most, int(acc["count"]))
            if isinstance(per, int) and most and per > most:
                problems.append(
                    sv.origin_of(("pools", i, "acceleratorsPerReplica")).problem(
                        "error",
                        f"serving pool {name!r} asks {per} {kind} devices per replica but no serving host "
                        f"has more than {most}",
                        f"lower accelerators_per_replica to {most} or less",
                    )
                )
    return problems


# -- derived settings for the templates ---------------------------------------------------------


def _derive(
    component: str,
    v: Values,
    inv: Inventory,
    plan: Plan,
    ns: str,
    labels: Callable[..., dict[str, str]],
    all_values: Mapping[str, Values],
) -> dict[str, Any]:
    if component == "warehouse":
        members = plan.by_component("warehouse")
        return {
            "anti_affinity_type": _spread_type(str(v.get("antiAffinity", "type")), members),
            "node_affinity": node_affinity([i.arch for i in members]),
        }
    if component == "stream":
        nodes = plan.by_component("stream")
        n = int(v.get("replicas") or 1)
        ports = v.get("ports")
        routes = [
            f"nats://stream-{i}.stream-headless.{ns}.svc.cluster.local:{ports['cluster']}" for i in range(n)
        ]
        streams = []
        for s in v.get("streams") or []:
            streams.append(
                {**s, "replicas": min(int(s.get("replicas", 1)), n), "max_age_s": int(s.get("max_age_s", 0))}
            )
        return {
            "routes": routes,
            "streams": streams,
            "affinity": _pod_affinity(
                [i.arch for i in nodes],
                labels("stream", selector=True),
                str(v.get("antiAffinity", "topologyKey")),
                _spread_type(str(v.get("antiAffinity", "type")), nodes),
            ),
        }
    if component == "lake":
        uri = str(v.get("catalogUri"))
        replicas = int(v.get("minio", "replicas") or 1)
        if replicas == 1:
            volumes = "/data"
        else:
            volumes = f"http://minio-{{0...{replicas - 1}}}.minio-headless.{ns}.svc.cluster.local/data"
        lake_hosts = [inv.hosts[h] for h in inv.groups.get("lake", []) if h in inv.hosts]
        return {
            "catalog_type": "rest" if uri.startswith(("http://", "https://")) else "sql",
            "minio_volumes": volumes,
            "minio_affinity": _pod_affinity(
                [h.vars.get("arch") for h in lake_hosts],
                labels("minio", selector=True),
                "kubernetes.io/hostname",
                "required",
            ),
        }
    if component == "serving":
        return _derive_serving(v, inv, plan, ns, labels)
    if component == "decision":
        lo = int(v.get("minReplicas") or 1)
        pools = all_values["serving"].get("pools") or []
        http = all_values["serving"].get("ports", "http")
        stream_ports = all_values["stream"].get("ports")
        pool_args: list[str] = []
        for p in pools:
            if isinstance(p, Mapping):
                url = f"http://serving-{p['name']}.{ns}.svc:{http}"
                pool_args += ["--pool", f"{p['name']}={url},{p.get('priority', 100)}"]
        return {
            "pdb_min_available": max(lo - 1, 0),
            "affinity": _pod_affinity(
                [i.arch for i in plan.by_component("decision")],
                labels("decision", selector=True),
                "topology.kubernetes.io/zone",
                "preferred",
            ),
            "pool_args": pool_args,
            "nats_url": f"nats://stream.{ns}.svc:{stream_ports['client']}",
            "nats_monitoring": f"stream.{ns}.svc.cluster.local:{stream_ports['monitor']}",
        }
    return {}


def _derive_serving(
    v: Values, inv: Inventory, plan: Plan, ns: str, labels: Callable[..., dict[str, str]]
) -> dict[str, Any]:
    serving_hosts = inv.hosts_of("serving")
    rdma_setting = v.get("rdma", "enabled")
    pools: list[dict[str, Any]] = []
    networks: dict[str, dict[str, Any]] = {}
    for pool in v.get("pools") or []:
        name, kind = str(pool["name"]), str(pool["accelerator"])
        placed = [i for i in plan.by_component("serving") if i.pool == name]
        if placed:
            hosts = [inv.hosts[h] for h in dict.fromkeys(i.host for i in placed)]
        elif kind == "cpu":
            hosts = list(serving_hosts)
        else:
            hosts = [
                h
                for h in serving_hosts
                if any(
                    isinstance(a, Mapping) and a.get("kind") == kind for a in h.vars.get("accelerators") or []
                )
            ]
        server = str((v.get("serverByKind") or {}).get(kind, "triton"))
        spec = (v.get("servers") or {}).get(server) or {"command": [], "args": []}
        resources = json.loads(json.dumps((v.get("resources") or {}).get(kind) or {}))
        limits = resources.setdefault("limits", {})
        tolerations: list[dict[str, Any]] = []
        if kind in ("nvidia", "ascend"):
            res = str((v.get("acceleratorResources") or {})[kind])
            per = int(
                pool.get("acceleratorsPerReplica") or (v.get("acceleratorsPerReplica") or {}).get(kind, 1)
            )
            limits[res] = per
            resources.setdefault("requests", {})[res] = per
            tolerations.append({"key": ACCEL_TAINTS[kind], "operator": "Exists", "effect": "NoSchedule"})
        wants_rdma = rdma_setting is True or (rdma_setting == "auto" and kind != "cpu")
        fabric = _rdma_fabric(hosts) if wants_rdma else None
        network_names: list[str] = []
        if fabric is not None:
            fabric_type, nics = fabric
            limits[str(v.get("rdma", "resource"))] = int(v.get("rdma", "perReplica"))
            resources.setdefault("requests", {})[str(v.get("rdma", "resource"))] = int(
                v.get("rdma", "perReplica")
            )
            net_name = f"{'roce' if fabric_type == 'roce_v2' else 'ib'}-{nics[0]}".lower().replace("_", "-")
            if net_name not in networks:
                if fabric_type == "roce_v2":
                    cni: dict[str, Any] = {"type": "macvlan", "master": nics[0], "mode": "bridge"}
                else:
                    cni = {"type": "ipoib", "master": nics[0]}
                config = {
                    "cniVersion": "0.3.1",
                    "name": net_name,
                    **cni,
                    "ipam": {"type": "whereabouts", "range": str(v.get("rdma", "ipRange"))},
                }
                networks[net_name] = {
                    "name": net_name,
                    "fabric": "RoCEv2" if fabric_type == "roce_v2" else "InfiniBand",
                    "master": ", ".join(nics),
                    "pools": [],
                    "config": json.dumps(config, sort_keys=True),
                }
            networks[net_name]["pools"].append(name)
            network_names.append(f"{ns}/{net_name}")
        affinity = {}
        na = node_affinity([h.vars.get("arch") for h in hosts])
        if na:
            affinity["nodeAffinity"] = na
        pools.append(
            {
                "name": name,
                "accelerator": kind,
                "replicas": int(pool.get("replicas", 1)),
                "image": pool.get("image") or (v.get("images") or {}).get(kind),
                "server": server,
                "command": list(spec.get("command") or []),
                "args": list(spec.get("args") or []),
                "resources": resources,
                "tolerations": tolerations,
                "affinity": affinity,
                "rdma": fabric is not None,
                "networks": ",".join(network_names),
            }
        )
    return {"pools": pools, "networks": list(networks.values())}


# -- rendering ----------------------------------------------------------------------------------


def _environment(charts_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(charts_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["shquote"] = lambda value: shlex.quote(str(value))
    return env


def render(
    inv: Inventory,
    plan: Plan,
    *,
    namespace: str = "dataplat",
    k8s_version: str = DEFAULT_K8S_VERSION,
    charts_dir: Path = CHARTS_DIR,
    validate: bool = True,
) -> RenderResult:
    """Render every chart for ``inv`` and ``plan``; problems (values, templates, validation) are
    in the result, rendering stops before templates when a value is wrong."""
    result = RenderResult(inv.path, namespace, k8s_version)
    builder = _Builder(inv, plan, Path(charts_dir))
    all_values: dict[str, Values] = {}
    for component in COMPONENTS:
        values = builder.build(component)
        all_values[component] = values
        result.problems.extend(validate_values(values, load_schema(Path(charts_dir), component)))
    result.problems.sort(key=lambda p: (p.file, p.line, p.column))
    if not result.ok:
        return result
    result.problems.extend(_cross_checks(inv, all_values))
    if not result.ok:
        return result
    env = _environment(Path(charts_dir))
    g = all_values["global"].data
    labels = _labels_factory(g)
    for component in COMPONENTS:
        v = all_values[component]
        derived = _derive(component, v, inv, plan, namespace, labels, all_values)
        context = {
            "v": v.data,
            "g": g,
            "d": derived,
            "ns": namespace,
            "labels": labels,
            "pull_secrets": [{"name": n} for n in g.get("imagePullSecrets") or []],
        }
        for template in sorted((Path(charts_dir) / component / "templates").glob("*.yaml.j2")):
            rel = template.relative_to(charts_dir).as_posix()
            where = str(template)
            try:
                text = env.get_template(rel).render(**context)
                docs = [d for d in yaml.safe_load_all(text) if d]
            except (jinja2.TemplateError, yaml.YAMLError) as exc:
                line = getattr(exc, "lineno", 0) or 0
                mark = getattr(exc, "problem_mark", None)
                if mark is not None:
                    line = mark.line + 1
                result.problems.append(
                    Problem(
                        "error",
                        where,
                        line,
                        0,
                        rel,
                        f"template does not render: {exc}",
                        "fix the template (charts are part of dataplat)",
                    )
                )
                continue
            for doc in docs:
                if not isinstance(doc, dict):
                    result.problems.append(Problem("error", where, 0, 0, rel, "a document is not a mapping"))
                    continue
                result.manifests.append(Manifest(component, where, doc))
    if validate:
        result.problems.extend(
            validate_objects(
                result.manifests, all_values, k8s_version=k8s_version, inventory_file=str(inv.path)
            )
        )
    return result


def render_inventory(
    inventory: str | Path,
    *,
    namespace: str = "dataplat",
    k8s_version: str = DEFAULT_K8S_VERSION,
    charts_dir: Path = CHARTS_DIR,
) -> RenderResult:
    """Load and check ``inventory``, plan placement and :func:`render`; an inventory with errors
    gives a result with those problems and no manifests (InventoryParseError when unparsable)."""
    inv, problems = validate_inventory(inventory)
    errors = [p for p in problems if p.is_error]
    if errors or inv is None:
        return RenderResult(Path(inventory), namespace, k8s_version, problems=errors)
    result = render(inv, place(inv), namespace=namespace, k8s_version=k8s_version, charts_dir=charts_dir)
    return result


def write_manifests(result: RenderResult, out_dir: str | Path) -> list[Path]:
    """Write ``NN-<component>.yaml`` (multi-document, apply order) under ``out_dir``; stale
    files of an earlier render are removed. Returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("[0-9][0-9]-*.yaml"):
        old.unlink()
    files: list[Path] = []
    for n, component in enumerate(COMPONENTS):
        objs = [m.obj for m in result.manifests if m.component == component]
        if not objs:
            continue
        path = out / f"{n:02d}-{component}.yaml"
        header = (
            f"# Rendered by dataplat from {result.inventory} for namespace {result.namespace}; do not edit.\n"
        )
        path.write_text(
            header + yaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False), encoding="utf-8"
        )
        files.append(path)
    result.files = files
    return files
