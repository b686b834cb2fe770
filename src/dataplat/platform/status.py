"""``dataplat status``: every component with its host, port, pid and health.

Health is measured, not assumed: a pid file is checked against /proc, ports are
probed, Patroni's REST API says who leads, ``pg_stat_replication`` on the leader says
how the standbys replicate, nats-server's monitoring endpoint says whether
JetStream is healthy, the Iceberg catalog is opened and listed.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dataplat.deploy.daemon import port_in_use, read_state
from dataplat.platform import endpoints
from dataplat.platform.endpoints import Platform


@dataclass
class ComponentStatus:
    name: str
    component: str
    host: str
    address: str
    ports: dict[str, int]
    pid: int | None
    health: str  # healthy | unhealthy | stopped
    detail: str = ""


@dataclass
class WarehouseMember:
    name: str
    role: str
    state: str
    timeline: int | None
    lag_bytes: int | None
    sync_state: str | None = None
    replay_lag_s: float | None = None
    conninfo: str = ""
    host: str = ""
    """The inventory host the member runs on (primary and standbys on distinct hosts in a cluster)."""
    address: str = ""


@dataclass
class StatusReport:
    home: str
    components: list[ComponentStatus] = field(default_factory=list)
    warehouse: dict[str, Any] = field(default_factory=dict)
    stream: dict[str, Any] = field(default_factory=dict)
    lake: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return bool(self.components) and all(c.health == "healthy" for c in self.components)

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": self.home,
            "healthy": self.healthy,
            "components": [asdict(c) for c in self.components],
            "warehouse": self.warehouse,
            "stream": self.stream,
            "lake": self.lake,
            "serving": self.serving,
            "decision": self.decision,
        }


def _http_ok(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except OSError as exc:
        return False, str(getattr(exc, "reason", exc))


def _probe(platform: Platform, inst: dict[str, Any]) -> ComponentStatus:
    state = read_state(inst["name"], platform.run_dir)
    ports = dict(inst.get("ports") or {})
    st = ComponentStatus(
        inst["name"],
        inst["component"],
        inst["host"],
        inst["address"],
        ports,
        state.pid if state.running else None,
        "stopped",
    )
    comp = inst["component"]
    if comp == "lake":
        try:
            catalog, ns = endpoints.lake_catalog(platform.home)
            st.health, st.detail = "healthy", f"{len(catalog.list_tables(ns))} tables in {ns}"
        except Exception as exc:  # noqa: BLE001 - any failure to open the catalog is ill health
            st.health, st.detail = "unhealthy", f"catalog: {exc}"
        return st
    if not state.running:
        st.detail = "not running"
        return st
    address = inst["address"]
    if comp == "warehouse":
        ok, detail = _http_ok(f"http://{address}:{ports['rest']}/liveness")
        pg_ok = port_in_use(address, ports["pg"])
        ok = ok and pg_ok
        detail = f"patroni {detail}; postgres {'listening' if pg_ok else 'not listening'}"
    elif comp == "stream":
        ok, detail = _http_ok(f"http://{address}:{ports['monitor']}/healthz?js-enabled-only=true")
    elif comp == "metrics":
        ok, detail = _http_ok(f"http://{address}:{ports['http']}/healthz")
    elif comp == "decision":
        ok, detail = _http_ok(f"http://{address}:{ports['http']}/readyz")
        detail = f"ready: {detail}"
    elif comp == "serving":
        model = platform.settings.get("serving", {}).get("model", "propensity")
        ok, detail = _http_ok(f"http://{address}:{ports['http']}/v2/models/{model}/ready")
        detail = f"pool {inst.get('pool')} ({inst.get('accelerator')}): model {model} {detail}"
    else:
        ok = all(port_in_use(address, p) for p in ports.values())
        detail = "ports open" if ok else "a port is closed"
    st.health, st.detail = ("healthy" if ok else "unhealthy"), detail
    return st


def _warehouse(platform: Platform) -> dict[str, Any]:
    from dataplat.platform.warehouse import patroni_cluster

    members = platform.by_component("warehouse")
    out: dict[str, Any] = {
        "pgpass": str(platform.pgpass),
        "cluster_conninfo": endpoints.conninfo(platform, members),
        "leader": None,
        "members": [],
    }
    try:
        cluster = patroni_cluster(endpoints.patroni_urls(platform))
    except ConnectionError as exc:
        out["error"] = str(exc)
        cluster = {"members": []}
    by_name = {m["name"]: m for m in cluster.get("members", [])}
    rows: list[WarehouseMember] = []
    for inst in members:
        pm = by_name.get(inst["name"], {})
        lag = pm.get("lag")
        rows.append(
            WarehouseMember(
                name=inst["name"],
                role=pm.get("role", "unknown"),
                state=pm.get("state", "unknown"),
                timeline=pm.get("timeline"),
                lag_bytes=lag if isinstance(lag, int) else None,
                conninfo=endpoints.conninfo(platform, [inst], read_write=False),
                host=inst["host"],
                address=inst["address"],
            )
        )
        if pm.get("role") == "leader":
            out["leader"] = inst["name"]
    if out["leader"]:
        out["leader_host"] = next(i["host"] for i in members if i["name"] == out["leader"])
        try:
            _replication(platform, out["leader"], rows)
        except Exception as exc:  # noqa: BLE001 - status reports what it could not read
            out["replication_error"] = f"{type(exc).__name__}: {exc}"
    out["members"] = [asdict(r) for r in rows]
    return out


def _replication(platform: Platform, leader: str, rows: list[WarehouseMember]) -> None:
    import psycopg

    inst = next(i for i in platform.by_component("warehouse") if i["name"] == leader)
    with psycopg.connect(endpoints.conninfo(platform, [inst], read_write=False)) as conn:
        cur = conn.execute(
            "SELECT application_name, sync_state, "
            "EXTRACT(EPOCH FROM replay_lag)::float8, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint FROM pg_stat_replication"
        )
        repl = {r[0]: r for r in cur.fetchall()}
    for row in rows:
        if row.name in repl:
            _, row.sync_state, row.replay_lag_s, lag = repl[row.name]
            row.lag_bytes = int(lag) if lag is not None else row.lag_bytes


def _stream(platform: Platform) -> dict[str, Any]:
    from dataplat.platform.stream import monitor

    out: dict[str, Any] = {"servers": endpoints.nats_servers(platform), "streams": []}
    for url in endpoints.nats_monitor_urls(platform):
        try:
            jsz = monitor(url, "/jsz?streams=true")
        except OSError as exc:
            out.setdefault("errors", []).append(f"{url}: {exc}")
            continue
        for acct in jsz.get("account_details", []):
            for s in acct.get("stream_detail", []):
                state = s.get("state", {})
                out["streams"].append(
                    {"name": s["name"], "messages": state.get("messages", 0), "bytes": state.get("bytes", 0)}
                )
        break
    return out


def platform_status(home: Path, this_process: str | None = None) -> StatusReport:
    """Probe every component the last ``dataplat up`` placed under ``home``.

    ``this_process`` names the instance doing the probing (the exporter), which is
    not probed over HTTP: it would wait on itself.
    """
    platform = endpoints.load_platform(home)
    report = StatusReport(home=str(home))
    for inst in platform.instances:
        if inst["name"] == this_process:
            report.components.append(
                ComponentStatus(
                    inst["name"],
                    inst["component"],
                    inst["host"],
                    inst["address"],
                    dict(inst["ports"]),
                    os.getpid(),
                    "healthy",
                    "this process",
                )
            )
        else:
            report.components.append(_probe(platform, inst))
    if platform.by_component("warehouse"):
        report.warehouse = _warehouse(platform)
    if platform.by_component("stream"):
        report.stream = _stream(platform)
    if platform.by_component("serving") or platform.by_component("decision"):
        from dataplat.scaling.supervisor import pool_states

        states = pool_states(platform.run_dir)
        if platform.by_component("serving"):
            report.serving = {"scaling": [s for s in states if s.get("component", "serving") == "serving"]}
        if platform.by_component("decision"):
            report.decision = {"scaling": [s for s in states if s.get("component") == "decision"]}
    lake = platform.settings.get("lake")
    if lake:
        report.lake = {
            "catalog_uri": lake["catalog_uri"],
            "warehouse": lake["warehouse"],
            "namespace": lake["namespace"],
        }
    return report
