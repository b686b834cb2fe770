"""Placement: which component instance runs on which host, on which ports.

:func:`plan` turns an :class:`~dataplat.inventory.model.Inventory` into a
:class:`Plan`, the single source of truth the deploy consumes: the Ansible roles
get ``plan.to_dict()`` as an extra variable, the deploy writes it to the
platform's home and ``dataplat status`` reads it back with :meth:`Plan.from_dict`.

Rules:

* warehouse: every host of ``warehouse`` runs ``warehouse_members_per_host``
  Patroni members (``pg0``, ``pg1``, ... in group order); member *k* on a host
  listens on ``warehouse_{pg,rest,raft}_port + k``.
* witness (``patroni_raft_controller``, only with ``warehouse_dcs: raft``): on the
  host with ``warehouse_witness: true``, else on a host running no warehouse member
  (another AZ preferred), else on the first warehouse host. No witness when the
  members are an odd number spread over three or more hosts and no host asks for one:
  they are a quorum by themselves, and a witness beside a member would make losing
  that host cost two of four votes (no quorum left).
* stream: one NATS node per ``stream`` host (``nats0``, ...); lake: one per
  ``lake`` host (``lake``, then ``lake-1``, ...); loadgen: one per ``loadgen`` host.
* serving: the pools of ``serving_pools``; a pool's replicas go only on ``serving``
  hosts carrying its accelerator kind (cpu pools on any), spread across AZs, then
  racks, then hosts; replica *i* on a host gets ``serving_port + i``.
* decision: ``decision_replicas`` spread over ``decision`` hosts, ``decision_port + i``.
* metrics: one exporter per host that runs any instance.

Problems found on the way (ports bound twice, pools without matching hosts,
replicas that cannot be spread) are part of the plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dataplat.inventory.model import ARCHES, Host, Inventory, Origin, Problem

COMPONENTS: tuple[str, ...] = (
    "warehouse",
    "warehouse-witness",
    "stream",
    "lake",
    "metrics",
    "serving",
    "decision",
    "loadgen",
)

PORT_VARS: dict[str, dict[str, str]] = {
    "warehouse": {"pg": "warehouse_pg_port", "rest": "warehouse_rest_port", "raft": "warehouse_raft_port"},
    "warehouse-witness": {"raft": "warehouse_witness_raft_port"},
    "stream": {
        "client": "stream_client_port",
        "monitor": "stream_monitor_port",
        "cluster": "stream_cluster_port",
    },
    "metrics": {"http": "metrics_port"},
    "lake": {},
    "serving": {"http": "serving_port"},
    "decision": {"http": "decision_port"},
    "loadgen": {},
}
"""component -> port name -> the variable that sets its base."""


@dataclass(frozen=True)
class Instance:
    """One process of the platform, placed on one host."""

    component: str
    name: str
    host: str
    address: str
    ports: dict[str, int]
    arch: str | None
    rack: str | None
    az: str | None
    pool: str | None = None
    accelerator: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping with every field."""
        d = asdict(self)
        d["ports"] = dict(self.ports)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Instance:
        """Inverse of :meth:`to_dict`."""
        return cls(
            component=d["component"],
            name=d["name"],
            host=d["host"],
            address=d["address"],
            ports={str(k): int(v) for k, v in (d.get("ports") or {}).items()},
            arch=d.get("arch"),
            rack=d.get("rack"),
            az=d.get("az"),
            pool=d.get("pool"),
            accelerator=d.get("accelerator"),
        )


@dataclass(frozen=True)
class Plan:
    """Every instance of the platform and the problems placement found."""

    instances: tuple[Instance, ...]
    problems: tuple[Problem, ...]

    def by_component(self, component: str) -> list[Instance]:
        """The instances of ``component``, in plan order."""
        return [i for i in self.instances if i.component == component]

    def get(self, name: str) -> Instance:
        """The instance called ``name``; KeyError when there is none."""
        for inst in self.instances:
            if inst.name == name:
                return inst
        raise KeyError(name)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    def open_ports(self) -> dict[str, list[int]]:
        """host -> the TCP ports its instances serve, which its firewall must let in.

        roles/common opens the same ports with firewalld or ufw on hosts running one. Ports an
        autoscaled pool's replicas take behind their supervisor are not listed: only the
        supervisor on the same host talks to them.
        """
        out: dict[str, set[int]] = {}
        for inst in self.instances:
            out.setdefault(inst.host, set()).update(inst.ports.values())
        return {host: sorted(ports) for host, ports in out.items() if ports}

    def to_dict(self) -> dict[str, Any]:
        """``{"instances": [...], "problems": [...]}``, JSON-able."""
        return {
            "instances": [i.to_dict() for i in self.instances],
            "problems": [p.to_dict() for p in self.problems],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict`."""
        return cls(
            instances=tuple(Instance.from_dict(i) for i in d.get("instances", [])),
            problems=tuple(Problem.from_dict(p) for p in d.get("problems", [])),
        )


def _label(host: Host, key: str) -> str | None:
    value = host.vars.get(key)
    return str(value) if value not in (None, "") else None


def _arch(host: Host) -> str | None:
    value = host.vars.get("arch")
    return str(value) if value in ARCHES else None


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _accelerator_kinds(host: Host) -> dict[str, int]:
    """kind -> number of devices the host declares."""
    out: Counter[str] = Counter()
    for acc in host.vars.get("accelerators") or []:
        if isinstance(acc, Mapping) and acc.get("kind"):
            out[str(acc["kind"])] += _int(acc.get("count"), 1)
    return dict(out)


class _Planner:
    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.problems: list[Problem] = []
        self.per_component: dict[str, list[Instance]] = {c: [] for c in COMPONENTS}

    # -- helpers ------------------------------------------------------------------------------
    def make(
        self,
        component: str,
        name: str,
        host: Host,
        offsets: Mapping[str, int] | int = 0,
        pool: str | None = None,
        accelerator: str | None = None,
    ) -> Instance:
        ports: dict[str, int] = {}
        for port_name, var in PORT_VARS[component].items():
            offset = offsets if isinstance(offsets, int) else offsets.get(port_name, 0)
            ports[port_name] = _int(host.vars.get(var), 0) + offset
        inst = Instance(
            component,
            name,
            host.name,
            host.address,
            ports,
            _arch(host),
            _label(host, "rack"),
            _label(host, "az"),
            pool,
            accelerator,
        )
        self.per_component[component].append(inst)
        return inst

    def spread_order(self, hosts: Sequence[Host], placed: Sequence[Instance], load: Counter[str]) -> Host:
        """The host for the next replica: fewest replicas in its AZ, then rack, then host."""
        az_count = Counter(i.az for i in placed)
        rack_count = Counter((i.az, i.rack) for i in placed)
        host_count = Counter(i.host for i in placed)
        index = {h.name: n for n, h in enumerate(hosts)}
        return min(
            hosts,
            key=lambda h: (
                az_count[_label(h, "az")] if _label(h, "az") else 0,
                rack_count[(_label(h, "az"), _label(h, "rack"))] if _label(h, "rack") else 0,
                host_count[h.name],
                load[h.name],
                index[h.name],
            ),
        )

    def spread_warning(self, what: str, instances: Sequence[Instance], origin: Origin, hint: str) -> None:
        """Warn when replicas share a host, or sit in one AZ / rack although the inventory has several."""
        n = len(instances)
        if n < 2:
            return
        names = ", ".join(i.name for i in instances)
        per_host = Counter(i.host for i in instances)
        if len(per_host) < n:
            shared = ", ".join(f"{h} ({c})" for h, c in per_host.items() if c > 1)
            self.problems.append(
                origin.problem(
                    "warning",
                    f"{what}: replicas {names} share a host: {shared}; losing that host loses "
                    f"several replicas (fine for a one-machine platform)",
                    hint,
                )
            )
            return
        for level in ("az", "rack"):
            available = {v for h in self.inv.hosts.values() if (v := _label(h, level))}
            used = {getattr(i, level) for i in instances}
            if len(available) > 1 and len(used) == 1 and None not in used:
                label = "AZ" if level == "az" else "rack"
                self.problems.append(
                    origin.problem(
                        "warning",
                        f"{what}: replicas {names} are all in {label} {used.pop()} although the "
                        f"inventory has {len(available)} {label}s",
                        hint,
                    )
                )
                return

    # -- components ---------------------------------------------------------------------------
    def warehouse(self) -> None:
        hosts = self.inv.hosts_of("warehouse")
        idx = 0
        for host in hosts:
            for k in range(max(1, _int(host.vars.get("warehouse_members_per_host"), 1))):
                self.make("warehouse", f"pg{idx}", host, k)
                idx += 1
        members = self.per_component["warehouse"]
        if not hosts:
            self.problems.append(
                self.inv.group_origin("warehouse").problem(
                    "warning",
                    "no host in the group warehouse: the warehouse will not be deployed",
                    "add hosts under all.children.warehouse.hosts",
                )
            )
            return
        first = hosts[0]
        skip = {"warehouse_members_per_host", "warehouse_synchronous_mode"} & self.inv.invalid_vars
        if len(members) == 1 and first.vars.get("warehouse_synchronous_mode", True) is True and not skip:
            origin = self.inv.origin(first.name, "warehouse_members_per_host")
            if not self.inv.in_inventory(origin):
                origin = self.inv.group_origin("warehouse")
            self.problems.append(
                origin.problem(
                    "error",
                    "the warehouse has one host with warehouse_members_per_host 1, so it cannot have "
                    "the synchronous standby warehouse_synchronous_mode asks for",
                    "add a second host to the group warehouse, or set warehouse_members_per_host: 2 (one "
                    "machine), or set warehouse_synchronous_mode: false (no failover without data loss)",
                )
            )
        self.spread_warning(
            "warehouse",
            members,
            self.inv.group_origin("warehouse"),
            "put warehouse hosts in different racks/AZs",
        )
        if first.vars.get("warehouse_dcs", "raft") == "raft" and self.needs_witness(members):
            self.witness(hosts, members)

    def needs_witness(self, members: Sequence[Instance]) -> bool:
        """False when the members are an odd number on three or more hosts and no host asks for a
        witness: they form a Raft quorum that survives the loss of any one host by themselves."""
        if any(h.vars.get("warehouse_witness") is True for h in self.inv.hosts.values()):
            return True
        return not (len(members) % 2 == 1 and len({m.host for m in members}) >= 3)

    def witness(self, wh_hosts: Sequence[Host], members: Sequence[Instance]) -> None:
        flagged = [h for h in self.inv.hosts.values() if h.vars.get("warehouse_witness") is True]
        if len(flagged) > 1:
            self.problems.append(
                self.inv.origin(flagged[1].name, "warehouse_witness").problem(
                    "error",
                    f"warehouse_witness is true on {len(flagged)} hosts "
                    f"({', '.join(h.name for h in flagged)}); the Raft witness runs once",
                    "set warehouse_witness: true on one host only (a host var, not a group var)",
                )
            )
        if flagged:
            chosen = flagged[0]
        else:
            member_hosts = {i.host for i in members}
            member_azs = {i.az for i in members if i.az}
            component_groups = ("warehouse", "stream", "lake", "serving", "decision")
            candidates = [
                h
                for h in self.inv.hosts.values()
                if h.name not in member_hosts and any(g in component_groups for g in h.groups)
            ]
            other_az = [h for h in candidates if _label(h, "az") and _label(h, "az") not in member_azs]
            chosen = (other_az or candidates or list(wh_hosts))[0]
        self.make("warehouse-witness", "witness", chosen)

    def stream(self) -> None:
        hosts = self.inv.hosts_of("stream")
        for n, host in enumerate(hosts):
            self.make("stream", f"nats{n}", host)
        if not hosts:
            self.problems.append(
                self.inv.group_origin("stream").problem(
                    "warning",
                    "no host in the group stream: events will not be streamed",
                    "add hosts under all.children.stream.hosts",
                )
            )
        self.spread_warning(
            "stream",
            self.per_component["stream"],
            self.inv.group_origin("stream"),
            "put stream hosts in different racks/AZs",
        )

    def lake(self) -> None:
        for n, host in enumerate(self.inv.hosts_of("lake")):
            self.make("lake", "lake" if n == 0 else f"lake-{n}", host)

    def serving(self) -> None:
        hosts = self.inv.hosts_of("serving")
        ref = hosts[0].name if hosts else None
        pools = hosts[0].vars.get("serving_pools") if hosts else None
        if not isinstance(pools, list):
            pools = []
        if not hosts:
            if any(_int(p.get("replicas"), 0) > 0 for p in pools if isinstance(p, Mapping)):
                self.problems.append(
                    self.inv.group_origin("serving").problem(
                        "warning",
                        "no host in the group serving: no model-serving pool will be deployed",
                        "add hosts under all.children.serving.hosts",
                    )
                )
            return
        load: Counter[str] = Counter()
        seen: set[str] = set()
        device_use: Counter[tuple[str, str]] = Counter()
        for index, pool in enumerate(pools):
            if not isinstance(pool, Mapping):
                continue
            name = str(pool.get("name", f"pool{index}"))
            accel = str(pool.get("accelerator", "cpu"))
            replicas = _int(pool.get("replicas"), 1)
            if name in seen:
                self.problems.append(
                    self.inv.origin(ref, "serving_pools", index, "name").problem(
                        "error", f"serving pool {name!r} is declared twice", "give every pool its own name"
                    )
                )
                continue
            seen.add(name)
            if accel == "cpu":
                eligible = list(hosts)
            else:
                eligible = [h for h in hosts if _accelerator_kinds(h).get(accel, 0) > 0]
            if replicas <= 0:
                continue
            if not eligible:
                have = sorted({k for h in hosts for k in _accelerator_kinds(h)}) or ["none"]
                self.problems.append(
                    self.inv.origin(ref, "serving_pools", index, "accelerator").problem(
                        "error",
                        f"serving pool {name!r} needs {accel} accelerators but no host of the group "
                        f"serving declares any (serving hosts declare: {', '.join(have)})",
                        f"declare accelerators: [{{kind: {accel}, model: ..., count: N}}] on the "
                        f"{accel} hosts and put them in the group serving, or change this pool's "
                        f"accelerator",
                    )
                )
                continue
            placed: list[Instance] = []
            for i in range(replicas):
                host = self.spread_order(eligible, placed, load)
                placed.append(
                    self.make(
                        "serving", f"serving-{name}-{i}", host, load[host.name], pool=name, accelerator=accel
                    )
                )
                load[host.name] += 1
                if accel != "cpu":
                    device_use[(host.name, accel)] += 1
            self.spread_warning(
                f"serving pool {name}",
                placed,
                self.inv.origin(ref, "serving_pools", index, "replicas"),
                f"add {accel} serving hosts in other racks/AZs, or lower replicas",
            )
        for (hname, accel), used in device_use.items():
            devices = _accelerator_kinds(self.inv.hosts[hname]).get(accel, 0)
            if used > devices:
                self.problems.append(
                    self.inv.origin(hname, "accelerators").problem(
                        "warning",
                        f"host {hname} gets {used} {accel} serving replicas but declares {devices} "
                        f"{accel} devices",
                        "lower the pool's replicas or add hosts",
                    )
                )

    def decision(self) -> None:
        hosts = self.inv.hosts_of("decision")
        if not hosts:
            self.problems.append(
                self.inv.group_origin("decision").problem(
                    "warning",
                    "no host in the group decision: the decision service will not be deployed",
                    "add hosts under all.children.decision.hosts",
                )
            )
            return
        replicas = _int(hosts[0].vars.get("decision_replicas"), 1)
        load: Counter[str] = Counter()
        placed: list[Instance] = []
        for i in range(replicas):
            host = self.spread_order(hosts, placed, load)
            placed.append(self.make("decision", f"decision-{i}", host, load[host.name]))
            load[host.name] += 1
        self.spread_warning(
            "decision",
            placed,
            self.inv.origin(hosts[0].name, "decision_replicas"),
            "add decision hosts in other racks/AZs",
        )

    def loadgen(self) -> None:
        for host in self.inv.hosts_of("loadgen"):
            self.make("loadgen", f"loadgen-{host.name}", host)

    def metrics(self) -> None:
        running = {i.host for c, insts in self.per_component.items() if c != "metrics" for i in insts}
        for host in self.inv.hosts.values():
            if host.name in running:
                self.make("metrics", f"metrics-{host.name}", host)

    def check_arch(self) -> None:
        for host in self.inv.hosts.values():
            arch = host.vars.get("arch")
            if arch is not None and arch not in ARCHES:
                self.problems.append(
                    self.inv.origin(host.name, "arch").problem(
                        "error",
                        f"host {host.name}: architecture {arch!r} has no dataplat binaries",
                        "use x86_64 or aarch64",
                    )
                )

    def check_ports(self, instances: Sequence[Instance]) -> None:
        bound: dict[tuple[str, int], tuple[Instance, str]] = {}
        for inst in instances:
            for port_name, port in inst.ports.items():
                key = (inst.address, port)
                var = PORT_VARS[inst.component][port_name]
                if not 1 <= port <= 65535:
                    self.problems.append(
                        self.inv.origin(inst.host, var).problem(
                            "error",
                            f"{inst.name} {port_name} port {port} is outside 1-65535",
                            f"lower {var}; members and replicas count up from it",
                        )
                    )
                    continue
                if key not in bound:
                    bound[key] = (inst, port_name)
                    continue
                other, other_port = bound[key]
                other_var = PORT_VARS[other.component][other_port]
                if {var, other_var} & self.inv.invalid_vars:
                    continue  # a rejected value: already reported by the schema
                here = self.inv.origin(inst.host, var)
                there = self.inv.origin(other.host, other_var)
                # point at the setting the inventory made (a role default is rarely the culprit)
                if not self.inv.in_inventory(here) and self.inv.in_inventory(there):
                    here, there, var, other_var = there, here, other_var, var
                if not self.inv.in_inventory(here):
                    here = self.inv.host_origin(inst.host)
                self.problems.append(
                    here.problem(
                        "error",
                        f"{inst.address}:{port} is bound twice on host {inst.host}: "
                        f"{other.name} {other_port} ({PORT_VARS[other.component][other_port]}) and "
                        f"{inst.name} {port_name} ({PORT_VARS[inst.component][port_name]})",
                        f"give {var} a value no other component uses on {inst.address} ({other_var} is set "
                        f"at {there.file}:{there.line}; members and replicas count up from each base port)",
                    )
                )

    def run(self) -> Plan:
        self.check_arch()
        self.warehouse()
        self.stream()
        self.lake()
        self.serving()
        self.decision()
        self.loadgen()
        self.metrics()
        order = (
            "warehouse",
            "warehouse-witness",
            "stream",
            "lake",
            "metrics",
            "serving",
            "decision",
            "loadgen",
        )
        instances = tuple(i for c in order for i in self.per_component[c])
        self.check_ports(instances)
        return Plan(instances, tuple(dict.fromkeys(self.problems)))


def plan(inventory: Inventory) -> Plan:
    """Place every component instance of ``inventory``; see the module docstring for the rules."""
    return _Planner(inventory).run()
