"""The RDMA fabric check of ``roles/rdma``: parse what the hosts report, judge it against the claims.

``roles/rdma`` runs a read-only probe on every host that declares an RDMA NIC
(``nics[].rdma``) and, where perftest is installed, ``ib_write_bw`` / ``ib_write_lat``
between host pairs (server on one host, client on the next). The raw outputs go back
to the controller, where :func:`analyse` turns them into a :class:`RdmaReport`:

* devices, ports, link layer, state, MTU and the GID table from ``/sys/class/infiniband``
  (the same parser as ``inventory check``), cross-checked with ``ibv_devinfo -v`` and
  ``rdma -j link show`` where installed;
* the declared RoCE GID index against the GID table (must exist and be RoCE v2);
* PFC from ``mlnx_qos -i IF`` and ECN from ``/sys/class/net/IF/ecn/roce_{np,rp}/enable/PRIO``
  where they exist;
* bandwidth (Gb/s) and latency (us) of every measured pair.

Every parser is a pure function of the tool's text; the tests feed them outputs in the
tools' real formats (``tests/inventory/samples/rdma/README.md`` says where each comes from).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from dataplat.inventory.facts import (
    Finding,
    HostFacts,
    RdmaDevice,
    ToolOutput,
    _compare_rdma,
    _rdma_finding,
    parse_infiniband,
    parse_tool,
    split_probe,
)
from dataplat.inventory.hwreport import HardwareReport
from dataplat.inventory.model import Inventory

MIB_TO_GBIT = 1024 * 1024 * 8 / 1e9
"""perftest's MB/sec and MiB/sec are 2**20 bytes per second."""

# --------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class IbvPort:
    """One port as ``ibv_devinfo -v`` prints it."""

    number: int
    state: str | None = None
    max_mtu: int | None = None
    active_mtu: int | None = None
    link_layer: str | None = None
    phys_state: str | None = None
    gids: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    """index -> (GID, type such as ``RoCE v2``; None on InfiniBand)."""

    @property
    def active(self) -> bool:
        return bool(self.state and self.state.startswith("PORT_ACTIVE"))


@dataclass(frozen=True)
class IbvDevice:
    """One device as ``ibv_devinfo -v`` prints it."""

    name: str
    fw_ver: str | None = None
    vendor_part_id: int | None = None
    ports: dict[int, IbvPort] = field(default_factory=dict)


@dataclass(frozen=True)
class Qos:
    """``mlnx_qos -i IF``: trust mode and the priorities with PFC enabled."""

    trust: str | None
    pfc_enabled: tuple[int, ...]


@dataclass(frozen=True)
class _PerftestResult:
    """What every perftest result says: the preamble (device, link, GID index, MTU) and the row's
    message size and iterations."""

    device: str | None
    link_type: str | None
    gid_index: int | None
    mtu: int | None
    size_bytes: int
    iterations: int


@dataclass(frozen=True)
class BwResult(_PerftestResult):
    """The result row of ``ib_write_bw`` (the last one when it printed several)."""

    bw_peak_gbps: float
    bw_avg_gbps: float
    msg_rate_mpps: float
    rows: int


@dataclass(frozen=True)
class LatResult(_PerftestResult):
    """The result row of ``ib_write_lat`` (microseconds; None for columns older versions lack)."""

    t_min_us: float
    t_max_us: float
    t_typical_us: float
    t_avg_us: float | None = None
    t_stdev_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None


# --------------------------------------------------------------------------------------- parsers


def _int_prefix(text: str) -> int | None:
    m = re.match(r"\s*(\d+)", text)
    return int(m.group(1)) if m else None


def parse_ibv_devinfo(text: str) -> dict[str, IbvDevice]:
    """``ibv_devinfo [-v]`` -> devices with their ports and (with ``-v``) GID tables.

    Layout of rdma-core's ``libibverbs/examples/devinfo.c``: ``hca_id:\\tNAME``, device
    fields one tab in, ``port:\\tN`` two tabs in, port fields and ``GID[  i]:`` lines three.
    """
    devices: dict[str, dict[str, Any]] = {}
    dev: dict[str, Any] | None = None
    port: dict[str, Any] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("hca_id:"):
            name = line.split(":", 1)[1].strip()
            dev = devices.setdefault(name, {"name": name, "ports": {}})
            port = None
            continue
        if dev is None:
            continue
        m = re.match(r"GID\[\s*(\d+)\]:\s*(\S+?)(?:,\s*(RoCE v\d))?$", line)
        if m and port is not None:
            port["gids"][int(m.group(1))] = (m.group(2), m.group(3))
            continue
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        if key == "port":
            number = _int_prefix(value)
            if number is not None:
                port = dev["ports"].setdefault(number, {"number": number, "gids": {}})
            continue
        if port is not None and key in ("state", "link_layer", "phys_state"):
            port[key] = value
        elif port is not None and key in ("max_mtu", "active_mtu"):
            port[key] = _int_prefix(value)
        elif key == "fw_ver":
            dev["fw_ver"] = value
        elif key == "vendor_part_id":
            dev["vendor_part_id"] = _int_prefix(value)
    return {
        name: IbvDevice(
            name,
            d.get("fw_ver"),
            d.get("vendor_part_id"),
            {n: IbvPort(**p) for n, p in sorted(d["ports"].items())},
        )
        for name, d in devices.items()
    }


def parse_rdma_link(text: str) -> dict[str, dict[str, str]]:
    """``rdma -j link show`` (JSON) or ``rdma link show`` (text) -> ``{"mlx5_0/1": {...}}``.

    The text form is iproute2's ``link DEV/PORT state S physical_state P netdev IF``.
    """
    out: dict[str, dict[str, str]] = {}
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            for item in json.loads(stripped):
                key = f"{item.get('ifname')}/{item.get('port')}"
                out[key] = {k: str(v) for k, v in item.items() if k in ("state", "physical_state", "netdev")}
            return out
        except (ValueError, AttributeError):
            return out
    for line in text.splitlines():
        m = re.match(r"^\s*(?:\d+/\d+:\s*)?link\s+(\S+/\d+)\s+(.*)$", line)
        if not m:
            continue
        words = m.group(2).split()
        attrs = dict(zip(words[0::2], words[1::2], strict=False))
        out[m.group(1)] = {k: v for k, v in attrs.items() if k in ("state", "physical_state", "netdev")}
    return out


def parse_mlnx_qos(text: str) -> Qos | None:
    """``mlnx_qos -i IF`` -> trust mode and PFC-enabled priorities (None when there is no PFC table)."""
    trust = None
    m = re.search(r"Priority trust state:\s*(\S+)", text)
    if m:
        trust = m.group(1)
    prios: list[int] | None = None
    enabled: list[int] | None = None
    in_pfc = False
    for line in text.splitlines():
        if line.strip().startswith("PFC configuration"):
            in_pfc = True
            continue
        if not in_pfc:
            continue
        words = line.replace(":", " ").split()
        if words and words[0] == "priority" and prios is None:
            prios = [int(w) for w in words[1:] if w.isdigit()]
        elif words and words[0] == "enabled" and enabled is None:
            enabled = [int(w) for w in words[1:] if w.isdigit()]
    if prios is None or enabled is None:
        return None
    return Qos(trust, tuple(p for p, e in zip(prios, enabled, strict=False) if e))


def parse_ecn(text: str) -> dict[str, dict[int, bool]]:
    """``grep -H . .../ecn/roce_{np,rp}/enable/*`` lines -> ``{"roce_np": {prio: on}, ...}``."""
    out: dict[str, dict[int, bool]] = {}
    for line in text.splitlines():
        m = re.search(r"ecn/(roce_np|roce_rp)/enable/(\d+):\s*(\d+)", line)
        if m:
            out.setdefault(m.group(1), {})[int(m.group(2))] = m.group(3) != "0"
    return out


def _preamble(text: str) -> dict[str, Any]:
    info: dict[str, Any] = {"device": None, "link_type": None, "gid_index": None, "mtu": None}
    m = re.search(r"Device\s*:\s*(\S+)", text)
    if m:
        info["device"] = m.group(1)
    m = re.search(r"Link type\s*:\s*(\S+)", text)
    if m:
        info["link_type"] = m.group(1)
    m = re.search(r"GID index\s*:\s*(\d+)", text)
    if m:
        info["gid_index"] = int(m.group(1))
    m = re.search(r"Mtu\s*:\s*(\d+)", text)
    if m:
        info["mtu"] = int(m.group(1))
    return info


def _rows(text: str, header: str) -> list[list[float]]:
    rows: list[list[float]] = []
    seen = False
    for line in text.splitlines():
        if header in line:
            seen = True
            continue
        if not seen:
            continue
        words = line.split()
        if len(words) >= 5 and words[0].isdigit():
            try:
                rows.append([float(w) for w in words])
            except ValueError:
                continue
    return rows


def parse_write_bw(text: str) -> BwResult | None:
    """``ib_write_bw`` output -> its result (Gb/s whatever the unit printed); None without a result row.

    Headers: ``BW peak[Gb/sec]`` (``--report_gbits``), ``BW peak[MB/sec]`` (perftest < 4.5-0.20)
    or ``BW peak[MiB/sec]`` (newer); perftest's MB are MiB.
    """
    m = re.search(r"#bytes\s+#iterations\s+BW peak\[(\w+)/sec\]", text)
    if not m:
        return None
    rows = _rows(text, m.group(0))
    if not rows:
        return None
    unit = m.group(1)
    factor = 1.0 if unit == "Gb" else MIB_TO_GBIT
    last = rows[-1]
    return BwResult(
        **_preamble(text),
        size_bytes=int(last[0]),
        iterations=int(last[1]),
        bw_peak_gbps=round(last[2] * factor, 3),
        bw_avg_gbps=round(last[3] * factor, 3),
        msg_rate_mpps=last[4],
        rows=len(rows),
    )


def parse_write_lat(text: str) -> LatResult | None:
    """``ib_write_lat`` output -> its result row (microseconds); None without one."""
    m = re.search(r"#bytes\s+#iterations\s+t_min\[usec\]", text)
    if not m:
        return None
    rows = _rows(text, m.group(0))
    if not rows:
        return None
    r = rows[-1]
    extra = [r[i] if len(r) > i else None for i in (5, 6, 7, 8)]
    return LatResult(
        **_preamble(text),
        size_bytes=int(r[0]),
        iterations=int(r[1]),
        t_min_us=r[2],
        t_max_us=r[3],
        t_typical_us=r[4],
        t_avg_us=extra[0],
        t_stdev_us=extra[1],
        p99_us=extra[2],
        p999_us=extra[3],
    )


# --------------------------------------------------------------------------------------- probe


@dataclass
class RdmaProbe:
    """What the role's probe found on one host."""

    sysfs: dict[str, RdmaDevice] | None
    ibv_devinfo: ToolOutput
    ibv: dict[str, IbvDevice]
    rdma_link: ToolOutput
    links: dict[str, dict[str, str]]
    qos: dict[str, ToolOutput]
    """interface -> mlnx_qos output."""
    ecn: dict[str, dict[str, dict[int, bool]]]
    """interface -> parsed ECN sysfs (empty when the interface has no ecn/ directory)."""
    perftest: bool


def parse_probe(text: str) -> RdmaProbe:
    """The probe output of ``roles/rdma`` (``@@@dataplat <section>`` blocks)."""
    s = split_probe(text)
    ib = s.get("infiniband", "@@@absent")
    # the probe prints paths relative to the sysfs root it was given (/sys/class by default)
    ib = "\n".join(
        f"/sys/class/{line}" if line.startswith("infiniband/") else line for line in ib.splitlines()
    )
    ibv = parse_tool(s.get("ibv_devinfo", "@@@absent"))
    link = parse_tool(s.get("rdma-link", "@@@absent"))
    qos = {k.split(None, 1)[1]: parse_tool(v) for k, v in s.items() if k.startswith("mlnx_qos ")}
    ecn = {k.split(None, 1)[1]: parse_ecn(v) for k, v in s.items() if k.startswith("ecn ")}
    return RdmaProbe(
        sysfs=parse_infiniband(ib),
        ibv_devinfo=ibv,
        ibv=parse_ibv_devinfo(ibv.text) if ibv.present and ibv.rc == 0 else {},
        rdma_link=link,
        links=parse_rdma_link(link.text) if link.present and link.rc == 0 else {},
        qos=qos,
        ecn=ecn,
        perftest=s.get("perftest", "").strip() not in ("", "@@@absent"),
    )


# --------------------------------------------------------------------------------------- analysis


@dataclass
class RdmaReport(HardwareReport):
    """The outcome of ``roles/rdma`` (written to ``<home>/rdma/report.json``); ``skipped``
    when no host declares RDMA."""

    kind: ClassVar[str] = "rdma"

    pairs: list[dict[str, Any]] = field(default_factory=list)

    def _extra(self) -> dict[str, Any]:
        return {"pairs": self.pairs}


def declared_nics(claims: Mapping[str, Any]) -> list[tuple[int, Mapping[str, Any]]]:
    """(index in ``nics``, NIC) of every NIC with an ``rdma`` block."""
    return [
        (i, nic)
        for i, nic in enumerate(claims.get("nics") or [])
        if isinstance(nic, Mapping) and isinstance(nic.get("rdma"), Mapping)
    ]


def rdma_hosts(inv: Inventory) -> list[str]:
    """The hosts that declare an RDMA NIC, in inventory order."""
    return [h for h, host in inv.hosts.items() if declared_nics(host.vars)]


def skip_reason(inv: Inventory) -> str | None:
    """Why the RDMA check has nothing to do (None when some host declares RDMA)."""
    if rdma_hosts(inv):
        return None
    return f"no host of {inv.path.name} declares an RDMA NIC (nics[].rdma): nothing to check"


def _tool_findings(host: str, claims: Mapping[str, Any], probe: RdmaProbe) -> list[Finding]:
    out: list[Finding] = []
    for i, nic in declared_nics(claims):
        rdma = nic["rdma"]
        dev, kind, ifname = str(rdma.get("device")), rdma.get("type"), str(nic.get("name", ""))
        claim = f"{kind} {dev}"
        add = functools.partial(_rdma_finding, out, host, i, claim, f"rdma:{dev}")
        ibv = probe.ibv.get(dev)
        if not probe.ibv_devinfo.present:
            add("unverifiable", None, "ibv_devinfo is not installed")
        elif ibv is None:
            add(
                "mismatch",
                ", ".join(probe.ibv) or "none",
                f"ibv_devinfo does not list {dev} (it lists: {', '.join(probe.ibv) or 'nothing'})",
                "load the verbs provider (rdma-core, mlx5_ib) or correct rdma.device",
                ("device",),
            )
        else:
            port = ibv.ports.get(1) or next(iter(ibv.ports.values()), None)
            mtu = rdma.get("mtu")
            if port is not None and mtu is not None and int(mtu) <= 4096 and port.active_mtu is not None:
                if port.active_mtu != int(mtu):
                    add(
                        "mismatch",
                        port.active_mtu,
                        f"ibv_devinfo: {dev} active_mtu is {port.active_mtu}, declared {mtu}",
                        "set the interface MTU (9000 for RDMA MTU 4096) or correct rdma.mtu",
                        ("mtu",),
                    )
                else:
                    add("ok", port.active_mtu, f"ibv_devinfo: {dev} active_mtu {mtu}", "", ("mtu",))
            gid_index = rdma.get("gid_index")
            if port is not None and gid_index is not None and port.gids:
                gid = port.gids.get(int(gid_index))
                if gid is None or (kind == "roce_v2" and gid[1] != "RoCE v2"):
                    have = ", ".join(f"{k}={g} {t or ''}".strip() for k, (g, t) in sorted(port.gids.items()))
                    add(
                        "mismatch",
                        have,
                        f"ibv_devinfo: {dev} GID[{gid_index}] is "
                        f"{'absent' if gid is None else f'{gid[0]} {gid[1]}'}; the GID table has {have}",
                        "use the index of the RoCE v2 GID of the interface's IPv4 address",
                        ("gid_index",),
                    )
            if ibv.fw_ver:
                add("ok", ibv.fw_ver, f"{dev} firmware {ibv.fw_ver}")
        link = next((v for k, v in probe.links.items() if k.startswith(f"{dev}/")), None)
        if link is not None and link.get("state") != "ACTIVE":
            add(
                "mismatch",
                link.get("state"),
                f"rdma link: {dev} is {link.get('state')} ({link.get('physical_state')})",
                "check the cable, the switch port and the link",
                ("device",),
            )
        prio = rdma.get("pfc_priority")
        if prio is not None:
            tool = probe.qos.get(ifname)
            qos = parse_mlnx_qos(tool.text) if tool is not None and tool.present and tool.rc == 0 else None
            if tool is None or not tool.present:
                add(
                    "unverifiable",
                    None,
                    f"cannot check PFC on {ifname}: mlnx_qos is not installed",
                    "",
                    ("pfc_priority",),
                )
            elif qos is None:
                add(
                    "unverifiable",
                    None,
                    f"mlnx_qos -i {ifname} showed no PFC table (rc {tool.rc})",
                    "",
                    ("pfc_priority",),
                )
            elif int(prio) not in qos.pfc_enabled:
                add(
                    "mismatch",
                    f"PFC on {list(qos.pfc_enabled)}",
                    f"{ifname}: PFC is not enabled on priority {prio} "
                    f"(enabled: {list(qos.pfc_enabled) or 'none'})",
                    f"mlnx_qos -i {ifname} --pfc with priority {prio} on (and the same on the switch port)",
                    ("pfc_priority",),
                )
            else:
                add(
                    "ok",
                    f"PFC on {list(qos.pfc_enabled)}, trust {qos.trust}",
                    f"{ifname}: PFC on priority {prio}",
                    "",
                    ("pfc_priority",),
                )
        if rdma.get("ecn") is True:
            ecn = probe.ecn.get(ifname) or {}
            want = [int(prio)] if prio is not None else sorted({p for v in ecn.values() for p in v})
            if not ecn:
                add(
                    "unverifiable",
                    None,
                    f"cannot check ECN on {ifname}: no /sys/class/net/{ifname}/ecn",
                    "",
                    ("ecn",),
                )
            else:
                off = [
                    f"{side}/{p}"
                    for side in ("roce_np", "roce_rp")
                    for p in want
                    if not ecn.get(side, {}).get(p)
                ]
                if off:
                    add(
                        "mismatch",
                        "off: " + ", ".join(off),
                        f"{ifname}: RoCE ECN is off for {', '.join(off)}",
                        f"echo 1 > /sys/class/net/{ifname}/ecn/roce_np/enable/{want[0] if want else 0} "
                        "(and roce_rp), or correct rdma.ecn",
                        ("ecn",),
                    )
                else:
                    add("ok", "on", f"{ifname}: RoCE ECN on", "", ("ecn",))
    return out


def _pair_findings(
    host: str, claims: Mapping[str, Any], result: Mapping[str, Any]
) -> tuple[list[Finding], list[dict[str, Any]]]:
    findings: list[Finding] = []
    pairs: list[dict[str, Any]] = []
    nics = declared_nics(claims)
    if not nics:
        return findings, pairs
    i, nic = nics[0]
    dev = str(nic["rdma"].get("device"))
    claim = f"{nic['rdma'].get('type')} {dev}"
    add = functools.partial(_rdma_finding, findings, host, i, claim, f"rdma:{dev}")
    perf = result.get("perftest") or {}
    if not perf:
        return findings, pairs
    if perf.get("skipped"):
        add("unverifiable", None, f"perftest: {perf['skipped']}")
        return findings, pairs
    pair: dict[str, Any] = {"client": host, "server": perf.get("peer"), "device": dev}
    for test, parse in (("bw", parse_write_bw), ("lat", parse_write_lat)):
        run = perf.get(test) or {}
        parsed = parse(str(run.get("stdout", ""))) if run else None
        if parsed is None:
            tail = (str(run.get("stderr", "")) or str(run.get("stdout", "")))[-300:].strip()
            add(
                "mismatch",
                f"rc {run.get('rc')}",
                f"ib_write_{test} from {host} to {perf.get('peer')} gave no result "
                f"(rc {run.get('rc')}): {tail}",
                "check that both ports are ACTIVE, the GID index exists on both hosts "
                "and the peer address is reachable",
                ("device",),
            )
            pair[test] = None
            continue
        pair[test] = asdict(parsed)
    bw, lat = pair.get("bw"), pair.get("lat")
    if bw or lat:
        text = []
        if bw:
            text.append(f"{bw['bw_avg_gbps']} Gb/s ({bw['size_bytes']} B messages)")
        if lat:
            text.append(f"latency typical {lat['t_typical_us']} us")
        add("ok", "; ".join(text), f"perftest {host} -> {perf.get('peer')}: " + "; ".join(text))
    pairs.append(pair)
    return findings, pairs


def analyse(inv: Inventory, results: Sequence[Mapping[str, Any]]) -> RdmaReport:
    """Judge the probes (and perftest runs) of ``results`` against the claims of ``inv``.

    ``results``: one mapping per checked host: ``host``, ``probe`` (the probe's stdout) and
    ``perftest`` (``peer``, ``bw`` and ``lat`` with ``rc``/``stdout``/``stderr``, or ``skipped``).
    Problems are located at the claim's file, line and field, as ``inventory check`` does.
    """
    reason = skip_reason(inv)
    report = RdmaReport(str(inv.path), "skipped" if reason else "ok", reason or "")
    for result in results:
        host = str(result.get("host"))
        if host not in inv.hosts:
            continue
        claims = inv.hosts[host].vars
        probe = parse_probe(str(result.get("probe", "")))
        facts = HostFacts(rdma=probe.sysfs)
        findings = [
            f
            for f in _compare_rdma(host, claims, facts)
            if not (f.status == "unverifiable" and "PFC" in f.message)
        ]
        if probe.sysfs is not None:
            findings += _tool_findings(host, claims, probe)
        pair_findings, pairs = _pair_findings(host, claims, result)
        findings += pair_findings
        report.pairs += pairs
        report.add_findings(inv, host, findings, notes=True)
        report.hosts[host] = {
            "devices": {name: asdict(d) for name, d in (probe.sysfs or {}).items()},
            "sysfs": probe.sysfs is not None,
            "tools": {
                "ibv_devinfo": probe.ibv_devinfo.present,
                "rdma": probe.rdma_link.present,
                "mlnx_qos": any(t.present for t in probe.qos.values()),
                "perftest": probe.perftest,
            },
        }
    report.finish()
    return report
