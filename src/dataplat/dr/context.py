"""What a repetition of a drill gets to work with, and the polling helper drills share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dataplat.dr.scenario import Scenario
from dataplat.errors import DataplatError
from dataplat.platform.endpoints import Platform

T = TypeVar("T")


class DrillError(DataplatError):
    """The drill could not run (platform unhealthy, missing backup, a timeout before the fault)."""

    exit_code = 2


@dataclass
class DrillHooks:
    """Test seams: ``before_checks(ctx, state)`` runs after recovery, before the checks.

    Tests use it to break the data on purpose and see a check fail; ``state`` is the
    drill's own record (e.g. the ledger's acknowledged commits).
    """

    before_checks: Callable[[DrillContext, dict[str, Any]], None] | None = None


@dataclass
class DrillContext:
    """One repetition: the scenario, the platform, its own folder for raw logs."""

    scenario: Scenario
    platform: Platform
    index: int
    rep_dir: Path
    inventory: Path | None = None
    hooks: DrillHooks = field(default_factory=DrillHooks)
    log: Callable[[str], None] = lambda _msg: None

    @property
    def home(self) -> Path:
        return self.platform.home

    def timeout(self, name: str) -> float:
        return float(self.scenario.timeouts[name])

    def before_checks(self, state: dict[str, Any]) -> None:
        if self.hooks.before_checks is not None:
            self.hooks.before_checks(self, state)


def poll(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
    max_interval: float = 0.5,
) -> T:
    """Call ``predicate`` with backoff until it returns a truthy value; DrillError after ``timeout``.

    Exceptions inside ``predicate`` count as "not yet" (the last one is reported).
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the condition may throw until it holds
            last = exc
        if time.monotonic() >= deadline:
            raise DrillError(
                f"timed out after {timeout:.0f} s waiting for {what}"
                + (f" (last error: {type(last).__name__}: {last})" if last else "")
            )
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)
