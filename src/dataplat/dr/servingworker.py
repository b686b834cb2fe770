"""The ``serving-worker`` drill: a model-serving worker killed under decision load.

Closed-loop clients send real-time decisions (``POST /v1/decisions`` on the decision
service, or inference straight to the pool with ``via: pool``) while one worker process
of a serving replica is killed with SIGKILL. The replica's server replaces the worker;
the decision service retries on another worker or pool, or answers rules-only marked
``degraded``. Measured: requests, failed requests (errors or non-2xx answers) against the
scenario's error budget, degraded decisions, and the time until the replica has all its
workers again and answers ready.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from dataplat.deploy import daemon
from dataplat.dr.context import DrillContext, DrillError, poll
from dataplat.dr.results import Repetition
from dataplat.platform import endpoints

EVENT_TYPES = ("payroll_credited", "large_inflow", "product_maturity", "transfer_out_other_bank", "app_login")


def _children(pid: int) -> list[tuple[int, bytes]]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            try:
                out.append((int(child), Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")))
            except OSError:
                continue
    return out


def worker_pids(daemon_pid: int) -> list[int]:
    """The processes that answer requests for a pool endpoint's daemon.

    A multi-process server's workers (its children started by multiprocessing's spawn);
    under a scaling supervisor, its replicas (child ``dataplat.serving.server`` processes),
    which the supervisor replaces as a ReplicaSet replaces a lost pod.
    """
    children = _children(daemon_pid)
    workers = [pid for pid, cmd in children if b"spawn_main" in cmd]
    if not workers:
        workers = [pid for pid, cmd in children if b"dataplat.serving.server" in cmd]
    return sorted(workers)


def _customer_ids(platform: endpoints.Platform) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(endpoints.warehouse_conninfo(platform.home)) as conn:
        row = conn.execute("SELECT min(customer_id), max(customer_id) FROM bank.customers").fetchone()
    if not row or row[0] is None:
        raise DrillError("bank.customers is empty: load the bank first (`dataplat data load --sf 0.01`)")
    return int(row[0]), int(row[1])


async def _load(
    ctx: DrillContext,
    rep: Repetition,
    replica: dict[str, Any],
    stop: asyncio.Event,
    outcomes: list[tuple[float, str]],
) -> None:
    """Closed-loop clients until ``stop``; every request's end time and outcome is recorded."""
    w, platform = ctx.scenario.workload, ctx.platform
    via = str(w["via"])
    timeout = aiohttp.ClientTimeout(total=float(w["request_timeout_s"]))
    if via == "decision":
        decisions = platform.by_component("decision")
        if not decisions:
            raise DrillError("no decision service is deployed (via: decision); use via: pool or deploy it")
        lo, hi = _customer_ids(platform)
        url = f"http://{decisions[0]['address']}:{decisions[0]['ports']['http']}/v1/decisions"
    else:
        from dataplat.serving.model import FEATURE_NAMES

        model = platform.settings.get("serving", {}).get("model", "propensity")
        url = f"http://{replica['address']}:{replica['ports']['http']}/v2/models/{model}/infer"
        lo = hi = 0
        body = {
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, len(FEATURE_NAMES)],
                    "datatype": "FP32",
                    "data": [0.0] * len(FEATURE_NAMES),
                }
            ]
        }

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if via == "decision":
                body_i: dict[str, Any] = {
                    "event_id": f"dr-sw-{uuid.uuid4().hex}",
                    "type": EVENT_TYPES[n % len(EVENT_TYPES)],
                    "customer_id": lo + (i * 7919 + n * 104729) % (hi - lo + 1),
                    "amount": 1000.0,
                }
            else:
                body_i = body
            try:
                async with session.post(url, json=body_i) as resp:
                    doc = await resp.json(content_type=None) if resp.status == 200 else None
                    if resp.status != 200:
                        outcome = f"http_{resp.status}"
                    elif via == "decision" and doc and doc.get("degraded"):
                        outcome = "degraded"
                    else:
                        outcome = "ok"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                outcome = type(exc).__name__
            outcomes.append((time.time(), outcome))

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(i, session) for i in range(int(w["clients"]))))


def run_repetition(ctx: DrillContext) -> Repetition:
    """Kill one worker of a serving replica under load; count what the clients saw."""
    sc, platform = ctx.scenario, ctx.platform
    rep = Repetition(ctx.index)
    replicas = platform.by_component("serving")
    if not replicas:
        raise DrillError("no serving pool is deployed")
    wanted = str(sc.fault["replica"])
    replica = next((r for r in replicas if r["name"] == wanted), replicas[0]) if wanted else replicas[0]
    state = daemon.read_state(replica["name"], platform.run_dir)
    if not state.running or state.pid is None:
        raise DrillError(f"serving replica {replica['name']} is not running; run `dataplat up`")
    before = worker_pids(state.pid)
    if not before:
        raise DrillError(f"{replica['name']} (pid {state.pid}) has no worker processes to kill")
    model = platform.settings.get("serving", {}).get("model", "propensity")
    ready_url = f"http://{replica['address']}:{replica['ports']['http']}/v2/models/{model}/ready"
    outcomes: list[tuple[float, str]] = []

    async def drill() -> dict[str, Any]:
        stop = asyncio.Event()
        load = asyncio.create_task(_load(ctx, rep, replica, stop, outcomes))
        await asyncio.sleep(float(sc.workload["before_s"]))  # steady load before the fault, by design
        if load.done():
            load.result()  # the load could not start: raise its error
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        rep.t_fault = time.time()
        rep.event(f"fault: kill -9 worker {victim} of {replica['name']}", rep.t_fault)

        def replaced() -> list[int] | None:
            now = worker_pids(state.pid)  # type: ignore[arg-type]
            if victim in now or len(now) < len(before):
                return None
            import urllib.request

            with urllib.request.urlopen(ready_url, timeout=1) as resp:
                return now if resp.status == 200 else None

        after = await asyncio.to_thread(poll, replaced, ctx.timeout("replace_s"), "the worker to be replaced")
        t_replaced = time.time()
        rep.event(f"worker replaced ({len(after)} workers, ready)", t_replaced)
        await asyncio.sleep(float(sc.workload["after_s"]))  # load after recovery, by design
        stop.set()
        await load
        return {
            "victim": victim,
            "workers_before": before,
            "workers_after": after,
            "replacement_s": round(t_replaced - rep.t_fault, 3),
        }

    result = asyncio.run(drill())
    counts: dict[str, int] = {}
    for _, outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    state_doc = {"outcomes": outcomes, "counts": counts, **result}
    ctx.before_checks(state_doc)
    counts, outcomes = state_doc["counts"], state_doc["outcomes"]
    total = len(outcomes)
    failed = total - counts.get("ok", 0) - counts.get("degraded", 0)
    ratio = failed / total if total else 1.0
    rep.metrics.update(
        {
            "requests": float(total),
            "failed": float(failed),
            "error_ratio": round(ratio, 6),
            "degraded": float(counts.get("degraded", 0)),
            "replacement_s": result["replacement_s"],
        }
    )
    rep.info.update(
        {
            "outcomes": counts,
            "victim": result["victim"],
            "workers_before": result["workers_before"],
            "workers_after": result["workers_after"],
        }
    )
    rep.series["answered"] = [t for t, o in outcomes if o == "ok"]
    rep.series["degraded"] = [t for t, o in outcomes if o == "degraded"]
    rep.series["failed"] = [t for t, o in outcomes if o not in ("ok", "degraded")]
    budget = float(sc.workload["error_budget"])
    if "worker_replaced" in sc.checks:
        rep.check(
            "worker_replaced",
            True,
            f"worker {result['victim']} replaced in {result['replacement_s']} s; "
            f"workers {result['workers_before']} -> {result['workers_after']}",
        )
    if "error_budget" in sc.checks:
        rep.check(
            "error_budget",
            total > 0 and ratio <= budget,
            f"{failed} of {total} requests failed ({ratio:.4%}, budget {budget:.2%}); "
            f"{counts.get('degraded', 0)} answered degraded; outcomes {counts}",
        )
    return rep
