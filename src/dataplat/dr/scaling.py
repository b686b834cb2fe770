"""The ``scaling`` drill: a step load (low -> high -> low users) and the HPA's answer to it.

Locust (``dr/locust/scaling.py`` through :mod:`dataplat.bench.locustrun`, one process by
default) keeps ``low_users`` closed-loop users for ``low_s``, ``high_users`` for ``high_s``,
then ``low_users`` again for ``after_s``, against the decision service (``via: decision``,
the default: the service's workers scale on their in-flight decisions, and every decision
that makes an offer is scored through the serving pool, whose supervisor scales too) or
straight to the serving pool (``via: pool``). Meanwhile a sampler reads every scaled
object's state file (``<home>/run/*.scaling.json``: the decision service's worker
supervisor and each pool supervisor) five times a second.

With ``sync_period_s`` / ``scale_up_window_s`` / ``scale_down_window_s`` set, the drill
patches every supervisor's HPA for its duration (``syncPeriodSeconds``,
``behavior.scale{Up,Down}.stabilizationWindowSeconds``; :mod:`dataplat.scaling.patch`) and
restores the deployed HPA at the end; unset, the deployed HPA is what is measured.

Per second (from the shape's start): users, requests issued, answered (throughput),
errors, p50/p99 of the requests answered in that second, and current/ready replicas of
each scaled object. Derived, for the object the load hits first:

* ``scale_out_reaction_s``: step up -> the first replica started after it is ready
  (a pool replica is routed to, a decision worker accepts on the shared socket);
* ``p99_recovery_s``: step up -> the first second from which p99 stays under
  ``p99_slo_ms`` for ``settle_s`` seconds (0 when it never went over);
* ``scale_in_s``: step down -> back at the replica count of the step up, every removed
  replica drained and gone (sampling goes on after the load ends, up to the
  ``scale_in_s`` timeout);
* errors per transition: before the step, during the high step (scale-out), after the
  step down (scale-in), and around a kill (``fault.kill``), each expected to be zero
  (a killed decision worker drops the requests it held: those count as ``errors_kill``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from dataplat.dr.context import DrillContext, DrillError, poll
from dataplat.dr.results import Repetition
from dataplat.platform import endpoints

LOCUSTFILE = Path(__file__).resolve().parents[3] / "dr" / "locust" / "scaling.py"
SAMPLE_PERIOD_S = 0.2


# --- the scaled objects ------------------------------------------------------------------


class Sampler(threading.Thread):
    """Reads every state file of ``run_dir`` every :data:`SAMPLE_PERIOD_S` until stopped."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(daemon=True, name="scaling-sampler")
        self.run_dir = run_dir
        self.samples: list[tuple[float, dict[str, dict[str, Any]]]] = []
        self.replicas: dict[tuple[str, str], dict[str, Any]] = {}
        """(object, replica) -> started_at, ready_at, pid, first/last seen, last state."""
        self.events: dict[tuple[str, float, str], dict[str, Any]] = {}
        self._halt = threading.Event()

    def read(self) -> dict[str, dict[str, Any]]:
        from dataplat.scaling.supervisor import pool_states

        now = time.time()
        out: dict[str, dict[str, Any]] = {}
        for doc in pool_states(self.run_dir):
            name = str(doc["pool"])
            out[name] = doc
            for r in doc.get("replicas", []):
                rec = self.replicas.setdefault((name, r["name"]), {"first_seen": now, "pid": r["pid"]})
                rec.update(started_at=r.get("started_at"), state=r.get("state"), last_seen=now)
                rec["served"] = max(int(rec.get("served") or 0), int(r.get("served") or 0))
                if r.get("ready_after_s") is not None and r.get("started_at") is not None:
                    rec["ready_at"] = r["started_at"] + r["ready_after_s"]
            for e in doc.get("events", []):
                self.events.setdefault((name, e["time"], e["type"]), {"object": name, **e})
        self.samples.append((now, out))
        return out

    def run(self) -> None:
        while not self._halt.is_set():
            self.read()
            self._halt.wait(SAMPLE_PERIOD_S)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def at(self, t: float) -> dict[str, dict[str, Any]]:
        """The last sample taken at or before ``t`` (the first one when none)."""
        last = self.samples[0][1] if self.samples else {}
        for ts, doc in self.samples:
            if ts > t:
                break
            last = doc
        return last


def _patch_doc(w: dict[str, Any]) -> dict[str, Any] | None:
    doc: dict[str, Any] = {}
    if w.get("sync_period_s") is not None:
        doc["syncPeriodSeconds"] = float(w["sync_period_s"])
    behavior: dict[str, Any] = {}
    if w.get("scale_up_window_s") is not None:
        behavior["scaleUp"] = {"stabilizationWindowSeconds": int(w["scale_up_window_s"])}
    if w.get("scale_down_window_s") is not None:
        behavior["scaleDown"] = {"stabilizationWindowSeconds": int(w["scale_down_window_s"])}
    if behavior:
        doc["behavior"] = behavior
    return doc or None


def _patch_all(
    run_dir: Path, states: list[dict[str, Any]], doc: dict[str, Any] | None, timeout: float
) -> None:
    """Send ``doc`` (None: restore) to every running supervisor and wait until each has applied it."""
    from dataplat.scaling.patch import send_patch
    from dataplat.scaling.supervisor import read_state

    for st in states:
        if st.get("running"):
            send_patch(run_dir, st["pool"], int(st["pid"]), doc)
    for st in states:
        if st.get("running"):
            name = st["pool"]

            def applied(name: str = name) -> bool:
                s = read_state(run_dir, name)
                return s is not None and s.get("patch") == doc

            poll(applied, timeout, f"{name} to apply the HPA patch")


# --- the per-second series ---------------------------------------------------------------


def read_requests(samples_dir: Path) -> list[tuple[float, float, bool]]:
    """(start, latency s, answered) of every request recorded by the Locust processes."""
    out: list[tuple[float, float, bool]] = []
    for path in sorted(samples_dir.glob("requests-*.csv")):
        for line in path.read_text().splitlines():
            parts = line.split(",")
            if len(parts) == 3:
                out.append((float(parts[0]), float(parts[1]) / 1000, parts[2] == "1"))
    return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def per_second(
    t0: float,
    seconds: int,
    users: list[int],
    requests: list[tuple[float, float, bool]],
    sampler: Sampler,
    objects: list[str],
) -> dict[str, Any]:
    """The per-second series (index i: ``[t0 + i, t0 + i + 1)``)."""
    issued = [0] * seconds
    answered = [0] * seconds
    errors = [0] * seconds
    lat: list[list[float]] = [[] for _ in range(seconds)]
    for start, latency, ok in requests:
        i = int(start - t0)
        if 0 <= i < seconds:
            issued[i] += 1
        j = int(start + latency - t0)
        if 0 <= j < seconds:
            if ok:
                answered[j] += 1
                lat[j].append(latency * 1000)
            else:
                errors[j] += 1
    replicas: dict[str, list[int | None]] = {o: [] for o in objects}
    current: dict[str, list[int | None]] = {o: [] for o in objects}
    for i in range(seconds):
        doc = sampler.at(t0 + i + 1)
        for o in objects:
            st = doc.get(o)
            replicas[o].append(None if st is None else int(st.get("ready", 0)))
            current[o].append(None if st is None else int(st.get("current", 0)))
    return {
        "t0": t0,
        "second": list(range(seconds)),
        "users": users[:seconds] + [0] * max(0, seconds - len(users)),
        "issued": issued,
        "throughput": answered,
        "errors": errors,
        "p50_ms": [_pct(v, 50) for v in lat],
        "p99_ms": [_pct(v, 99) for v in lat],
        "replicas": replicas,
        "current": current,
    }


# --- the drill ---------------------------------------------------------------------------


def _customers(platform: endpoints.Platform) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(endpoints.warehouse_conninfo(platform.home)) as conn:
        row = conn.execute("SELECT min(customer_id), max(customer_id) FROM bank.customers").fetchone()
    if not row or row[0] is None:
        raise DrillError("bank.customers is empty: load the bank first (`dataplat data load --sf 0.01`)")
    return int(row[0]), int(row[1])


def _target(ctx: DrillContext) -> tuple[str, str, dict[str, str]]:
    """(base URL, name of the scaled object the load hits, Locust environment)."""
    platform, w = ctx.platform, ctx.scenario.workload
    if w["via"] == "decision":
        found = platform.by_component("decision")
        if not found:
            raise DrillError("no decision service is deployed (via: decision); use via: pool or deploy it")
        inst = found[0]
        lo, hi = _customers(platform)
        env = {"DATAPLAT_TARGET": "decision", "DATAPLAT_PATH": "/v1/decisions"}
        env.update({"DATAPLAT_CUSTOMER_MIN": str(lo), "DATAPLAT_CUSTOMER_MAX": str(hi)})
        return f"http://{inst['address']}:{inst['ports']['http']}", str(inst["name"]), env
    from dataplat.serving.model import FEATURE_NAMES

    found = platform.by_component("serving")
    if not found:
        raise DrillError("no serving pool is deployed (via: pool)")
    inst = found[0]
    model = platform.settings.get("serving", {}).get("model", "propensity")
    env = {"DATAPLAT_TARGET": "pool", "DATAPLAT_PATH": f"/v2/models/{model}/infer"}
    env["DATAPLAT_FEATURES"] = str(len(FEATURE_NAMES))
    return f"http://{inst['address']}:{inst['ports']['http']}", str(inst.get("pool") or inst["name"]), env


def _kill(ctx: DrillContext, sampler: Sampler, rep: Repetition) -> dict[str, Any]:
    """kill -9 of one ready replica of the object ``fault.kill`` names; returns what was killed."""
    kind = ctx.scenario.fault["kill"]
    docs = sampler.read()
    wanted = "decision" if kind == "decision-worker" else "serving"
    for name, doc in docs.items():
        if doc.get("component", "serving") != wanted:
            continue
        ready = [r for r in doc.get("replicas", []) if r.get("state") == "ready"]
        if ready:
            victim = ready[0]
            os.kill(int(victim["pid"]), signal.SIGKILL)
            t = time.time()
            rep.event(f"fault: kill -9 {victim['name']} (pid {victim['pid']}) of {name}", t)
            return {"object": name, "replica": victim["name"], "pid": victim["pid"], "at": t}
    raise DrillError(f"no ready {wanted} replica to kill")


def run_repetition(ctx: DrillContext) -> Repetition:
    """One step load: Locust in the background, the sampler, the optional kill, then the numbers."""
    from dataplat.bench.locustrun import LocustRun, run_locust
    from dataplat.scaling.supervisor import pool_states

    sc, platform = ctx.scenario, ctx.platform
    w = sc.workload
    rep = Repetition(ctx.index)
    low, high = int(w["low_users"]), int(w["high_users"])
    low_s, high_s, after_s = float(w["low_s"]), float(w["high_s"]), float(w["after_s"])
    if high <= low or low < 0 or min(low_s, high_s, after_s) < 1:
        raise DrillError(
            f"the step needs high_users > low_users and each phase >= 1 s "
            f"(got {low} -> {high} users, {low_s}/{high_s}/{after_s} s)"
        )
    url, primary, env = _target(ctx)
    run_dir = platform.run_dir
    states = pool_states(run_dir)
    if not any(s["pool"] == primary for s in states):
        raise DrillError(
            f"{primary} does not scale (no {primary}.scaling.json under {run_dir}): nothing to drill"
        )
    objects = [s["pool"] for s in states]
    patch = _patch_doc(w)
    samples_dir = ctx.rep_dir / "locust"
    steps = [low] * round(low_s) + [high] * round(high_s) + [low] * round(after_s)
    env.update(
        {
            "DATAPLAT_SPAWN_RATE": f"{float(w['spawn_rate']):g}",
            "DATAPLAT_TIMEOUT_S": f"{float(w['request_timeout_s']):g}",
            "DATAPLAT_SAMPLES_DIR": str(samples_dir),
        }
    )
    spec = LocustRun(
        LOCUSTFILE,
        url,
        steps,
        1.0,
        samples_dir,
        name="scaling",
        processes=int(w["locust_processes"]),
        env=env,
    )
    sampler = Sampler(run_dir)
    outcome: dict[str, Any] = {}
    killed: dict[str, Any] | None = None
    try:
        if patch:
            _patch_all(run_dir, states, patch, ctx.timeout("patch_s"))
            ctx.log(f"HPA patched for the drill: {json.dumps(patch)}")

        # start from the low state: the primary object at its minimum, nothing starting or draining
        def settled() -> bool:
            doc = {d["pool"]: d for d in pool_states(run_dir)}.get(primary) or {}
            busy = any(r.get("state") in ("starting", "terminating") for r in doc.get("replicas", []))
            return bool(doc) and doc.get("current") == doc.get("minReplicas") and not busy

        try:
            poll(settled, ctx.timeout("settle_s"), f"{primary} to settle at minReplicas")
        except DrillError as exc:
            ctx.log(f"starting anyway: {exc}")
        sampler.start()

        def locust() -> None:
            try:
                outcome["result"] = run_locust(spec)
            except Exception as exc:  # noqa: BLE001 - reported by the drill below
                outcome["error"] = exc

        runner = threading.Thread(target=locust, name="locust", daemon=True)
        runner.start()
        shape_file = samples_dir / "shape.json"
        shape = poll(
            lambda: json.loads(shape_file.read_text()) if shape_file.exists() else None,
            60.0,
            "Locust to start its shape",
        )
        t0 = float(shape["started_at"])
        t_up, t_down = t0 + round(low_s), t0 + round(low_s) + round(high_s)
        rep.t_fault = t_up
        rep.event(f"load {low} -> {high} users", t_up)
        rep.event(f"load {high} -> {low} users", t_down)
        if sc.fault["kill"] != "none":
            t_kill = t_up + float(sc.fault["kill_at_s"])
            while time.time() < t_kill and runner.is_alive():
                time.sleep(0.05)  # the kill is scheduled at a fixed point of the load, by design
            killed = _kill(ctx, sampler, rep)
        runner.join(len(steps) + 90)
        if "error" in outcome:
            raise DrillError(f"Locust could not run: {outcome['error']}")
        if "result" not in outcome:
            raise DrillError("Locust did not finish in time")
        baseline = _ready_at(sampler, primary, t_up)

        def scaled_in() -> bool:
            doc = sampler.read().get(primary) or {}
            busy = any(r.get("state") in ("starting", "terminating") for r in doc.get("replicas", []))
            return int(doc.get("ready", 0)) <= baseline and not busy

        try:
            poll(scaled_in, ctx.timeout("scale_in_s"), f"{primary} to scale in to {baseline}")
        except DrillError as exc:
            ctx.log(str(exc))
    finally:
        try:
            if patch:
                _patch_all(run_dir, pool_states(run_dir), None, ctx.timeout("patch_s"))
                ctx.log("deployed HPA restored")
        finally:
            if sampler.is_alive():
                sampler.stop()
    return _judge(ctx, rep, sampler, samples_dir, steps, t0, t_up, t_down, primary, objects, killed, outcome)


def _ready_at(sampler: Sampler, name: str, t: float) -> int:
    return int((sampler.at(t).get(name) or {}).get("ready", 0))


def _judge(
    ctx: DrillContext,
    rep: Repetition,
    sampler: Sampler,
    samples_dir: Path,
    steps: list[int],
    t0: float,
    t_up: float,
    t_down: float,
    primary: str,
    objects: list[str],
    killed: dict[str, Any] | None,
    outcome: dict[str, Any],
) -> Repetition:
    sc, w = ctx.scenario, ctx.scenario.workload
    requests = read_requests(samples_dir)
    if not requests:
        raise DrillError(f"Locust recorded no request (see {samples_dir})")
    end = max(s + lat for s, lat, _ in requests)
    seconds = max(len(steps), int(end - t0) + 1)
    series = per_second(t0, seconds, steps, requests, sampler, objects)
    state: dict[str, Any] = {"series": series, "requests": requests}
    ctx.before_checks(state)
    series, requests = state["series"], state["requests"]

    # scale-out: the first replica started after the step up that became ready
    reaction: dict[str, float | None] = {}
    scale_in: dict[str, float | None] = {}
    for o in objects:
        ready_times = [
            r["ready_at"]
            for (obj, _), r in sampler.replicas.items()
            if obj == o
            and r.get("ready_at")
            and (r.get("started_at") or 0) >= t_up - 0.05
            and r["ready_at"] < t_down
        ]
        reaction[o] = round(min(ready_times) - t_up, 3) if ready_times else None
        base = _ready_at(sampler, o, t_up)
        grew = any(
            int((d.get(o) or {}).get("ready", 0)) > base for ts, d in sampler.samples if t_up <= ts <= t_down
        )
        scale_in[o] = None
        if grew:
            for ts, d in sampler.samples:
                doc = d.get(o) or {}
                busy = any(r.get("state") in ("starting", "terminating") for r in doc.get("replicas", []))
                if ts > t_down and doc and int(doc.get("ready", 0)) <= base and not busy:
                    scale_in[o] = round(ts - t_down, 3)
                    break
    baseline = _ready_at(sampler, primary, t_up)
    peak = max(
        (int((d.get(primary) or {}).get("ready", 0)) for ts, d in sampler.samples if t_up <= ts <= t_down),
        default=baseline,
    )

    # p99 back under the SLO
    slo, settle = float(w["p99_slo_ms"]), int(w["settle_s"])
    up_i, down_i = int(round(t_up - t0)), int(round(t_down - t0))
    p99 = series["p99_ms"]
    recovery: float | None = None
    for i in range(up_i, down_i - settle + 1):
        window = p99[i : i + settle]
        if all(v is not None and v <= slo for v in window):
            recovery = float(i - up_i)
            break

    # errors per transition (a kill's window apart)
    kill_window: tuple[float, float] | None = None
    replacement: float | None = None
    if killed is not None:
        new_ready = [
            r["ready_at"]
            for (obj, _), r in sampler.replicas.items()
            if obj == killed["object"]
            and r.get("ready_at")
            and (r.get("started_at") or 0) >= killed["at"] - 0.05
        ]
        replacement = round(min(new_ready) - killed["at"], 3) if new_ready else None
        kill_window = (killed["at"], killed["at"] + (replacement if replacement is not None else 10.0) + 1.0)
        if replacement is not None:
            rep.event(f"replaced ({killed['object']})", killed["at"] + replacement)
    phases = {"before": (t0, t_up), "scale_out": (t_up, t_down), "scale_in": (t_down, math.inf)}
    errors = dict.fromkeys([*phases, "kill"], 0)
    failed_at: list[float] = []
    for start, latency, ok in requests:
        if ok:
            continue
        t = start + latency
        failed_at.append(t)
        if kill_window and kill_window[0] <= t <= kill_window[1]:
            errors["kill"] += 1
            continue
        for phase, (lo, hi) in phases.items():
            if lo <= t < hi:
                errors[phase] += 1
    for e in sorted(sampler.events.values(), key=lambda e: e["time"]):
        if e["type"] in ("ScaleUp", "ScaleDown") and e["time"] >= t0 - 1:
            rep.event(f"{e['object']} {e['type']} {e.get('from')}->{e.get('to')}", e["time"])

    total = len(requests)
    transition_errors = errors["before"] + errors["scale_out"] + errors["scale_in"]
    rep.metrics.update(
        {
            "scale_out_reaction_s": reaction.get(primary),
            "p99_recovery_s": recovery,
            "scale_in_s": scale_in.get(primary),
            "errors": float(transition_errors),
            "errors_scale_out": float(errors["scale_out"]),
            "errors_scale_in": float(errors["scale_in"]),
            "errors_kill": float(errors["kill"]) if killed else None,
            "replacement_s": replacement,
            "max_replicas": float(peak),
            "requests": float(total),
        }
    )
    result = outcome["result"]
    rep.info.update(
        {
            "target": primary,
            "objects": objects,
            "baseline_replicas": baseline,
            "reaction_s": reaction,
            "replicas_seen": [
                {"object": obj, "replica": name, **rec}
                for (obj, name), rec in sorted(sampler.replicas.items())
            ],
            "scale_in_s": scale_in,
            "errors": errors,
            "killed": killed,
            "locust": {"exit_code": result.exit_code, "command": result.command, "files": result.files},
            "timeseries": series,
            "p99_slo_ms": slo,
            "hpa_patch": _patch_doc(w),
        }
    )
    rep.series["answered"] = [s + lat for s, lat, ok in requests if ok]
    rep.series["failed"] = failed_at
    if "scaled_out" in sc.checks:
        rep.check(
            "scaled_out",
            peak > baseline,
            f"{primary}: {baseline} -> {peak} ready replicas under {w['high_users']} users; "
            f"first new replica ready {reaction.get(primary)} s after the step",
        )
    if "scaled_in" in sc.checks:
        rep.check(
            "scaled_in",
            scale_in.get(primary) is not None,
            f"{primary}: back to {baseline} ready replicas, drained, "
            f"{scale_in.get(primary)} s after the step down",
        )
    if "no_errors" in sc.checks:
        rep.check(
            "no_errors",
            total > 0 and transition_errors == 0,
            f"{total} requests; failed before the step {errors['before']}, during scale-out "
            f"{errors['scale_out']}, during scale-in {errors['scale_in']}"
            + (f"; around the kill {errors['kill']}" if killed else ""),
        )
    if "replica_replaced" in sc.checks and killed is not None:
        rep.check(
            "replica_replaced",
            replacement is not None,
            f"{killed['replica']} of {killed['object']} killed; a new replica ready after {replacement} s",
        )
    return rep
