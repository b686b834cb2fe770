"""Run a Locust step load headless in subprocesses and read its CSVs back, step by step.

Generic: any locustfile whose :class:`~locust.LoadTestShape` reads ``DATAPLAT_STEPS``
(users per step, comma separated) and ``DATAPLAT_STEP_S`` (seconds per step) from the
environment, as ``bench/locust/decisions.py`` does. The command is Locust's own::

    locust -f FILE --headless --processes N --host URL --csv PREFIX --csv-full-history \\
        --only-summary --run-time T --stop-timeout 5 --loglevel WARNING

with ``--run-time`` the shape's length plus a margin and a hard timeout beyond it (the
process group is killed then). ``PREFIX_stats_history.csv`` has, every second, the
cumulative request and failure counts of each request name and the aggregate, and the
percentiles over the last ``step_s`` seconds (the locustfile sets Locust's window); each
step is the rows between its start and end, counted from the first row with users:

* ``requests``, ``failures``: the difference of the cumulative counts over the step;
* ``rps``: requests over the seconds between the step's first and last rows;
* ``error_rate``: failures / requests;
* ``p50_ms`` ... ``p99_ms``, ``p999_ms``, ``max_ms``: the aggregate's percentiles in the
  step's last row (Locust keeps milliseconds as integers below 100 ms, so a percentile is
  a whole number of milliseconds);
* ``by_name``: requests and failures per request name.

The CSVs and Locust's output stay in ``out_dir``.

Distributed: with :attr:`LocustRun.workers` (see :func:`loadgen_workers`, which reads the
inventory's ``loadgen`` hosts) the run is a Locust master on this machine (the first
loadgen host) and, on every loadgen host, ``locust --worker --processes N`` (one process
per core of that host), started the way Ansible reaches the host: directly where its
``ansible_connection`` is ``local``, over ``ssh`` otherwise. The master waits for every
worker process (``--expect-workers``), runs the shape, aggregates the workers' stats and
writes the same CSVs; the workers exit with it.
"""

from __future__ import annotations

import csv
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataplat.bench.context import BenchError

AGGREGATED = "Aggregated"
PERCENTILE_COLUMNS = {
    "p50_ms": "50%",
    "p66_ms": "66%",
    "p75_ms": "75%",
    "p90_ms": "90%",
    "p95_ms": "95%",
    "p99_ms": "99%",
    "p999_ms": "99.9%",
    "max_ms": "100%",
}
LOCUST_MARGIN_S = 5.0
"""Seconds of ``--run-time`` beyond the shape's length (the shape stops the run itself)."""
HARD_TIMEOUT_MARGIN_S = 30.0
"""Seconds beyond ``--run-time`` after which the process group is killed."""


def locust_executable() -> str:
    """The ``locust`` script next to this interpreter, else the one on PATH."""
    here = Path(sys.executable).parent / "locust"
    if here.exists():
        return str(here)
    found = shutil.which("locust")
    if not found:
        raise BenchError("locust is not installed (pip install 'locust>=2.30,<3')")
    return found


@dataclass(frozen=True)
class LoadgenHost:
    """A host that runs Locust worker processes for a distributed run."""

    name: str
    address: str
    processes: int
    connection: str = "local"
    """``local``: a subprocess here; anything else: ``ssh [user@]address locust ...``."""
    user: str | None = None
    port: int | None = None
    locust: str | None = None
    """The locust executable on that host (default: ours for local, ``locust`` on PATH over ssh)."""

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run on this host (wrapped in ssh unless the connection is local)."""
        if self.connection == "local":
            return list(argv)
        target = f"{self.user}@{self.address}" if self.user else self.address
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new"]
        if self.port:
            ssh += ["-p", str(self.port)]
        return [*ssh, target, " ".join(shlex.quote(a) for a in argv)]


def loadgen_workers(inventory: Any, processes: int | None = None) -> list[LoadgenHost]:
    """The inventory's ``loadgen`` hosts as :class:`LoadgenHost` records, in inventory order.

    ``processes`` per host: the argument, else the host's ``cores`` claim, else (local hosts)
    this machine's CPU count. ``inventory`` is a :class:`dataplat.inventory.model.Inventory`.
    """
    out: list[LoadgenHost] = []
    for host in inventory.hosts_of("loadgen"):
        v = host.vars
        connection = str(v.get("ansible_connection") or "ssh")
        cores = processes or v.get("locust_processes") or v.get("cores")
        if not cores:
            cores = os.cpu_count() or 1
        port = v.get("ansible_port")
        out.append(
            LoadgenHost(
                name=host.name,
                address=host.address,
                processes=int(cores),
                connection="local" if connection == "local" else "ssh",
                user=str(v["ansible_user"]) if v.get("ansible_user") else None,
                port=int(port) if port else None,
            )
        )
    return out


def platform_workers(home: Path) -> list[LoadgenHost]:
    """The loadgen hosts of the inventory the platform under ``home`` was deployed from, when it
    has more than one (a distributed run); empty otherwise (one machine, ``--processes``)."""
    import json

    from dataplat.inventory.loader import load_inventory

    try:
        inventory = json.loads((Path(home) / "platform.json").read_text()).get("inventory")
        workers = loadgen_workers(load_inventory(inventory)) if inventory else []
    except Exception:  # no platform.json, or an inventory that no longer loads
        return []
    return workers if len(workers) > 1 else []


@dataclass
class LocustRun:
    """A step load to run: locustfile, target, users per step, step length, processes."""

    locustfile: Path
    host: str
    steps: Sequence[int]
    step_s: float
    out_dir: Path
    name: str = "locust"
    """File prefix inside ``out_dir`` (``NAME_stats_history.csv``, ``NAME.log``)."""
    processes: int | None = None
    """Locust processes (``--processes``); None: one per core (``os.cpu_count()``)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """More environment for the locustfile (customer ranges, pacing, thresholds)."""
    extra_args: Sequence[str] = ()
    workers: Sequence[LoadgenHost] = ()
    """Distributed run: a master here and worker processes on these hosts (empty: one machine)."""
    master_address: str = "127.0.0.1"
    """Where the workers reach the master (the first loadgen host's address)."""
    master_port: int = 5557

    @property
    def shape_s(self) -> float:
        """The shape's length in seconds."""
        return len(self.steps) * self.step_s

    @property
    def worker_processes(self) -> int:
        """Worker processes of a distributed run, all hosts together."""
        return sum(w.processes for w in self.workers)

    def command(self) -> list[str]:
        """The locust command line (the master's, in a distributed run)."""
        processes = self.processes if self.processes is not None else (os.cpu_count() or 1)
        run_time = int(math.ceil(self.shape_s + LOCUST_MARGIN_S))
        argv = [locust_executable(), "-f", str(self.locustfile), "--headless", "--host", self.host]
        if self.workers:
            argv += ["--master", "--master-bind-port", str(self.master_port)]
            argv += ["--expect-workers", str(self.worker_processes), "--expect-workers-max-wait", "60"]
        elif processes > 1:
            # the parent is a master its forked workers reach over ZeroMQ: on loopback, on a
            # port of its own, so two runs on one machine (a drill beside a benchmark) do not
            # collide on Locust's default 5557, and nothing listens beyond this machine
            port = _free_port()
            argv += ["--processes", str(processes), "--master-bind-host", "127.0.0.1"]
            argv += ["--master-bind-port", str(port), "--master-port", str(port)]
        argv += ["--csv", str(self.out_dir / self.name), "--csv-full-history", "--only-summary"]
        argv += ["--run-time", f"{run_time}s", "--stop-timeout", "5", "--loglevel", "WARNING"]
        return argv + list(self.extra_args)

    def worker_command(self, worker: LoadgenHost) -> list[str]:
        """The command that starts ``worker``'s processes (on its host)."""
        argv = [worker.locust or (locust_executable() if worker.connection == "local" else "locust")]
        argv += ["-f", str(self.locustfile), "--worker", "--master-host", self.master_address]
        argv += ["--master-port", str(self.master_port), "--loglevel", "WARNING"]
        if worker.processes > 1:
            argv += ["--processes", str(worker.processes)]
        return worker.command(argv)

    def environment(self) -> dict[str, str]:
        """The subprocess's environment: ours, the steps, and :attr:`env`."""
        return {
            **os.environ,
            "DATAPLAT_STEPS": ",".join(str(s) for s in self.steps),
            "DATAPLAT_STEP_S": f"{self.step_s:g}",
            **self.env,
        }


def _free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocustResult:
    """A finished run: exit code, per-step stats, the whole run's stats, where the files are."""

    command: list[str]
    exit_code: int
    seconds: float
    steps: list[dict[str, Any]]
    total: dict[str, Any]
    by_name: dict[str, dict[str, Any]]
    files: dict[str, str]
    timed_out: bool = False

    @property
    def saturation_rps(self) -> float:
        """The best step's throughput (0.0 when nothing was measured)."""
        return max((s["rps"] or 0.0 for s in self.steps), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "command": self.command,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "seconds": round(self.seconds, 3),
            "saturation_rps": round(self.saturation_rps, 2),
            "steps": self.steps,
            "total": self.total,
            "by_name": self.by_name,
            "files": self.files,
        }


def _num(value: str | None) -> float | None:
    if value is None or value in ("", "N/A"):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def read_history(path: Path) -> list[dict[str, str]]:
    """The rows of a ``_stats_history.csv``."""
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def steps_from_history(
    rows: list[dict[str, str]], steps: Sequence[int], step_s: float
) -> list[dict[str, Any]]:
    """Per-step stats from ``_stats_history.csv`` rows (see the module's docstring)."""
    agg = [r for r in rows if r["Name"] == AGGREGATED]
    started = [r for r in agg if int(r["User Count"] or 0) > 0]
    if not started:
        return [_empty_step(i, users) for i, users in enumerate(steps)]
    # users appear in the first row written after the spawn: the step began within the second before
    t0 = float(started[0]["Timestamp"]) - 0.5
    names = sorted({r["Name"] for r in rows if r["Name"] != AGGREGATED})
    out: list[dict[str, Any]] = []
    prev_ts, prev_count, prev_fail = t0, 0.0, 0.0
    prev_named: dict[str, tuple[float, float]] = {n: (0.0, 0.0) for n in names}
    for i, users in enumerate(steps):
        lo, hi = t0 + i * step_s, t0 + (i + 1) * step_s
        in_step = [r for r in agg if lo < float(r["Timestamp"]) <= hi]
        if not in_step:
            out.append(_empty_step(i, users))
            continue
        last = in_step[-1]
        if i == len(steps) - 1:  # requests that finish as the run stops belong to the last step
            counted = agg[-1]
        else:
            counted = last
        count = _num(counted["Total Request Count"]) or 0.0
        fail = _num(counted["Total Failure Count"]) or 0.0
        ts = float(last["Timestamp"])
        window_count = (_num(last["Total Request Count"]) or 0.0) - prev_count
        seconds = max(ts - prev_ts, 1e-9)
        requests, failures = count - prev_count, fail - prev_fail
        step: dict[str, Any] = {
            "step": i,
            "users": users,
            "requests": int(requests),
            "failures": int(failures),
            "seconds": round(seconds, 3),
            "rps": round(window_count / seconds, 2),
            "error_rate": round(failures / requests, 6) if requests else None,
        }
        for key, col in PERCENTILE_COLUMNS.items():
            step[key] = _num(last.get(col))
        by_name: dict[str, dict[str, int]] = {}
        for n in names:
            named = [
                r for r in rows if r["Name"] == n and float(r["Timestamp"]) <= float(counted["Timestamp"])
            ]
            c = _num(named[-1]["Total Request Count"]) if named else 0.0
            f = _num(named[-1]["Total Failure Count"]) if named else 0.0
            pc, pf = prev_named[n]
            by_name[n] = {"requests": int((c or 0.0) - pc), "failures": int((f or 0.0) - pf)}
            prev_named[n] = (c or 0.0, f or 0.0)
        step["by_name"] = by_name
        out.append(step)
        prev_ts, prev_count, prev_fail = ts, count, fail
    return out


def _empty_step(i: int, users: int) -> dict[str, Any]:
    step: dict[str, Any] = {"step": i, "users": users, "requests": 0, "failures": 0, "seconds": 0.0}
    step.update({"rps": None, "error_rate": None, "by_name": {}})
    step.update(dict.fromkeys(PERCENTILE_COLUMNS))
    return step


def read_stats(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(aggregate, per request name) from a ``_stats.csv``: counts, rps, percentiles."""
    total: dict[str, Any] = {}
    named: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return total, named
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            requests = int(_num(row.get("Request Count")) or 0)
            failures = int(_num(row.get("Failure Count")) or 0)
            doc: dict[str, Any] = {
                "requests": requests,
                "failures": failures,
                "rps": _num(row.get("Requests/s")),
                "error_rate": round(failures / requests, 6) if requests else None,
                "mean_ms": _num(row.get("Average Response Time")),
            }
            for key, col in PERCENTILE_COLUMNS.items():
                doc[key] = _num(row.get(col))
            if row["Name"] == AGGREGATED:
                total = doc
            else:
                named[row["Name"]] = doc
    return total, named


def run_locust(spec: LocustRun) -> LocustResult:
    """Run ``spec`` to the end (bounded: ``--run-time`` and a hard timeout), parse its CSVs.

    :class:`BenchError` when Locust cannot start or wrote no history; a non-zero exit code
    (the locustfile's verdict, e.g. too many failures) is returned, not raised.
    """
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    argv = spec.command()
    log_path = spec.out_dir / f"{spec.name}.log"
    hard_timeout = spec.shape_s + LOCUST_MARGIN_S + HARD_TIMEOUT_MARGIN_S
    timed_out = False
    t0 = time.perf_counter()
    workers: list[subprocess.Popen[bytes]] = []
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=spec.environment(),
            cwd=spec.out_dir,
            start_new_session=True,
        )
        try:
            for worker in spec.workers:
                wlog = (spec.out_dir / f"{spec.name}-worker-{worker.name}.log").open("wb")
                workers.append(
                    subprocess.Popen(
                        spec.worker_command(worker),
                        stdout=wlog,
                        stderr=subprocess.STDOUT,
                        env={**spec.environment(), "DATAPLAT_LOADGEN_HOST": worker.name},
                        cwd=spec.out_dir,
                        start_new_session=True,
                    )
                )
                wlog.close()
            proc.wait(hard_timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        finally:
            for w in workers:  # they quit with the master; a straggler is stopped
                try:
                    w.wait(10)
                except subprocess.TimeoutExpired:
                    _kill_group(w)
    seconds = time.perf_counter() - t0
    history = spec.out_dir / f"{spec.name}_stats_history.csv"
    if not history.exists():
        tail = log_path.read_text(errors="replace")[-2000:]
        raise BenchError(f"locust wrote no {history.name} (exit {proc.returncode}):\n{tail}")
    rows = read_history(history)
    total, by_name = read_stats(spec.out_dir / f"{spec.name}_stats.csv")
    files = {
        kind: str(spec.out_dir / f"{spec.name}{suffix}")
        for kind, suffix in (
            ("stats", "_stats.csv"),
            ("history", "_stats_history.csv"),
            ("failures", "_failures.csv"),
            ("log", ".log"),
        )
    }
    for worker in spec.workers:
        files[f"worker:{worker.name}"] = str(spec.out_dir / f"{spec.name}-worker-{worker.name}.log")
    return LocustResult(
        command=argv,
        exit_code=proc.returncode if proc.returncode is not None else -1,
        seconds=seconds,
        steps=steps_from_history(rows, spec.steps, spec.step_s),
        total=total,
        by_name=by_name,
        files=files,
        timed_out=timed_out,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it when it lingers."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
