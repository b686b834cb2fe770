"""Where the CPU goes during a load: processor time per platform component, per request.

When a throughput goal is missed on a shared machine, the first question is which process
spent the cores. :class:`CpuMeter` reads the processor time (user + system) of process
groups before and after a run, from ``/proc`` through psutil:

* one group per deployed component (``warehouse``, ``stream``, ``serving``, ``decision``,
  ...): the daemon of each instance (its pid file, as ``dataplat status`` reads it) and all
  its descendants (PostgreSQL's backends under Patroni, a pool's replicas, the service's
  workers), counted once each;
* ``loadgen``: the descendants of this process that belong to no component (Locust),
  and the children of this process that ended and were waited for during the run (a
  Locust run is usually over at the second reading: ``getrusage(RUSAGE_CHILDREN)``);
* extra groups by root pid (a bare endpoint started for the run);
* ``other``: the machine's busy time not in any group (the kernel's soft interrupts, other
  work on the machine).

Other processes that start and end between the two readings (a worker replaced mid-run)
are not counted; the ``other`` group then holds their time. :meth:`CpuMeter.report` gives, per
group, the cores used on average and the CPU milliseconds per request.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

LOADGEN = "loadgen"
OTHER = "other"


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _waited_children_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return float(ru.ru_utime + ru.ru_stime)


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(sum(getattr(t, f) for f in t._fields if f not in ("idle", "iowait", "guest", "guest_nice")))


@dataclass
class CpuMeter:
    """Processor time of process groups between :meth:`start` and :meth:`stop` (module docstring)."""

    roots: dict[str, list[int]]
    """Group name -> root pids (their descendants belong to the group too)."""
    loadgen_root: int | None = field(default_factory=os.getpid)
    _start: dict[int, tuple[str, float]] = field(default_factory=dict, repr=False)
    _busy0: float = 0.0
    _waited0: float = 0.0
    _t0: float = 0.0
    seconds: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_platform(cls, home: Path, extra: Mapping[str, Iterable[int]] | None = None) -> CpuMeter:
        """Groups for the components deployed under ``home`` (pid files), plus ``extra``."""
        from dataplat.deploy.daemon import read_state
        from dataplat.platform import endpoints

        platform = endpoints.load_platform(home)
        roots: dict[str, list[int]] = {}
        for inst in platform.instances:
            state = read_state(inst["name"], platform.run_dir)
            if state.running and state.pid:
                roots.setdefault(inst["component"], []).append(state.pid)
        for name, pids in (extra or {}).items():
            roots.setdefault(name, []).extend(pids)
        return cls(roots)

    def _classify(self) -> dict[int, tuple[str, psutil.Process]]:
        seen: dict[int, tuple[str, psutil.Process]] = {}
        for name, pids in self.roots.items():
            for pid in pids:
                for p in _tree(pid):
                    seen.setdefault(p.pid, (name, p))
        if self.loadgen_root is not None:
            for p in _tree(self.loadgen_root)[1:]:  # not this process itself
                seen.setdefault(p.pid, (LOADGEN, p))
        return seen

    @staticmethod
    def _cpu(p: psutil.Process) -> float | None:
        try:
            t = p.cpu_times()
        except psutil.Error:
            return None
        return float(t.user + t.system)

    def start(self) -> None:
        """First reading."""
        self._start = {}
        for pid, (name, p) in self._classify().items():
            cpu = self._cpu(p)
            if cpu is not None:
                self._start[pid] = (name, cpu)
        self._waited0 = _waited_children_seconds()
        self._busy0, self._t0 = _busy_seconds(), time.monotonic()

    def stop(self) -> dict[str, float]:
        """Second reading; processor seconds per group (processes seen at the start and still
        there; a process started since counts from zero)."""
        self.seconds = time.monotonic() - self._t0
        used: dict[str, float] = {name: 0.0 for name in [*self.roots, LOADGEN]}
        for pid, (name, p) in self._classify().items():
            cpu = self._cpu(p)
            if cpu is None:
                continue
            before = self._start.get(pid, (name, 0.0))[1]
            used[name] = used.get(name, 0.0) + max(cpu - before, 0.0)
        if self.loadgen_root == os.getpid():
            used[LOADGEN] += max(_waited_children_seconds() - self._waited0, 0.0)
        busy = _busy_seconds() - self._busy0
        used[OTHER] = max(busy - sum(used.values()), 0.0)
        self.cpu_s = used
        return used

    def report(self, requests: int | float | None) -> dict[str, Any]:
        """Per group: ``cores`` (average over the run) and ``cpu_ms_per_request``; the totals."""
        secs = max(self.seconds, 1e-9)
        groups = {
            name: {
                "cpu_s": round(cpu, 3),
                "cores": round(cpu / secs, 3),
                "cpu_ms_per_request": round(cpu * 1000 / requests, 4) if requests else None,
            }
            for name, cpu in sorted(self.cpu_s.items(), key=lambda kv: -kv[1])
        }
        total = sum(self.cpu_s.values())
        return {
            "seconds": round(self.seconds, 3),
            "requests": requests,
            "cores_available": psutil.cpu_count() or 1,
            "groups": groups,
            "total_cores": round(total / secs, 3),
            "total_cpu_ms_per_request": round(total * 1000 / requests, 4) if requests else None,
        }
