"""Scenario files and the registry of drill kinds.

A scenario is a YAML file users can copy and change::

    name: failover-postmaster-kill
    kind: failover
    description: ...
    fault: {type: postmaster-kill}
    workload: {clients: 4, before_s: 3, after_s: 3}
    checks: [rpo, invariant, fencing, rejoin]
    targets:
      rto_s: {median: 5}
      rpo_commits: {max: 0}
    timeouts: {failover_s: 60, rejoin_s: 120}

``target: k8s`` (with a ``k8s:`` section: context, namespace, warehouse_conninfo ...)
runs the drill against a Kubernetes cluster (:mod:`dataplat.dr.cluster`); the local
platform is the default.

Each kind (:class:`DrillKind`) declares the faults, settings, checks and target
metrics it understands and the function that runs one repetition; other packages
add kinds with :func:`register_kind` (e.g. a ``scaling`` drill). Every problem of a
file is reported at once, each with file, line and field
(:class:`ScenarioError`, exit code 2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from dataplat.config import PROJECT_ROOT
from dataplat.errors import ConfigError
from dataplat.yamldoc import Problem, line_of, load_mapping, plain

SCENARIO_DIR = PROJECT_ROOT / "dr"
"""Where the shipped scenario files live (``dataplat drill list`` lists them)."""

TARGETS = ("local", "k8s")
"""Where a drill runs: the local platform (default) or a Kubernetes cluster."""

K8S_SETTINGS: dict[str, Setting] = {}
"""Settings of a scenario's ``k8s:`` section (filled in below, after :class:`Setting`)."""

STATISTICS = ("min", "median", "p95", "max")
"""Statistics a target may bound (every bound is an upper bound: value <= target)."""

_TARGET_EXPR = re.compile(r"^\s*(?P<var>[a-z_]+)\s*(?:(?P<op>[+-])\s*(?P<num>\d+(?:\.\d+)?))?\s*$")


class ScenarioError(ConfigError):
    """A scenario file is unreadable or invalid; ``problems`` lists every problem found."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        self.problems = list(problems or [])
        detail = "".join(f"\n  {p}" for p in self.problems)
        super().__init__(message + detail)


@dataclass(frozen=True)
class Setting:
    """A setting a kind accepts under ``fault`` or ``workload``: its type and default."""

    type: type | tuple[type, ...]
    default: Any = None
    choices: tuple[Any, ...] = ()
    required: bool = False
    help: str = ""


@dataclass(frozen=True)
class DrillKind:
    """What a kind of drill understands and how it runs one repetition.

    ``run`` is ``"module:function"`` (imported when the drill runs, so listing
    scenarios stays cheap); the function takes a :class:`dataplat.dr.runner.DrillContext`
    and returns a :class:`dataplat.dr.results.Repetition`.
    """

    name: str
    run: str
    faults: tuple[str, ...]
    fault_settings: Mapping[str, Setting] = field(default_factory=dict)
    workload_settings: Mapping[str, Setting] = field(default_factory=dict)
    checks: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    timeouts: Mapping[str, float] = field(default_factory=dict)
    target_variables: tuple[str, ...] = ()
    """Names a target may be written in terms of (e.g. ``ttl + 5``), resolved at run time."""
    help: str = ""


K8S_SETTINGS.update(
    {
        "context": Setting(str, "", help="kubeconfig context (default: the current one)"),
        "kubeconfig": Setting(str, "", help="kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"),
        "namespace": Setting(
            str, "", help="namespace of the platform (default: DATAPLAT_NAMESPACE, else dataplat)"
        ),
        "warehouse_conninfo": Setting(
            str,
            "",
            help="libpq conninfo reaching the CloudNativePG -rw Service; no password in it "
            "(a passfile or PGPASSWORD)",
        ),
        "cluster_name": Setting(str, "warehouse", help="the CloudNativePG Cluster"),
        "statefulset": Setting(str, "stream", help="the NATS StatefulSet"),
        "deployment": Setting(
            str,
            "",
            help="serving-worker: the pool's Deployment (default: the first serving-*); "
            "scaling: the Deployment to scale (default: decision)",
        ),
        "replicas": Setting(int, 0, help="scaling: replicas to scale to (default: current + 1)"),
        "grace_period_s": Setting(int, 0, help="pod deletion grace period (0: killed, as in a crash)"),
    }
)

KINDS: dict[str, DrillKind] = {}
"""The registry of drill kinds, by name."""


def register_kind(kind: DrillKind) -> DrillKind:
    """Add (or replace) a kind of drill; returns it."""
    KINDS[kind.name] = kind
    return kind


@dataclass(frozen=True)
class Target:
    """An upper bound on one statistic of one metric across repetitions."""

    metric: str
    statistic: str
    bound: float | str
    """A number, or an expression such as ``ttl + 5`` resolved when the drill runs."""

    def resolve(self, variables: Mapping[str, float]) -> float:
        """The numeric bound, with ``variables`` substituted."""
        if isinstance(self.bound, int | float):
            return float(self.bound)
        m = _TARGET_EXPR.match(self.bound)
        assert m is not None  # validated when loaded
        base = float(variables[m["var"]])
        num = float(m["num"] or 0)
        return base + num if m["op"] != "-" else base - num

    def label(self) -> str:
        return f"{self.statistic}({self.metric}) <= {self.bound}"


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file."""

    name: str
    kind: str
    path: Path
    description: str
    fault: dict[str, Any]
    workload: dict[str, Any]
    checks: tuple[str, ...]
    targets: tuple[Target, ...]
    timeouts: dict[str, float]
    target: str | None = None
    """``local`` or ``k8s`` as the file states it; None when it does not (the command decides)."""
    k8s: dict[str, Any] = field(default_factory=lambda: {k: s.default for k, s in K8S_SETTINGS.items()})
    """The ``k8s:`` section, defaults filled in."""

    @property
    def fault_type(self) -> str:
        return str(self.fault["type"])

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "path": str(self.path),
            "description": self.description,
            "fault": self.fault,
            "workload": self.workload,
            "checks": list(self.checks),
            "targets": [
                {"metric": t.metric, "statistic": t.statistic, "bound": t.bound} for t in self.targets
            ],
            "timeouts": self.timeouts,
        }
        if self.target is not None:
            d["target"] = self.target
        return d


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


def _is(value: Any, t: type | tuple[type, ...]) -> bool:
    types = t if isinstance(t, tuple) else (t,)
    if isinstance(value, bool) and bool not in types:
        return False
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, types)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`ScenarioError` lists every problem."""
    path = Path(path)
    fname = str(path)
    doc = load_mapping(path, "scenario", ScenarioError, "name, kind, fault, checks, targets")
    problems: list[Problem] = []

    def bad(node: Any, key: Any, fieldname: str, message: str) -> None:
        problems.append(Problem(fname, line_of(node, key), fieldname, message))

    known = {"name", "kind", "description", "fault", "workload", "checks", "targets", "timeouts"}
    known |= {"target", "k8s"}
    for key in doc:
        if key not in known:
            bad(doc, key, str(key), f"unknown field (known: {', '.join(sorted(known))})")
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        bad(doc, "name", "name", "must be a word of letters, digits, '-', '_' or '.'")
    kind_name = doc.get("kind")
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        if "kind" not in doc:
            bad(doc, None, "kind", f"is required (one of: {', '.join(sorted(KINDS))})")
        else:
            bad(doc, "kind", "kind", f"unknown kind {kind_name!r} (one of: {', '.join(sorted(KINDS))})")
        raise ScenarioError(f"scenario {fname} is invalid", problems)
    description = doc.get("description", "")
    if not isinstance(description, str):
        bad(doc, "description", "description", "must be text")

    fault = _settings(doc, "fault", kind.fault_settings, bad, fname)
    ftype = doc.get("fault", {}).get("type") if isinstance(doc.get("fault"), CommentedMap) else None
    if ftype is None:
        bad(
            doc.get("fault", doc),
            None if "fault" not in doc else "type",
            "fault.type",
            f"is required (one of: {', '.join(kind.faults)})",
        )
    elif ftype not in kind.faults:
        bad(
            doc["fault"],
            "type",
            "fault.type",
            f"unknown fault {ftype!r} for kind {kind.name} (one of: {', '.join(kind.faults)})",
        )
    else:
        fault["type"] = ftype
    workload = _settings(doc, "workload", kind.workload_settings, bad, fname)
    target = doc.get("target")
    if target is not None and target not in TARGETS:
        bad(doc, "target", "target", f"must be one of {', '.join(TARGETS)}, got {plain(target)!r}")
    k8s = _settings(doc, "k8s", K8S_SETTINGS, bad, fname)
    if "password=" in str(k8s.get("warehouse_conninfo", "")).replace(" ", "").lower():
        bad(
            doc["k8s"],
            "warehouse_conninfo",
            "k8s.warehouse_conninfo",
            "must not hold a password: use a passfile (passfile=... or ~/.pgpass) or PGPASSWORD",
        )

    checks_node = doc.get("checks", CommentedSeq(kind.checks))
    checks: list[str] = []
    if not isinstance(checks_node, list):
        bad(doc, "checks", "checks", f"must be a list of checks (known: {', '.join(kind.checks)})")
    else:
        for i, c in enumerate(checks_node):
            if c not in kind.checks:
                bad(checks_node, i, f"checks[{i}]", f"unknown check {c!r} (known: {', '.join(kind.checks)})")
            else:
                checks.append(c)

    targets: list[Target] = []
    tnode = doc.get("targets", CommentedMap())
    if not isinstance(tnode, CommentedMap):
        bad(doc, "targets", "targets", "must map a metric to {statistic: bound}")
    else:
        for metric, spec in tnode.items():
            if metric not in kind.metrics:
                bad(
                    tnode,
                    metric,
                    f"targets.{metric}",
                    f"unknown metric (known for {kind.name}: {', '.join(kind.metrics)})",
                )
                continue
            if not isinstance(spec, CommentedMap) or not spec:
                bad(
                    tnode,
                    metric,
                    f"targets.{metric}",
                    f"must map a statistic ({', '.join(STATISTICS)}) to an upper bound, e.g. {{median: 5}}",
                )
                continue
            for stat, bound in spec.items():
                fieldname = f"targets.{metric}.{stat}"
                if stat not in STATISTICS:
                    bad(spec, stat, fieldname, f"unknown statistic (one of: {', '.join(STATISTICS)})")
                elif _is(bound, float):
                    if bound < 0:
                        bad(spec, stat, fieldname, "must be >= 0")
                    else:
                        targets.append(Target(str(metric), str(stat), float(bound)))
                elif (
                    isinstance(bound, str)
                    and (m := _TARGET_EXPR.match(bound))
                    and (m["var"] in kind.target_variables)
                ):
                    targets.append(Target(str(metric), str(stat), bound.strip()))
                else:
                    known_vars = ", ".join(kind.target_variables) or "none for this kind"
                    bad(
                        spec,
                        stat,
                        fieldname,
                        f"must be a number >= 0 or 'VARIABLE + N' (variables: {known_vars}), got {bound!r}",
                    )

    timeouts = dict(kind.timeouts)
    tonode = doc.get("timeouts", CommentedMap())
    if not isinstance(tonode, CommentedMap):
        bad(doc, "timeouts", "timeouts", "must map a timeout name to seconds")
    else:
        for key, value in tonode.items():
            if key not in kind.timeouts:
                bad(tonode, key, f"timeouts.{key}", f"unknown timeout (known: {', '.join(kind.timeouts)})")
            elif not _is(value, float) or value <= 0:
                bad(tonode, key, f"timeouts.{key}", f"must be a number of seconds > 0, got {value!r}")
            else:
                timeouts[str(key)] = float(value)
    if problems:
        raise ScenarioError(f"scenario {fname} is invalid ({len(problems)} problem(s))", problems)
    return Scenario(
        name=str(name),
        kind=kind.name,
        path=path,
        description=str(description).strip(),
        fault=fault,
        workload=workload,
        checks=tuple(checks),
        targets=tuple(targets),
        timeouts=timeouts,
        target=str(target) if target in TARGETS else None,
        k8s=k8s,
    )


def _settings(
    doc: CommentedMap,
    section: str,
    spec: Mapping[str, Setting],
    bad: Callable[[Any, Any, str, str], None],
    fname: str,
    label: str | None = None,
) -> dict[str, Any]:
    label = f"{section}." if label is None else label
    out = {k: s.default for k, s in spec.items()}
    node = doc.get(section, CommentedMap())
    if not isinstance(node, CommentedMap):
        bad(doc, section, section, "must be a mapping")
        return out
    allowed = set(spec) | ({"type"} if section == "fault" else set())
    for key, value in node.items():
        fieldname = f"{label}{key}"
        if key not in allowed:
            bad(node, key, fieldname, f"unknown setting (known: {', '.join(sorted(allowed))})")
            continue
        if key == "type":
            continue
        s = spec[key]
        value = plain(value)
        if not _is(value, s.type):
            bad(node, key, fieldname, f"must be {_type_name(s.type)}, got {value!r}")
        elif s.choices and value not in s.choices:
            bad(node, key, fieldname, f"must be one of {', '.join(map(str, s.choices))}, got {value!r}")
        elif _is(value, float) and not isinstance(value, str) and value < 0:
            bad(node, key, fieldname, "must be >= 0")
        else:
            out[str(key)] = value
    for key, s in spec.items():
        if s.required and key not in node:
            bad(
                node if len(node) else doc, None if not len(node) else None, f"{label}{key}", "is required"
            )
    return out


def load_profile(path: str | Path, kind_name: str) -> dict[str, Any]:
    """A profile file (``drill run --profile FILE``): workload settings of the kind, replacing the
    scenario's. Every problem is reported at once with file, line and field (:class:`ScenarioError`)."""
    path = Path(path)
    fname = str(path)
    kind = KINDS[kind_name]
    doc = load_mapping(path, "profile", ScenarioError, f"workload settings of a {kind_name} drill")
    problems: list[Problem] = []

    def bad(node: Any, key: Any, fieldname: str, message: str) -> None:
        problems.append(Problem(fname, line_of(node, key), fieldname, message))

    wrapper = CommentedMap()
    wrapper["workload"] = doc
    values = _settings(wrapper, "workload", kind.workload_settings, bad, fname, label="")
    if problems:
        raise ScenarioError(f"profile {fname} is invalid ({len(problems)} problem(s))", problems)
    return {str(k): values[str(k)] for k in doc}


def with_profile(scenario: Scenario, path: str | Path) -> Scenario:
    """``scenario`` with the workload settings of the profile file at ``path`` in place of its own."""
    from dataclasses import replace

    return replace(scenario, workload={**scenario.workload, **load_profile(path, scenario.kind)})


def scenario_paths(directory: Path = SCENARIO_DIR) -> list[Path]:
    """The scenario files shipped in ``directory`` (sorted by name)."""
    return sorted(p for p in directory.glob("*.yml") if p.is_file())


def find_scenario(name_or_path: str, directory: Path = SCENARIO_DIR) -> Path:
    """A scenario by name (``dr/NAME.yml``) or by path to a file; ConfigError when there is none."""
    as_path = Path(name_or_path)
    if as_path.suffix in (".yml", ".yaml") or "/" in name_or_path:
        if as_path.is_file():
            return as_path
        raise ScenarioError(f"scenario file {name_or_path} does not exist")
    candidate = directory / f"{name_or_path}.yml"
    if candidate.is_file():
        return candidate
    names = ", ".join(p.stem for p in scenario_paths(directory)) or "none"
    raise ScenarioError(f"no scenario named {name_or_path!r} in {directory} (available: {names})")


def _builtin_kinds() -> None:
    from dataplat.dr import kinds  # noqa: F401 - registers the built-in kinds on import


_builtin_kinds()
