"""Host facts: gather them through Ansible, parse them, compare them with the claims.

``roles/facts.yml`` runs one read-only probe per host and hands its raw output
back as the fact ``dataplat_facts``; everything else here is pure: parsers of
``lscpu``, ``/etc/os-release``, ``/sys/class/infiniband``, ``nvidia-smi`` and
``npu-smi`` output, and :func:`compare`, which says for every claim of a host
whether the facts confirm it (``ok``), contradict it (``mismatch``, an error) or
cannot tell (``unverifiable``, a note saying why).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from dataplat.inventory.model import Origin, Problem, Severity

Status = Literal["ok", "mismatch", "unverifiable"]

IB_MTUS = (256, 512, 1024, 2048, 4096)
MEMORY_SHORTFALL = 0.05
"""MemTotal is below the installed memory (firmware, kernel, crashkernel): up to 5 % (at least
1 GiB) less than ``memory_gb`` still counts as the claimed memory."""

OS_IDS = {
    "kylin": "kylin",
    "openeuler": "openeuler",
    "uos": "uos",
    "uniontech": "uos",
    "debian": "debian",
    "ubuntu": "ubuntu",
    "centos": "centos",
}

# --------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU as nvidia-smi reports it."""

    name: str
    memory_gb: float


@dataclass(frozen=True)
class Npu:
    """One Ascend NPU as npu-smi reports it (``memory_gb`` is its HBM, None when not shown)."""

    index: int
    name: str
    health: str
    memory_gb: float | None


@dataclass(frozen=True)
class Gid:
    """One populated entry of a port's GID table."""

    gid: str
    type: str | None
    ndev: str | None


@dataclass(frozen=True)
class RdmaPort:
    """A port of an RDMA device (``/sys/class/infiniband/<dev>/ports/<n>``)."""

    number: int
    link_layer: str | None = None
    state: str | None = None
    phys_state: str | None = None
    rate: str | None = None
    gids: dict[int, Gid] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.state and "ACTIVE" in self.state.upper())


@dataclass(frozen=True)
class RdmaDevice:
    """An RDMA device with its ports and the MTU of its network interfaces."""

    name: str
    ports: dict[int, RdmaPort] = field(default_factory=dict)
    netdev_mtus: dict[str, int] = field(default_factory=dict)

    def roce_mtu(self) -> int | None:
        """The RDMA MTU a RoCE port gets: the largest IB MTU that fits in the interface MTU."""
        if not self.netdev_mtus:
            return None
        eth = max(self.netdev_mtus.values())
        fitting = [m for m in IB_MTUS if m + 78 <= eth]  # RoCEv2 headers: Eth+IP+UDP+BTH+ICRC
        return max(fitting) if fitting else None


@dataclass(frozen=True)
class ToolOutput:
    """What a probe of an optional tool found: absent, failed (rc != 0) or its output."""

    present: bool
    rc: int = 0
    text: str = ""


@dataclass(frozen=True)
class HostFacts:
    """What a host really is. ``None`` means the probe could not tell."""

    arch: str | None = None
    cpu_model: str | None = None
    cores: int | None = None
    memory_gb: float | None = None
    numa_nodes: int | None = None
    os_family: str | None = None
    os_id: str | None = None
    os_version: str | None = None
    os_name: str | None = None
    rdma: dict[str, RdmaDevice] | None = None
    """None: /sys/class/infiniband does not exist."""
    gpus: list[Gpu] | None = None
    """None: nvidia-smi is absent or failed (see ``gpu_note``)."""
    gpu_note: str = ""
    npus: list[Npu] | None = None
    npu_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping."""
        return asdict(self)


# --------------------------------------------------------------------------------------- parsers


def split_probe(text: str) -> dict[str, str]:
    """The sections of the probe output of ``roles/facts.yml`` (``@@@dataplat <name>`` lines)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@@dataplat "):
            current = sections.setdefault(line.split(None, 1)[1].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def parse_tool(section: str) -> ToolOutput:
    """A tool section: ``@@@absent``, or its output followed by ``@@@rc N``."""
    lines = section.splitlines()
    if any(line.strip() == "@@@absent" for line in lines):
        return ToolOutput(present=False)
    rc = 0
    body = []
    for line in lines:
        if line.startswith("@@@rc "):
            rc = int(line.split()[1])
        else:
            body.append(line)
    return ToolOutput(present=True, rc=rc, text="\n".join(body))


def tool_note(tool: ToolOutput, name: str) -> str:
    """Why the output of the tool ``name`` cannot be used (empty when it can)."""
    if not tool.present:
        return f"{name} is not installed"
    if tool.rc != 0:
        return f"{name} failed (rc {tool.rc}): {tool.text.strip()[:200]}"
    return ""


def parse_lscpu(text: str) -> dict[str, str]:
    """``lscpu`` output as a mapping of its field names (``Architecture``, ``Model name``...)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out.setdefault(key.strip(), value.strip())
    return out


def parse_meminfo_gb(text: str) -> float | None:
    """MemTotal of ``/proc/meminfo`` in GiB."""
    m = re.search(r"MemTotal:\s+(\d+)\s*kB", text)
    return round(int(m.group(1)) / 1024 / 1024, 2) if m else None


def parse_os_release(text: str) -> dict[str, str]:
    """``/etc/os-release`` as a mapping (quotes removed)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def os_family(release: Mapping[str, str]) -> str | None:
    """The dataplat OS family of an os-release mapping (ID first, then ID_LIKE)."""
    for candidate in [release.get("ID", ""), *release.get("ID_LIKE", "").split()]:
        family = OS_IDS.get(candidate.lower())
        if family:
            return family
    name = release.get("NAME", "").lower()
    for key, family in OS_IDS.items():
        if key in name:
            return family
    return None


def parse_infiniband(text: str) -> dict[str, RdmaDevice] | None:
    """The ``infiniband`` probe section: ``path:value`` lines of ``/sys/class/infiniband``.

    None when the directory does not exist (``@@@absent``).
    """
    if "@@@absent" in text:
        return None
    devices: dict[str, dict[str, Any]] = {}
    pat = re.compile(r"^/sys/class/infiniband/([^/]+)(?:/(.*))?$")
    for raw in text.splitlines():
        raw = raw.strip()
        if not raw.startswith("/sys/class/infiniband/"):
            continue
        path, _, value = raw.partition(":") if ":" in raw else (raw, "", "")
        m = pat.match(path)
        if not m:
            continue
        dev = devices.setdefault(m.group(1), {"ports": {}, "mtus": {}})
        rest = (m.group(2) or "").split("/")
        if len(rest) >= 3 and rest[0] == "ports" and rest[1].isdigit():
            port = dev["ports"].setdefault(int(rest[1]), {"gids": {}})
            leaf = rest[2:]
            if len(leaf) == 1 and leaf[0] in ("link_layer", "state", "phys_state", "rate"):
                port[leaf[0]] = value.strip()
            elif len(leaf) == 2 and leaf[0] == "gids" and leaf[1].isdigit():
                port["gids"].setdefault(int(leaf[1]), {})["gid"] = value.strip()
            elif len(leaf) == 3 and leaf[0] == "gid_attrs" and leaf[2].isdigit() and leaf[1] in _GID_ATTRS:
                port["gids"].setdefault(int(leaf[2]), {})[leaf[1][:-1]] = value.strip()
        elif len(rest) == 4 and rest[0] == "device" and rest[1] == "net" and rest[3] == "mtu":
            try:
                dev["mtus"][rest[2]] = int(value.strip())
            except ValueError:
                pass
    out: dict[str, RdmaDevice] = {}
    for name, d in sorted(devices.items()):
        ports = {}
        for number, p in sorted(d["ports"].items()):
            gids = {
                i: Gid(g.get("gid", ""), g.get("type"), g.get("ndev"))
                for i, g in sorted(p["gids"].items())
                if g.get("gid") or g.get("type")
            }
            ports[number] = RdmaPort(
                number, p.get("link_layer"), p.get("state"), p.get("phys_state"), p.get("rate"), gids
            )
        out[name] = RdmaDevice(name, ports, dict(d["mtus"]))
    return out


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader`` -> GPUs.

    Lines look like ``NVIDIA A800-SXM4-80GB, 81920 MiB``; anything else is ignored.
    """
    gpus: list[Gpu] = []
    for line in text.splitlines():
        m = re.match(r"^\s*(.+?),\s*([\d.]+)\s*(MiB|GiB|MB|GB)\s*$", line)
        if not m:
            continue
        amount = float(m.group(2))
        gb = amount / 1024 if m.group(3) in ("MiB", "MB") else amount
        gpus.append(Gpu(m.group(1).strip(), round(gb, 1)))
    return gpus


_GID_ATTRS = ("types", "ndevs")
_NPU_HEALTH = {"OK", "WARNING", "ALARM", "CRITICAL", "UNKNOWN", "ABNORMAL"}


def parse_npu_smi(text: str) -> list[Npu]:
    """``npu-smi info`` (the device table) -> NPUs.

    Each NPU takes two table rows: ``| 0  910B3 | OK | power temp hugepages |`` then
    ``| chip | bus-id | aicore memory HBM-used / HBM-total |``; the HBM total (MB)
    is the last ``used / total`` pair of the second row. The process table that
    follows is ignored.
    """
    npus: list[Npu] = []
    pending: tuple[int, str, str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        head = re.match(r"^(\d+)\s+(\S.*)$", cells[0])
        if head and cells[1].split()[0:1] and cells[1].split()[0].upper() in _NPU_HEALTH:
            if pending is not None:
                npus.append(Npu(*pending, None))
            pending = (int(head.group(1)), head.group(2).strip(), cells[1].split()[0])
            continue
        if pending is not None and re.match(r"^\d+$", cells[0]) and re.search(r"[0-9A-Fa-f]{4}:", cells[1]):
            pairs = re.findall(r"(\d+)\s*/\s*(\d+)", cells[-1])
            memory = round(int(pairs[-1][1]) / 1024, 1) if pairs else None
            npus.append(Npu(*pending, memory))
            pending = None
    if pending is not None:
        npus.append(Npu(*pending, None))
    return npus


def parse_probe(text: str) -> HostFacts:
    """The whole probe output of ``roles/facts.yml`` -> :class:`HostFacts`."""
    s = split_probe(text)
    lscpu = parse_lscpu(s.get("lscpu", ""))
    uname = s.get("uname", "").strip().splitlines()
    arch = (uname[0].strip() if uname else "") or lscpu.get("Architecture")
    cores: int | None = None
    for candidate in (s.get("nproc", "").strip(), lscpu.get("CPU(s)", "")):
        if candidate.isdigit():
            cores = int(candidate)
            break
    numa_dirs = [line for line in s.get("numa", "").splitlines() if line.strip()]
    numa: int | None = len(numa_dirs) or None
    if numa is None and lscpu.get("NUMA node(s)", "").isdigit():
        numa = int(lscpu["NUMA node(s)"])
    release = parse_os_release(s.get("os-release", ""))
    model = lscpu.get("Model name") or lscpu.get("BIOS Model name") or None
    if model == "-":
        model = lscpu.get("BIOS Model name") or None

    gpus: list[Gpu] | None = None
    nv = parse_tool(s.get("nvidia-smi", "@@@absent"))
    gpu_note = tool_note(nv, "nvidia-smi")
    if not gpu_note:
        gpus = parse_nvidia_smi(nv.text)
    npus: list[Npu] | None = None
    npu = parse_tool(s.get("npu-smi", "@@@absent"))
    npu_note = tool_note(npu, "npu-smi")
    if not npu_note:
        npus = parse_npu_smi(npu.text)
    return HostFacts(
        arch=arch or None,
        cpu_model=model,
        cores=cores,
        memory_gb=parse_meminfo_gb(s.get("meminfo", "")),
        numa_nodes=numa,
        os_family=os_family(release) if release else None,
        os_id=release.get("ID"),
        os_version=release.get("VERSION_ID") or release.get("VERSION"),
        os_name=release.get("PRETTY_NAME"),
        rdma=parse_infiniband(s.get("infiniband", "@@@absent")),
        gpus=gpus,
        gpu_note=gpu_note,
        npus=npus,
        npu_note=npu_note,
    )


# --------------------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class Finding:
    """One claim of one host compared with its facts.

    ``status``: ``ok``; ``mismatch`` (an error: the facts contradict the claim);
    ``unverifiable`` (a note: the claim, or its absence, could not be checked, and why).
    ``var`` and ``sub`` name the inventory variable the claim comes from, to locate it.
    """

    host: str
    item: str
    status: Status
    claim: str
    fact: str
    message: str
    hint: str = ""
    var: str | None = None
    sub: tuple[str | int, ...] = ()

    @property
    def severity(self) -> Severity:
        return "error" if self.status == "mismatch" else "info"

    def to_problem(self, origin: Origin) -> Problem:
        """This finding as a :class:`Problem` located at ``origin``."""
        return origin.problem(self.severity, f"host {self.host}: {self.message}", self.hint)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping."""
        d = asdict(self)
        d["sub"] = list(self.sub)
        d["severity"] = self.severity
        return d


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _vendor(text: str) -> str | None:
    t = text.lower()
    for key in ("kunpeng", "phytium", "hygon", "zhaoxin", "intel", "amd", "ampere"):
        if key in t:
            return key
    if "xeon" in t:
        return "intel"
    if "epyc" in t:
        return "amd"
    return None


def _model_matches(claim: str, fact: str, drop: Sequence[str] = ()) -> bool:
    c, f = _norm(claim), _norm(fact)
    for word in drop:
        c, f = c.replace(word, ""), f.replace(word, "")
    return bool(c and f and (c in f or f in c))


def compare(host: str, claims: Mapping[str, Any], facts: HostFacts) -> list[Finding]:
    """Compare what the inventory claims about ``host`` (its merged variables) with its facts."""
    out: list[Finding] = []

    def add(
        item: str,
        status: Status,
        claim: Any,
        fact: Any,
        message: str,
        hint: str = "",
        var: str | None = None,
        sub: tuple[str | int, ...] = (),
    ) -> None:
        out.append(
            Finding(
                host,
                item,
                status,
                "" if claim is None else str(claim),
                "" if fact is None else str(fact),
                message,
                hint,
                var or item,
                sub,
            )
        )

    # architecture
    arch = claims.get("arch")
    if facts.arch is None:
        add("arch", "unverifiable", arch, None, "cannot check the architecture: uname -m gave nothing")
    elif arch is None:
        add(
            "arch",
            "unverifiable",
            None,
            facts.arch,
            f"arch is not declared (the host is {facts.arch})",
            f"declare arch: {facts.arch}",
        )
    elif arch != facts.arch:
        add(
            "arch",
            "mismatch",
            arch,
            facts.arch,
            f"declared arch {arch} but the host is {facts.arch}",
            f"set arch: {facts.arch} (binaries are chosen by arch)",
        )
    else:
        add("arch", "ok", arch, facts.arch, f"arch {arch}")

    # CPU model
    model = claims.get("cpu_model")
    if model is None:
        add("cpu_model", "unverifiable", None, facts.cpu_model, "cpu_model is not declared")
    elif facts.cpu_model is None:
        add("cpu_model", "unverifiable", model, None, "cannot check the CPU model: lscpu shows none")
    elif _model_matches(str(model), facts.cpu_model):
        add("cpu_model", "ok", model, facts.cpu_model, f"CPU {facts.cpu_model}")
    elif _vendor(str(model)) and _vendor(facts.cpu_model) and _vendor(str(model)) != _vendor(facts.cpu_model):
        add(
            "cpu_model",
            "mismatch",
            model,
            facts.cpu_model,
            f"declared CPU {model!r} but the host has {facts.cpu_model!r}",
            f"set cpu_model: {facts.cpu_model}",
        )
    elif _vendor(str(model)) and _vendor(str(model)) == _vendor(facts.cpu_model):
        add(
            "cpu_model",
            "ok",
            model,
            facts.cpu_model,
            f"CPU vendor matches ({facts.cpu_model}); lscpu does not show the exact model",
        )
    else:
        add(
            "cpu_model",
            "unverifiable",
            model,
            facts.cpu_model,
            f"cannot tell whether {model!r} is {facts.cpu_model!r}",
        )

    # cores, memory, NUMA
    cores = claims.get("cores")
    if cores is None:
        add("cores", "unverifiable", None, facts.cores, "cores is not declared")
    elif facts.cores is None:
        add("cores", "unverifiable", cores, None, "cannot count the CPUs (nproc and lscpu gave nothing)")
    elif facts.cores < int(cores):
        add(
            "cores",
            "mismatch",
            cores,
            facts.cores,
            f"declared {cores} cores but the host has {facts.cores}",
            f"set cores: {facts.cores}, or check SMT/CPU offlining in the BIOS",
        )
    else:
        add("cores", "ok", cores, facts.cores, f"{facts.cores} logical CPUs (declared {cores})")

    memory = claims.get("memory_gb")
    if memory is None:
        add("memory_gb", "unverifiable", None, facts.memory_gb, "memory_gb is not declared")
    elif facts.memory_gb is None:
        add("memory_gb", "unverifiable", memory, None, "cannot read MemTotal from /proc/meminfo")
    elif facts.memory_gb < float(memory) - max(float(memory) * MEMORY_SHORTFALL, 1.0):
        add(
            "memory_gb",
            "mismatch",
            memory,
            facts.memory_gb,
            f"declared {memory} GiB of memory but the host has {facts.memory_gb} GiB",
            f"set memory_gb: {int(facts.memory_gb)}, or look for failed DIMMs",
        )
    else:
        add("memory_gb", "ok", memory, facts.memory_gb, f"{facts.memory_gb} GiB usable (declared {memory})")

    numa = claims.get("numa_nodes")
    if numa is None:
        add("numa_nodes", "unverifiable", None, facts.numa_nodes, "numa_nodes is not declared")
    elif facts.numa_nodes is None:
        add("numa_nodes", "unverifiable", numa, None, "cannot count NUMA nodes (/sys/devices/system/node)")
    elif int(numa) != facts.numa_nodes:
        add(
            "numa_nodes",
            "mismatch",
            numa,
            facts.numa_nodes,
            f"declared {numa} NUMA nodes but the host has {facts.numa_nodes}",
            f"set numa_nodes: {facts.numa_nodes}, or check the BIOS NUMA setting",
        )
    else:
        add("numa_nodes", "ok", numa, facts.numa_nodes, f"{numa} NUMA nodes")

    # OS
    os_claim = claims.get("os") if isinstance(claims.get("os"), Mapping) else None
    fact_os = f"{facts.os_family or facts.os_id} {facts.os_version or ''}".strip() or None
    if os_claim is None:
        add("os", "unverifiable", None, facts.os_name or fact_os, "os is not declared")
    elif facts.os_family is None and facts.os_id is None:
        add("os", "unverifiable", os_claim, None, "cannot read /etc/os-release")
    else:
        family = os_claim.get("family")
        version = str(os_claim.get("version", "") or "")
        fv = (facts.os_version or "").lower()
        claim_text = f"{family} {version}".strip()
        if family != facts.os_family:
            add(
                "os",
                "mismatch",
                claim_text,
                facts.os_name or fact_os,
                f"declared OS {claim_text} but the host runs {facts.os_name or fact_os}",
                f"set os.family: {facts.os_family or facts.os_id}",
                sub=("family",),
            )
        elif version and not (
            fv.startswith(version.lower()) or version.lower() in (facts.os_name or "").lower()
        ):
            add(
                "os",
                "mismatch",
                claim_text,
                facts.os_name or fact_os,
                f"declared {family} {version} but the host runs version {facts.os_version}",
                f"set os.version: {facts.os_version}",
                sub=("version",),
            )
        else:
            add("os", "ok", claim_text, facts.os_name or fact_os, f"OS {facts.os_name or fact_os}")

    out.extend(_compare_rdma(host, claims, facts))
    out.extend(_compare_accelerators(host, claims, facts))
    return out


def _rdma_finding(
    out: list[Finding],
    host: str,
    index: int,
    claim: str,
    item: str,
    status: Status,
    fact: Any,
    message: str,
    hint: str = "",
    sub: tuple[str | int, ...] = (),
) -> None:
    out.append(
        Finding(
            host,
            item,
            status,
            claim,
            "" if fact is None else str(fact),
            message,
            hint,
            "nics",
            (index, "rdma", *sub),
        )
    )


def _compare_rdma(host: str, claims: Mapping[str, Any], facts: HostFacts) -> list[Finding]:
    out: list[Finding] = []
    declared: list[tuple[int, Mapping[str, Any]]] = []
    for i, nic in enumerate(claims.get("nics") or []):
        if isinstance(nic, Mapping) and isinstance(nic.get("rdma"), Mapping):
            declared.append((i, nic))
    if not declared:
        if facts.rdma is None:
            out.append(
                Finding(
                    host,
                    "rdma",
                    "unverifiable",
                    "",
                    "",
                    "cannot check RDMA: no RDMA NIC is declared and /sys/class/infiniband does not exist",
                    var="nics",
                )
            )
        else:
            names = ", ".join(facts.rdma) or "none"
            out.append(
                Finding(
                    host,
                    "rdma",
                    "unverifiable",
                    "",
                    names,
                    f"no RDMA NIC is declared; the host has RDMA devices: {names}",
                    var="nics",
                )
            )
        return out
    for i, nic in declared:
        rdma = nic["rdma"]
        dev = str(rdma.get("device"))
        kind = rdma.get("type")
        f = functools.partial(_rdma_finding, out, host, i, f"{kind} {dev}", f"rdma:{dev}")

        if facts.rdma is None:
            f(
                "mismatch",
                None,
                f"declared {kind} device {dev} is absent: /sys/class/infiniband does not exist",
                "load the RDMA driver (mlx5_ib / rdma-core) or remove the rdma block",
                ("device",),
            )
            continue
        device = facts.rdma.get(dev)
        if device is None:
            f(
                "mismatch",
                ", ".join(facts.rdma) or "none",
                f"declared {kind} device {dev} is absent (the host has: {', '.join(facts.rdma) or 'none'})",
                "correct rdma.device (see `ls /sys/class/infiniband`)",
                ("device",),
            )
            continue
        port = device.ports.get(1) or next(iter(device.ports.values()), None)
        if port is None:
            f("unverifiable", None, f"{dev} shows no port under /sys/class/infiniband/{dev}/ports")
            continue
        want_layer = "Ethernet" if kind == "roce_v2" else "InfiniBand"
        if port.link_layer and port.link_layer != want_layer:
            f(
                "mismatch",
                port.link_layer,
                f"{dev} link layer is {port.link_layer}, {kind} needs {want_layer}",
                "set rdma.type to match the fabric (Ethernet: roce_v2, InfiniBand: infiniband)",
                ("type",),
            )
        else:
            f("ok", port.link_layer, f"{dev} link layer {port.link_layer or '?'}")
        if not port.active:
            f(
                "mismatch",
                port.state,
                f"{dev} port {port.number} is not ACTIVE (state {port.state})",
                "check the cable, the switch port and the subnet manager / link",
                (),
            )
        mtu = rdma.get("mtu")
        if mtu is not None:
            eth = max(device.netdev_mtus.values()) if device.netdev_mtus else None
            actual = eth if int(mtu) > 4096 else device.roce_mtu() if kind == "roce_v2" else None
            if actual is None:
                f("unverifiable", None, f"cannot read the MTU of {dev}", sub=("mtu",))
            elif int(mtu) != actual:
                f(
                    "mismatch",
                    actual,
                    f"{dev} MTU is {actual} (interface MTU {eth}), declared {mtu}",
                    "set the interface MTU (9000 for RDMA MTU 4096) or correct rdma.mtu",
                    ("mtu",),
                )
            else:
                f("ok", actual, f"{dev} MTU {actual}", sub=("mtu",))
        gid_index = rdma.get("gid_index")
        if gid_index is not None:
            gid = port.gids.get(int(gid_index))
            if gid is None:
                f(
                    "mismatch",
                    None,
                    f"{dev} has no GID at index {gid_index}",
                    "give the interface an IP address (RoCEv2 GIDs come from it) or correct gid_index",
                    ("gid_index",),
                )
            elif kind == "roce_v2" and gid.type and "v2" not in gid.type.lower():
                f(
                    "mismatch",
                    gid.type,
                    f"{dev} GID {gid_index} is {gid.type}, not RoCE v2",
                    "use the index whose gid_attrs/types says RoCE v2 (usually 3)",
                    ("gid_index",),
                )
            else:
                f(
                    "ok",
                    f"{gid.gid} {gid.type or ''}".strip(),
                    f"{dev} GID {gid_index} {gid.type or ''}".strip(),
                    sub=("gid_index",),
                )
        if "pfc_priority" in rdma or "ecn" in rdma:
            f(
                "unverifiable",
                None,
                f"{dev}: PFC priority and ECN are NIC/switch QoS settings that sysfs "
                "does not show; check them with mlnx_qos / the switch",
                sub=("pfc_priority",),
            )
    return out


def _compare_accelerators(host: str, claims: Mapping[str, Any], facts: HostFacts) -> list[Finding]:
    out: list[Finding] = []
    declared: dict[str, list[tuple[int, Mapping[str, Any]]]] = {"nvidia": [], "ascend": []}
    for i, acc in enumerate(claims.get("accelerators") or []):
        if isinstance(acc, Mapping) and acc.get("kind") in declared:
            declared[str(acc["kind"])].append((i, acc))
    tools = {
        "nvidia": ("nvidia-smi", facts.gpus, facts.gpu_note, "GPUs"),
        "ascend": ("npu-smi", facts.npus, facts.npu_note, "NPUs"),
    }
    for kind, (tool, found, note, noun) in tools.items():
        item = f"accelerators:{kind}"
        claims_of = declared[kind]
        want = sum(int(a.get("count", 0)) for _, a in claims_of)
        first = claims_of[0][0] if claims_of else None
        sub: tuple[str | int, ...] = (first, "count") if first is not None else ()
        if found is None:
            if want:
                out.append(
                    Finding(
                        host,
                        item,
                        "mismatch",
                        f"{want} {kind}",
                        "",
                        f"declared {want} {kind} accelerators not found: {note}",
                        f"install the driver and {tool}, or remove the accelerators claim",
                        "accelerators",
                        sub,
                    )
                )
            else:
                out.append(
                    Finding(
                        host, item, "unverifiable", "", "", f"cannot check {noun}: {note}", var="accelerators"
                    )
                )
            continue
        if not want:
            status: Status = "unverifiable" if found else "ok"
            out.append(
                Finding(
                    host,
                    item,
                    status,
                    "",
                    f"{len(found)}",
                    f"no {kind} accelerators declared; {tool} shows {len(found)} {noun}",
                    f"declare accelerators: [{{kind: {kind}, count: {len(found)}}}]" if found else "",
                    "accelerators",
                )
            )
            continue
        names = sorted({d.name for d in found})
        fact_text = f"{len(found)} x {', '.join(names)}" if found else "0"
        if len(found) < want:
            out.append(
                Finding(
                    host,
                    item,
                    "mismatch",
                    f"{want}",
                    fact_text,
                    f"declared {want} {kind} accelerators but {tool} shows {len(found)}",
                    f"set count: {len(found)}, or find the missing devices ({tool})",
                    "accelerators",
                    sub,
                )
            )
        else:
            out.append(
                Finding(
                    host,
                    item,
                    "ok",
                    f"{want}",
                    fact_text,
                    f"{len(found)} {noun}",
                    var="accelerators",
                    sub=sub,
                )
            )
        for i, acc in claims_of:
            model = acc.get("model")
            if (
                model
                and found
                and not any(_model_matches(str(model), d.name, ("nvidia", "ascend", "huawei")) for d in found)
            ):
                out.append(
                    Finding(
                        host,
                        item,
                        "mismatch",
                        str(model),
                        ", ".join(names),
                        f"declared model {model!r} but {tool} shows {', '.join(names)}",
                        f"set model: {names[0]}",
                        "accelerators",
                        (i, "model"),
                    )
                )
            mem = acc.get("memory_gb")
            sizes = [d.memory_gb for d in found if d.memory_gb is not None]
            if mem and sizes and min(sizes) < float(mem) * (1 - MEMORY_SHORTFALL):
                out.append(
                    Finding(
                        host,
                        item,
                        "mismatch",
                        f"{mem} GB",
                        f"{min(sizes)} GB",
                        f"declared {mem} GB per device but {tool} shows {min(sizes)} GB",
                        f"set memory_gb: {int(min(sizes))}",
                        "accelerators",
                        (i, "memory_gb"),
                    )
                )
    return out


# --------------------------------------------------------------------------------------- gather


@dataclass
class FactsRun:
    """The outcome of the facts playbook: facts per reachable host, a reason per unreachable one."""

    facts: dict[str, HostFacts]
    unreachable: dict[str, str]
    ident: str = ""
    artifacts_dir: str = ""


def gather_facts(
    inventory: str | Path, home: Path, hosts: Sequence[str] = (), limit: str | None = None
) -> FactsRun:
    """Run ``roles/facts.yml`` against ``inventory`` and parse what every host reported.

    ``hosts`` are the hosts expected to answer; those without facts are unreachable
    (with Ansible's message). The run's artefacts stay under ``<home>/runs/``.
    """
    from dataplat.deploy.runner import run_playbook

    result = run_playbook("facts.yml", inventory, Path(home), ident_prefix="facts", limit=limit)
    facts = {
        h: parse_probe(str(raw.get("probe", "")))
        for h, raw in result.facts.items()
        if isinstance(raw, Mapping)
    }
    unreachable: dict[str, str] = {}
    reasons = {f["host"]: f"{f.get('task') or 'facts'}: {f.get('msg') or 'failed'}" for f in result.failures}
    expected = list(hosts) or list(result.stats)
    for host in expected:
        if host not in facts:
            stats = result.stats.get(host)
            why = reasons.get(host)
            if why is None:
                why = (
                    "unreachable"
                    if stats and stats.unreachable
                    else f"no facts (ansible status {result.status})"
                )
            unreachable[host] = why.strip()
    return FactsRun(facts, unreachable, result.ident, str(result.artifacts_dir))
