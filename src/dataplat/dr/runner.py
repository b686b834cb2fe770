"""``run_drill``: repetitions of one scenario, distributions, verdicts, the run folder.

The run folder ``<home>/drills/<ident>/`` holds ``results.json``, ``report.html``,
``drill.log`` and one ``rep-NN/`` folder of raw logs per repetition.
"""

from __future__ import annotations

import importlib
import secrets
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from dataplat.dr.context import DrillContext, DrillError, DrillHooks
from dataplat.dr.results import DrillResult, Repetition, Verdict, distribution
from dataplat.dr.scenario import KINDS, Scenario
from dataplat.errors import DataplatError
from dataplat.platform import endpoints


def kind_module(scenario: Scenario) -> tuple[ModuleType, Callable[[DrillContext], Repetition]]:
    """The module implementing the scenario's kind and its repetition function."""
    kind = KINDS[scenario.kind]
    module_name, _, func = kind.run.partition(":")
    module = importlib.import_module(module_name)
    return module, getattr(module, func)


def new_ident(scenario: Scenario) -> str:
    return f"{scenario.name}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"


def run_repetitions(
    result: DrillResult,
    repeat: int,
    run: Callable[[int, Path], Repetition],
    log: Callable[[str], None],
    expected: tuple[type[BaseException], ...] = (DataplatError, OSError),
    where: str = "",
) -> None:
    """Run repetitions 1..``repeat`` (``run(i, rep_dir)``) into ``result``, logging each one's
    checks and metrics; a repetition that raises is recorded as could-not-run (an ``expected``
    error) or crashed (anything else, with its traceback in ``error.txt``) and ends the run."""
    for i in range(1, repeat + 1):
        rep_dir = result.run_dir / f"rep-{i:02d}"
        rep_dir.mkdir(exist_ok=True)
        log(f"repetition {i}/{repeat} of {result.scenario.name}{where}")
        try:
            rep = run(i, rep_dir)
        except expected as exc:
            rep = Repetition(i, error=f"{type(exc).__name__}: {exc}")
            log(f"repetition {i} could not run: {exc}")
            (rep_dir / "error.txt").write_text(traceback.format_exc())
        except Exception as exc:  # noqa: BLE001 - any crash is "could not run", with its traceback
            rep = Repetition(i, error=f"{type(exc).__name__}: {exc}")
            log(f"repetition {i} crashed: {type(exc).__name__}: {exc}")
            (rep_dir / "error.txt").write_text(traceback.format_exc())
        result.repetitions.append(rep)
        for c in rep.checks:
            log(f"  check {c.name}: {'pass' if c.passed else 'FAIL'} - {c.detail}")
        if rep.metrics:
            log("  " + ", ".join(f"{k}={v}" for k, v in rep.metrics.items()))
        if rep.error:
            break


def run_drill(
    scenario: Scenario,
    home: Path,
    repeat: int = 1,
    inventory: Path | None = None,
    hooks: DrillHooks | None = None,
    progress: Callable[[str], None] | None = None,
) -> DrillResult:
    """Run ``scenario`` ``repeat`` times against the platform under ``home`` and judge it.

    Never raises for a drill that ran: a repetition that could not finish is recorded
    (exit code 2) and stops the run; the report is written in every case.
    """
    if repeat < 1:
        raise DrillError(f"--repeat must be >= 1, got {repeat}")
    platform = endpoints.load_platform(home)
    ident = new_ident(scenario)
    run_dir = home / "drills" / ident
    run_dir.mkdir(parents=True, exist_ok=True)
    result = DrillResult(scenario, ident, run_dir, time.time())
    log_file = (run_dir / "drill.log").open("a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        log_file.write(line + "\n")
        log_file.flush()
        if progress:
            progress(line)

    started = time.monotonic()
    try:
        module, run_one = kind_module(scenario)
        variables_fn = getattr(module, "target_variables", None)
        if variables_fn is not None and any(isinstance(t.bound, str) for t in scenario.targets):
            result.variables = variables_fn(platform)
        run_repetitions(
            result,
            repeat,
            lambda i, rep_dir: run_one(
                DrillContext(scenario, platform, i, rep_dir, inventory, hooks or DrillHooks(), log)
            ),
            log,
        )
        _judge(result)
        summarize = getattr(module, "summarize", None)
        if summarize is not None:
            result.summary = summarize(result)
    except DataplatError as exc:
        result.error = str(exc)
        log(f"drill could not run: {exc}")
    finally:
        result.seconds = time.monotonic() - started
        from dataplat.dr.report import write_report

        write_report(result)
        log(f"outcome: {result.outcome} (exit {result.exit_code}); report {run_dir / 'report.html'}")
        log_file.close()
    return result


def _judge(result: DrillResult) -> None:
    reps = [r for r in result.repetitions if r.error is None]
    metrics = dict.fromkeys(m for r in reps for m in r.metrics)
    for t in result.scenario.targets:
        metrics.setdefault(t.metric, None)
    for metric in metrics:
        result.distributions[metric] = distribution(
            [float(v) for r in reps if (v := r.metrics.get(metric)) is not None]
        )
    for t in result.scenario.targets:
        dist = result.distributions.get(t.metric, {})
        value = dist.get(t.statistic)
        try:
            bound: float | None = t.resolve(result.variables)
        except KeyError as exc:
            result.verdicts.append(
                Verdict(
                    t.label(),
                    t.metric,
                    t.statistic,
                    None,
                    value,
                    False,
                    f"variable {exc} unknown on this platform",
                )
            )
            continue
        met = value is not None and bound is not None and value <= bound + 1e-9
        detail = "not measured" if value is None else f"{t.statistic} {value:g} vs bound {bound:g}"
        result.verdicts.append(Verdict(t.label(), t.metric, t.statistic, bound, value, met, detail))
