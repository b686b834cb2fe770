"""``run_bench``: run suites, judge them against an SLO, write the run folder.

The run folder ``<home>/bench/<YYYYmmddTHHMMSS>-<suite>/`` holds ``results.json``
(:mod:`dataplat.bench.results`), ``report.html``, ``bench.log`` and ``raw/``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform as pyplatform
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplat import __version__
from dataplat.bench.context import BenchContext, BenchError, BenchSettings
from dataplat.bench.results import REPORT_FILE, RESULTS_FILE, SCHEMA, runs_dir
from dataplat.bench.slo import Slo, Verdict, judge
from dataplat.bench.suites import SUITES
from dataplat.errors import DataplatError
from dataplat.platform import endpoints


@dataclass
class BenchResult:
    """A finished run: each suite's section, the verdicts, failures and the exit code."""

    ident: str
    suite: str
    run_dir: Path
    started_at: str
    settings: BenchSettings
    slo: Slo | None
    seconds: float = 0.0
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    loads: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 every target met and invariant held, 1 something missed, 2 a suite could not run."""
        explicit = self.suite != "all"
        for section in self.suites.values():
            if section["status"] == "error" or (section["status"] == "unavailable" and explicit):
                return 2
        if not any(s["status"] == "ok" for s in self.suites.values()):
            return 2
        if self.failures or not all(v.met for v in self.verdicts):
            return 1
        return 0

    @property
    def outcome(self) -> str:
        """met | missed | could not run."""
        return {0: "met", 1: "missed", 2: "could not run"}[self.exit_code]

    def to_dict(self) -> dict[str, Any]:
        """The ``results.json`` document (schema ``dataplat.bench/v1``)."""
        return {
            "schema": SCHEMA,
            "ident": self.ident,
            "suite": self.suite,
            "run_dir": str(self.run_dir),
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "host": {
                "hostname": socket.gethostname(),
                "cpus": os.cpu_count(),
                "python": pyplatform.python_version(),
                "dataplat": __version__,
            },
            "settings": self.settings.to_dict(),
            "loads": self.loads,
            "slo": self.slo.to_dict() if self.slo else None,
            "suites": self.suites,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "failures": self.failures,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
        }


def suite_names(suite: str) -> list[str]:
    """The suites ``--suite`` means (``all``: every registered one)."""
    if suite == "all":
        return list(SUITES)
    if suite not in SUITES:
        raise BenchError(f"unknown suite {suite!r} (known: {', '.join(SUITES)}, all)")
    return [suite]


def new_run_dir(home: Path, suite: str) -> tuple[str, Path]:
    """A fresh ``<home>/bench/<timestamp>-<suite>/`` (``<timestamp>.N-<suite>`` when the second is taken)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    base = runs_dir(home)
    base.mkdir(parents=True, exist_ok=True)
    for i in range(100):
        ident = f"{stamp}{f'.{i}' if i else ''}-{suite}"
        try:
            (base / ident).mkdir()
            return ident, base / ident
        except FileExistsError:
            continue
    raise BenchError(f"cannot make a run folder under {base}")


def judge_all(result: BenchResult) -> None:
    """Verdicts of every SLO target whose suite ran, and the invariant failures."""
    result.verdicts.clear()
    result.failures.clear()
    for name, section in result.suites.items():
        if section["status"] != "ok":
            continue
        module = SUITES[name].load()
        assert module is not None
        result.failures += module.failures(section)
        if result.slo is not None:
            for target in result.slo.targets:
                if target.suite == name:
                    result.verdicts += judge(target, module.measure(section, target))


def run_bench(
    suite: str,
    home: Path,
    settings: BenchSettings | None = None,
    slo: Slo | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run ``suite`` (or ``all``) against the platform under ``home``, judge, write the run folder.

    Never raises for a suite that failed: it is recorded (status ``error``, exit code 2)
    and the report is written in every case. Raises :class:`BenchError` only when there
    is no platform or the suite is unknown.
    """
    from dataplat.bench.report import render_run

    settings = settings or BenchSettings()
    names = suite_names(suite)
    endpoints.load_platform(home)  # NotDeployedError before anything is written
    ident, run_dir = new_run_dir(home, suite)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    result = BenchResult(ident, suite, run_dir, started, settings, slo)
    log_file = (run_dir / "bench.log").open("a")

    def log(line: str) -> None:
        log_file.write(line + "\n")
        log_file.flush()
        if progress:
            progress(line)

    ctx = BenchContext(home, settings, run_dir / "raw", log)
    t0 = time.perf_counter()
    try:
        for name in names:
            module = SUITES[name].load()
            if module is None:
                result.suites[name] = {"status": "unavailable", "error": f"suite {name} is not available yet"}
                ctx.log(f"{name}: not available yet")
                continue
            start = time.perf_counter()
            ctx.log(f"{name}: starting")
            try:
                section = module.run(ctx)
                result.suites[name] = {"status": "ok", "error": None, **section}
            except (DataplatError, OSError, Exception) as exc:  # noqa: BLE001 - recorded, exit 2
                log_file.write(traceback.format_exc())
                result.suites[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}".strip()}
                ctx.log(f"{name}: could not run: {exc}")
            result.suites[name]["seconds"] = round(time.perf_counter() - start, 3)
    finally:
        result.seconds = time.perf_counter() - t0
        result.loads = list(ctx.loads)
        judge_all(result)
        (run_dir / RESULTS_FILE).write_text(json.dumps(result.to_dict(), indent=2, default=str))
        (run_dir / REPORT_FILE).write_text(render_run(result.to_dict()))
        log_file.close()
    return result
