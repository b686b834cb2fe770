"""The registry of benchmark suites: one module per suite.

A suite is a module that provides the functions of :class:`SuiteModule`; registering
it is one :func:`register_suite` call (the built-in ones are registered below). A
registered suite whose module cannot be imported is listed as *not available yet*:
``--suite NAME`` then exits 2 and ``--suite all`` skips it. So the real-time decision
suite arrives by adding the module ``dataplat.bench.decisions``; nothing else changes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:  # pragma: no cover - typing only
    from dataplat.bench.context import BenchContext
    from dataplat.bench.slo import Target


class SuiteModule(Protocol):
    """What a suite module provides.

    * ``run(ctx)`` runs the suite and returns its JSON-ready section of ``results.json``
      (raising :class:`~dataplat.bench.context.BenchError` when it cannot run);
    * ``check_metric(metric, target, workload_dir)`` says what is wrong with an SLO
      target's metric (None when it is fine), so SLO files are checked before running;
    * ``measure(section, target)`` gives ``(scope, value)`` pairs the target is judged
      on (one per concurrency step, engine, job...; value None when not measured);
    * ``failures(section)`` lists failed invariant checks (each one misses the run);
    * ``render_html(section)`` is the suite's part of ``report.html``.
    """

    METRICS: str
    """One line naming the metrics targets may use, for error messages."""

    def run(self, ctx: BenchContext) -> dict[str, Any]: ...

    def check_metric(self, metric: str, target: Target, workload_dir: Path) -> str | None: ...

    def measure(self, section: dict[str, Any], target: Target) -> list[tuple[str, float | None]]: ...

    def failures(self, section: dict[str, Any]) -> list[str]: ...

    def render_html(self, section: dict[str, Any]) -> str: ...


@dataclass(frozen=True)
class Suite:
    """A registered suite: its name, the module implementing it and a line of help."""

    name: str
    module: str
    help: str

    def load(self) -> SuiteModule | None:
        """The suite's module, or None when it is not available (not installed yet)."""
        try:
            mod: ModuleType = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == self.module or self.module.startswith(exc.name + ".")):
                return None
            raise
        return cast("SuiteModule", mod)

    @property
    def available(self) -> bool:
        """Whether the suite's module is there."""
        return self.load() is not None


SUITES: dict[str, Suite] = {}
"""Registered suites by name, in registration order (the order ``--suite all`` runs them)."""


def register_suite(suite: Suite) -> Suite:
    """Add (or replace) a suite; returns it."""
    SUITES[suite.name] = suite
    return suite


register_suite(
    Suite("batch", "dataplat.bench.batch", "nightly SQL jobs on the warehouse and the lake, with invariants")
)
register_suite(
    Suite(
        "concurrent",
        "dataplat.bench.concurrent",
        "audience, customer 360 and dashboard queries at concurrency steps, pgbench beside",
    )
)
register_suite(
    Suite(
        "decisions",
        "dataplat.bench.decisions",
        "real-time decisions driven by Locust, the stream path end to end",
    )
)
