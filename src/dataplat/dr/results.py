"""What a drill measured: checks, repetitions, distributions and verdicts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dataplat.dr.scenario import Scenario


@dataclass
class Check:
    """One pass/fail check of one repetition, with what it saw."""

    name: str
    passed: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Event:
    """A point on the timeline (wall-clock seconds)."""

    t: float
    label: str


@dataclass
class Repetition:
    """One run of a drill: measured metrics, checks, timeline, raw details."""

    index: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)
    """Named lists of timestamps (e.g. commit acknowledgements per server) for the plot."""
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Set when the repetition could not run to its end."""
    t_fault: float | None = None

    def event(self, label: str, t: float) -> None:
        self.events.append(Event(t, label))

    def check(self, name: str, passed: bool, detail: str, **data: Any) -> Check:
        c = Check(name, bool(passed), detail, data)
        self.checks.append(c)
        return c

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        d.pop("series")
        d["series_counts"] = {k: len(v) for k, v in self.series.items()}
        return d


def distribution(values: list[float]) -> dict[str, float | int | None]:
    """n, min, median, p95 (nearest rank) and max of ``values`` (None when empty)."""
    xs = sorted(v for v in values if v is not None and not math.isnan(v))
    if not xs:
        return {"n": 0, "min": None, "median": None, "p95": None, "max": None}
    n = len(xs)
    mid = n // 2
    median = xs[mid] if n % 2 else (xs[mid - 1] + xs[mid]) / 2
    p95 = xs[max(0, math.ceil(0.95 * n) - 1)]
    return {"n": n, "min": xs[0], "median": median, "p95": p95, "max": xs[-1]}


@dataclass
class Verdict:
    """One target judged against the distribution of its metric."""

    target: str
    metric: str
    statistic: str
    bound: float | None
    value: float | None
    met: bool
    detail: str = ""


@dataclass
class DrillResult:
    """A finished ``drill run``: repetitions, distributions, verdicts and the exit code."""

    scenario: Scenario
    ident: str
    run_dir: Path
    started_at: float
    seconds: float = 0.0
    repetitions: list[Repetition] = field(default_factory=list)
    distributions: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    variables: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    target: dict[str, Any] = field(default_factory=dict)
    """Where the drill ran when not on the local platform: ``{"target": "k8s", "context": ...,
    "namespace": ..., "measured": ...}`` (empty for the local platform)."""

    @property
    def checks_passed(self) -> bool:
        return all(r.passed for r in self.repetitions)

    @property
    def exit_code(self) -> int:
        """0 every target met and every check passed, 1 something missed, 2 could not run."""
        if self.error or not self.repetitions or any(r.error for r in self.repetitions):
            return 2
        if not self.checks_passed or not all(v.met for v in self.verdicts):
            return 1
        return 0

    @property
    def outcome(self) -> str:
        return {0: "met", 1: "missed", 2: "could not run"}[self.exit_code]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ident": self.ident,
            "scenario": self.scenario.to_dict(),
            "run_dir": str(self.run_dir),
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "error": self.error,
            "variables": self.variables,
            "distributions": self.distributions,
            "verdicts": [asdict(v) for v in self.verdicts],
            "checks": {
                name: {
                    "passed": sum(
                        1 for r in self.repetitions for c in r.checks if c.name == name and c.passed
                    ),
                    "failed": sum(
                        1 for r in self.repetitions for c in r.checks if c.name == name and not c.passed
                    ),
                }
                for name in dict.fromkeys(c.name for r in self.repetitions for c in r.checks)
            },
            "summary": self.summary,
            "repetitions": [r.to_dict() for r in self.repetitions],
            **({"target": self.target} if self.target else {}),
        }
