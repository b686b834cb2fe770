"""SLO files: the targets a benchmark run is judged against, and the verdicts.

An SLO file is YAML with a list of targets, one sentence each::

    name: default
    description: what the bank expects of the platform
    targets:
      - concurrent.p99_ms <= 50 at concurrency 16
      - concurrent.qps_ratio_vs_pgbench >= 0.8
      - concurrent.customer_360.p95_ms <= 20
      - batch.aum_snapshot.seconds <= 60 on warehouse
      - batch.*.seconds <= 600

Grammar: ``SUITE.METRIC OP NUMBER [at concurrency N] [on ENGINE]`` with OP one of
``<= < >= > ==``. Without ``at concurrency`` a concurrent target holds at every step;
without ``on`` a batch target holds on every engine; ``*`` stands for every job. Every
problem of a file is reported at once, each with file, line and field
(:class:`SloError`, exit code 2).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedSeq

from dataplat.bench.context import BENCH_DIR
from dataplat.errors import ConfigError
from dataplat.yamldoc import Problem, line_of, load_mapping

SLO_DIR = BENCH_DIR / "slo"
DEFAULT_SLO = SLO_DIR / "default.yml"

OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}

_TARGET = re.compile(
    r"^\s*(?P<suite>[a-z_]+)\.(?P<metric>[A-Za-z0-9_*.]+)\s*(?P<op><=|>=|==|<|>)\s*"
    r"(?P<bound>-?\d+(?:\.\d+)?)"
    r"(?:\s+at\s+concurrency\s+(?P<conc>\d+))?"
    r"(?:\s+on\s+(?P<engine>[a-z_]+))?\s*$"
)


class SloError(ConfigError):
    """An SLO file is unreadable or invalid; ``problems`` lists every problem found."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        self.problems = list(problems or [])
        super().__init__(message + "".join(f"\n  {p}" for p in self.problems))


@dataclass(frozen=True)
class Target:
    """One target: ``suite.metric op bound``, optionally at one concurrency or on one engine."""

    text: str
    suite: str
    metric: str
    op: str
    bound: float
    concurrency: int | None = None
    engine: str | None = None
    line: int | None = None

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the target."""
        return OPS[self.op](value, self.bound)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Slo:
    """A validated SLO file."""

    name: str
    path: Path | None
    description: str
    targets: tuple[Target, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "description": self.description,
            "targets": [t.to_dict() for t in self.targets],
        }


@dataclass
class Verdict:
    """A target judged at one scope (a step, an engine, a job): met, missed, or not measured."""

    target: str
    suite: str
    metric: str
    scope: str
    op: str
    bound: float
    value: float | None
    met: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def parse_target(text: str, line: int | None = None) -> Target:
    """One target sentence; :class:`ValueError` saying what is wrong."""
    m = _TARGET.match(text)
    if not m:
        raise ValueError(
            "must read 'SUITE.METRIC OP NUMBER [at concurrency N] [on ENGINE]' "
            "(e.g. 'concurrent.p99_ms <= 50 at concurrency 16')"
        )
    return Target(
        text=" ".join(text.split()),
        suite=m["suite"],
        metric=m["metric"],
        op=m["op"],
        bound=float(m["bound"]),
        concurrency=int(m["conc"]) if m["conc"] else None,
        engine=m["engine"],
        line=line,
    )


def load_slo(path: str | Path, workload_dir: Path = BENCH_DIR) -> Slo:
    """Read and validate an SLO file; :class:`SloError` lists every problem (file, line, field)."""
    from dataplat.bench.suites import SUITES

    path = Path(path)
    fname = str(path)
    doc = load_mapping(path, "SLO file", SloError, "name, description and targets")
    problems: list[Problem] = []

    def bad(node: Any, key: Any, fieldname: str, message: str) -> None:
        problems.append(Problem(fname, line_of(node, key), fieldname, message))

    known = {"name", "description", "targets"}
    for key in doc:
        if key not in known:
            bad(doc, key, str(key), f"unknown field (known: {', '.join(sorted(known))})")
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        bad(doc, "name", "name", "must be text")
    description = doc.get("description", "")
    if not isinstance(description, str):
        bad(doc, "description", "description", "must be text")
    targets: list[Target] = []
    tnode = doc.get("targets")
    if tnode is None:
        bad(doc, None, "targets", "is required: a list of targets such as 'concurrent.p99_ms <= 50'")
    elif not isinstance(tnode, CommentedSeq):
        bad(doc, "targets", "targets", "must be a list of targets such as 'concurrent.p99_ms <= 50'")
    else:
        for i, item in enumerate(tnode):
            fieldname = f"targets[{i}]"
            line = line_of(tnode, i)
            if not isinstance(item, str):
                bad(tnode, i, fieldname, f"must be a sentence like 'concurrent.p99_ms <= 50', got {item!r}")
                continue
            try:
                target = parse_target(item, line)
            except ValueError as exc:
                bad(tnode, i, fieldname, f"{exc}; got {item!r}")
                continue
            suite = SUITES.get(target.suite)
            if suite is None:
                bad(tnode, i, fieldname, f"unknown suite {target.suite!r} (known: {', '.join(SUITES)})")
                continue
            module = suite.load()
            if module is not None:
                message = module.check_metric(target.metric, target, workload_dir)
                if message:
                    bad(tnode, i, fieldname, f"{message}; got {item!r}")
                    continue
            targets.append(target)
    if problems:
        raise SloError(f"SLO file {fname} is invalid ({len(problems)} problem(s))", problems)
    return Slo(str(name), path, str(description).strip(), tuple(targets))


def judge(target: Target, measured: list[tuple[str, float | None]]) -> list[Verdict]:
    """One verdict per measured scope; a scope without a value (or no scope at all) is missed."""

    def verdict(scope: str, value: float | None, met: bool, detail: str) -> Verdict:
        return Verdict(
            target.text, target.suite, target.metric, scope, target.op, target.bound, value, met, detail
        )

    if not measured:
        return [verdict("(none)", None, False, "not measured in this run")]
    out = []
    for scope, value in measured:
        if value is None:
            out.append(verdict(scope, None, False, "not measured"))
            continue
        met = target.holds(value)
        detail = f"{value:.4g} {target.op} {target.bound:g}"
        out.append(
            verdict(
                scope,
                value,
                met,
                detail if met else f"{value:.4g} does not satisfy {target.op} {target.bound:g}",
            )
        )
    return out
