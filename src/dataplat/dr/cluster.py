"""Drills against a Kubernetes cluster: ``dataplat drill run NAME --target k8s``.

The same scenario files, run against the platform ``dataplat up --target k8s`` deployed:
faults go through the Kubernetes API (:mod:`dataplat.k8s.faults`) instead of ``kill -9``,
and recovery is measured with its waits, from the API call to the first poll that sees
the platform recovered.

==================  ==========================================================================
kind / fault        on the cluster
==================  ==========================================================================
failover            ``postmaster-kill``: the CloudNativePG primary's pod deleted (grace 0);
                    ``host-loss``: its node cordoned, then its pod deleted (the node is
                    uncordoned after ``restart_delay_s``); ``switchover``: ``targetPrimary``
                    set as ``kubectl cnpg promote`` does. ``promotion_s``: fault -> a new
                    primary ready; ``rejoin_s``: fault -> every instance ready again.
stream-crash        a pod of the NATS StatefulSet deleted; ``replacement_s``: -> back and ready
serving-worker      a ready pod of a serving pool's Deployment deleted; ``replacement_s``:
                    -> the Deployment available again without it
scaling             the fault part only: a Deployment scaled through its ``scale``
                    subresource (as an autoscaler does) and back; ``scaled_ready_s`` and
                    ``scaled_back_s``. The step load needs the decision service's URL.
==================  ==========================================================================

With a warehouse conninfo (``--warehouse-conninfo`` or ``k8s.warehouse_conninfo``: the
CloudNativePG ``-rw`` Service, password from a passfile or ``PGPASSWORD``, never in the
conninfo) the failover drill runs the ledger workload of the local drill and measures the
same way: RTO = fault -> first acknowledged commit on a connection opened after the
fault, RPO = acknowledged transfers missing afterwards, the balance invariant. Without
one it reports API-level recovery only, and the results say so (``target.measured``).
Metrics the cluster drill cannot measure are reported as not measured, with the reason.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from dataplat.dr.context import DrillError, poll
from dataplat.dr.failover import record_rpo
from dataplat.dr.results import DrillResult, Repetition
from dataplat.dr.runner import _judge, new_ident, run_repetitions
from dataplat.dr.scenario import Scenario
from dataplat.dr.workload import LedgerWorkload
from dataplat.errors import ConfigError, DataplatError
from dataplat.k8s import faults
from dataplat.k8s.cluster import Cluster
from dataplat.k8s.faults import CNPG, Injected

__all__ = [
    "CLUSTER_KINDS",
    "ClusterContext",
    "ClusterTarget",
    "check_conninfo",
    "redact_conninfo",
    "run_cluster_drill",
]

API_ONLY = (
    "API-level recovery only: no warehouse conninfo was given, so no RTO as the first committed "
    "write and no RPO (give --warehouse-conninfo reaching the -rw Service)"
)


def check_conninfo(conninfo: str) -> str:
    """``conninfo`` when it is a valid libpq conninfo without a password; ConfigError otherwise."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"the warehouse conninfo is not a libpq conninfo: {exc}") from None
    if "password" in params:
        raise ConfigError(
            "the warehouse conninfo must not hold a password: put it in a passfile "
            "(passfile=... or ~/.pgpass) or PGPASSWORD"
        )
    return conninfo


def redact_conninfo(conninfo: str) -> str:
    """``user@host:port/dbname`` of a conninfo, for logs and reports (nothing secret)."""
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(conninfo)
    return f"{p.get('user', '')}@{p.get('host', '')}:{p.get('port', '5432')}/{p.get('dbname', '')}".lstrip(
        "@"
    )


@dataclass(frozen=True)
class ClusterTarget:
    """The cluster a drill runs against, and how to reach the warehouse for the workload."""

    cluster: Cluster
    namespace: str
    context: str | None = None
    warehouse_conninfo: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    """The scenario's ``k8s:`` section (cluster_name, statefulset, deployment, replicas ...)."""

    def setting(self, name: str, default: Any = None) -> Any:
        value = self.settings.get(name)
        return default if value in (None, "") else value

    def to_dict(self, kind: str) -> dict[str, Any]:
        """What results.json records under ``target``."""
        measured = "API-level timings"
        if kind == "failover":
            measured = (
                "ledger workload through the warehouse conninfo and API-level timings"
                if self.warehouse_conninfo
                else API_ONLY
            )
        return {
            "target": "k8s",
            "context": self.context or "(current)",
            "namespace": self.namespace,
            "api_server": self.cluster.host,
            "warehouse": redact_conninfo(self.warehouse_conninfo) if self.warehouse_conninfo else None,
            "measured": measured,
        }


@dataclass
class ClusterContext:
    """One repetition on the cluster: the scenario, the target, its own folder for raw logs."""

    scenario: Scenario
    target: ClusterTarget
    index: int
    rep_dir: Path
    log: Callable[[str], None] = lambda _msg: None

    @property
    def cluster(self) -> Cluster:
        return self.target.cluster

    @property
    def namespace(self) -> str:
        return self.target.namespace

    def timeout(self, name: str) -> float:
        return float(self.scenario.timeouts[name])

    @property
    def grace(self) -> int:
        return int(self.target.setting("grace_period_s", 0))


def _pod(ctx: ClusterContext, name: str) -> dict[str, Any]:
    pod = ctx.cluster.get("v1", "Pod", name, ctx.namespace)
    if pod is None:
        raise DrillError(f"pod {name} does not exist in namespace {ctx.namespace}")
    return pod


def _cluster_status(ctx: ClusterContext, name: str) -> dict[str, Any]:
    live = ctx.cluster.get(CNPG, "Cluster", name, ctx.namespace)
    if live is None:
        raise DrillError(f"no CloudNativePG Cluster {name} in namespace {ctx.namespace}")
    return {"instances": (live.get("spec") or {}).get("instances"), **(live.get("status") or {})}


def _all_ready(ctx: ClusterContext, name: str) -> dict[str, Any] | None:
    st = _cluster_status(ctx, name)
    want = st.get("instances") or 1
    current = st.get("currentPrimary")
    if current and st.get("targetPrimary", current) == current and (st.get("readyInstances") or 0) >= want:
        return st
    return None


def _not_measured(rep: Repetition, *names: str, why: str) -> None:
    notes = rep.info.setdefault("not_measured", {})
    for n in names:
        notes[n] = why


# -- failover -------------------------------------------------------------------------------------------


def _first_commit_after_reconnect(workload: LedgerWorkload, t_fault: float) -> float | None:
    """The first acknowledged commit made on a connection opened after the fault (the Service
    address stays the same through a failover, so the connection tells old primary from new)."""
    connects = list(workload.connects)
    for a in sorted(workload.snapshot(), key=lambda a: a.t_end):
        if a.outcome != "acked" or a.t_end <= t_fault:
            continue
        opened = max((t for t, client, _ in connects if client == a.client and t <= a.t_start), default=None)
        if opened is not None and opened > t_fault:
            return a.t_end
    return None


def _failover(ctx: ClusterContext) -> Repetition:
    sc, cluster, ns = ctx.scenario, ctx.cluster, ctx.namespace
    name = str(ctx.target.setting("cluster_name", "warehouse"))
    rep = Repetition(ctx.index)
    _cluster_status(ctx, name)  # no such Cluster: could not run, at once
    before = poll(lambda: _all_ready(ctx, name), ctx.timeout("healthy_s"), f"every instance of {name} ready")
    old = str(before["currentPrimary"])
    node = str((_pod(ctx, old).get("spec") or {}).get("nodeName") or "")
    rep.info.update(old_primary=old, old_primary_node=node, instances=before.get("instances"))
    ctx.log(f"Cluster {name}: primary {old} on node {node or '?'}, {before.get('instances')} instance(s)")

    conninfo = ctx.target.warehouse_conninfo
    w = sc.workload
    workload = (
        LedgerWorkload(
            conninfo,
            clients=int(w["clients"]),
            accounts=int(w["accounts"]),
            initial_balance=int(w["initial_balance"]),
            schema=str(w["schema"]),
            seed=ctx.index + 1,
        )
        if conninfo
        else None
    )
    cordoned = ""
    injected: Injected | None = None
    stuck: list[str] = []
    try:
        if workload is not None:
            workload.prepare()
            workload.start()
            rep.event("load starts", time.time())
            first = workload
            poll(lambda: any(a.outcome == "acked" for a in first.snapshot()), 30, "the first ledger commit")
            time.sleep(float(w["before_s"]))  # steady load before the fault, by design
        if sc.fault_type == "host-loss":
            if not node:
                raise DrillError(f"pod {old} is not scheduled on a node; cannot lose its host")
            faults.cordon(cluster, node)
            cordoned = node
            rep.event(f"node {node} cordoned", time.time())
            injected = faults.delete_primary_pod(cluster, ns, name, grace_period_s=ctx.grace)
        elif sc.fault_type == "switchover":
            st = _cluster_status(ctx, name)
            standbys = sorted(
                p["metadata"]["name"]
                for p in cluster.list_objects("v1", "Pod", ns, label_selector=f"cnpg.io/cluster={name}")
                if p["metadata"]["name"] != old and faults.pod_ready(p)
            )
            if not standbys:
                raise DrillError(f"Cluster {name} has no ready standby to switch over to ({st.get('phase')})")
            injected = faults.promote(cluster, ns, standbys[0], name)
        else:
            injected = faults.delete_primary_pod(cluster, ns, name, grace_period_s=ctx.grace)
        rep.t_fault = injected.t
        rep.event(f"fault: {injected.kind} of {old}", injected.t)
        rep.info["fault"] = injected.to_dict()
        ctx.log(f"fault injected: {injected.detail}")

        recovery = faults.wait_new_primary(cluster, injected, name, timeout=ctx.timeout("failover_s"))
        new = recovery.value
        rep.metrics["promotion_s"] = round(recovery.seconds, 3)
        rep.event(f"new primary {new} ready (API)", injected.t + recovery.seconds)
        rep.info["new_primary"] = new
        rep.info["promotion"] = recovery.to_dict()
        ctx.log(f"{recovery.detail}: {recovery.seconds:.2f} s after the fault")
        if cordoned:
            delay = float(sc.fault["restart_delay_s"])
            if delay:
                time.sleep(delay)  # the lost host stays away this long, by design
            faults.uncordon(cluster, cordoned)
            rep.event(f"node {cordoned} uncordoned", time.time())
            cordoned = ""
        if workload is not None:
            t_fault = injected.t
            try:
                t_first = poll(
                    lambda: _first_commit_after_reconnect(workload, t_fault),
                    ctx.timeout("failover_s"),
                    "the first commit on a connection opened after the fault",
                )
                rep.metrics["rto_s"] = round(t_first - t_fault, 3)
                rep.event("first commit after the fault", t_first)
                ctx.log(f"first commit {t_first - t_fault:.2f} s after the fault")
            except DrillError as exc:
                rep.info["rto_error"] = (
                    f"{exc}: no client connection was lost, so the conninfo may not lead to the primary "
                    "that was deleted (a kubectl port-forward sticks to one pod)"
                )
                _not_measured(rep, "rto_s", why=rep.info["rto_error"])
        else:
            _not_measured(rep, "rto_s", "rpo_commits", why=API_ONLY)
        try:
            poll(lambda: _all_ready(ctx, name), ctx.timeout("rejoin_s"), f"every instance of {name} ready")
            rep.metrics["rejoin_s"] = round(time.monotonic() - injected.t_mono, 3)
            rep.event("every instance ready again", injected.t + float(rep.metrics["rejoin_s"] or 0))
        except DrillError as exc:
            rep.info["rejoin_error"] = str(exc)
        if workload is not None:
            time.sleep(float(w["after_s"]))  # steady load after recovery, by design
    finally:
        if cordoned:
            faults.uncordon(cluster, cordoned)  # never leave the node cordoned
        if workload is not None:
            stuck = workload.stop()
            rep.event("load stops", time.time())
            workload.dump(ctx.rep_dir / "attempts.jsonl")

    rep.check("promoted", True, f"{rep.info['promotion']['detail']} in {rep.metrics['promotion_s']} s")
    if "rejoin" in sc.checks:
        rep.check(
            "rejoin",
            "rejoin_s" in rep.metrics,
            f"every instance of {name} ready {rep.metrics['rejoin_s']} s after the fault"
            if "rejoin_s" in rep.metrics
            else rep.info.get("rejoin_error", "did not rejoin"),
        )
    skipped = [c for c in sc.checks if c in ("fencing", "status")]
    if skipped:
        rep.info["not_checked_on_k8s"] = {
            c: "needs the old primary's own address (fencing) or the local status (status)" for c in skipped
        }
    if workload is not None:
        attempts = workload.snapshot()
        rep.series["commits"] = [a.t_end for a in attempts if a.outcome == "acked"]
        rep.series["failed / in doubt"] = [a.t_end for a in attempts if a.outcome != "acked"]
        _ledger_checks(ctx, rep, workload, new, stuck)
    return rep


def _ledger_checks(
    ctx: ClusterContext, rep: Repetition, workload: LedgerWorkload, new: str, stuck: list[str]
) -> None:
    """RPO, the balance invariant and in-doubt commits, read through the warehouse conninfo."""
    sc = ctx.scenario
    attempts = workload.snapshot()
    acked = {a.id: a for a in attempts if a.outcome == "acked"}
    in_doubt = {a.id for a in attempts if a.outcome == "in_doubt"}
    failed = {a.id for a in attempts if a.outcome == "failed"}
    with psycopg.connect(workload.conninfo, connect_timeout=5) as conn:
        present = {r[0] for r in conn.execute(sql.SQL("SELECT id FROM {}").format(workload.transfers_table))}
        total, naccts = conn.execute(
            sql.SQL("SELECT coalesce(sum(balance), 0), count(*) FROM {}").format(workload.accounts_table)
        ).fetchone()  # type: ignore[misc]
    record_rpo(
        rep, sc.checks, acked, len(in_doubt), len(failed), present, stuck, f"after the failover to {new}"
    )
    if "invariant" in sc.checks:
        expected = workload.initial_balance * workload.accounts
        rep.check(
            "invariant",
            total == expected and naccts == workload.accounts,
            f"total balance {total} (expected {expected}) over {naccts} accounts",
        )
    if "in_doubt" in sc.checks:
        phantom = sorted(failed & present)
        rep.check(
            "in_doubt",
            not phantom,
            f"{len(in_doubt)} in-doubt commits ({len(in_doubt & present)} did commit; none counted as lost); "
            f"{len(phantom)} failed-before-COMMIT transfers present",
            phantom=phantom[:20],
        )


# -- stream, serving, scaling -----------------------------------------------------------------------------


def _stream_crash(ctx: ClusterContext) -> Repetition:
    rep = Repetition(ctx.index)
    sts = str(ctx.target.setting("statefulset", "stream"))
    victim = str(ctx.scenario.fault.get("node") or f"{sts}-0")
    m = re.fullmatch(rf"{re.escape(sts)}-(\d+)", victim)
    if m is None:
        raise DrillError(f"fault.node {victim!r} is not a pod of StatefulSet {sts} (e.g. {sts}-0)")
    injected = faults.delete_stream_pod(ctx.cluster, ctx.namespace, sts, int(m[1]), ctx.grace)
    rep.t_fault = injected.t
    rep.event(f"fault: {injected.kind} of {victim}", injected.t)
    rep.info["fault"] = injected.to_dict()
    ctx.log(f"fault injected: {injected.detail}")
    recovery = faults.wait_pod_replaced(ctx.cluster, injected, timeout=ctx.timeout("restart_s"))
    rep.metrics["replacement_s"] = round(recovery.seconds, 3)
    rep.event(f"{victim} back and ready", injected.t + recovery.seconds)
    ready = faults.wait_workload_ready(ctx.cluster, injected, "StatefulSet", sts, ctx.timeout("restart_s"))
    rep.info["recovery"] = recovery.to_dict()
    rep.info["statefulset"] = ready.to_dict()
    rep.check("pod_replaced", True, f"{recovery.detail} in {recovery.seconds:.2f} s; {ready.detail}")
    _not_measured(
        rep,
        "outage_s",
        "lost_acked",
        why="the publish workload needs the cluster's NATS client URL; API-level recovery only",
    )
    return rep


def _serving_deployment(ctx: ClusterContext) -> str:
    named = ctx.target.setting("deployment")
    if named:
        return str(named)
    deps = ctx.cluster.list_objects(
        "apps/v1", "Deployment", ctx.namespace, label_selector="app.kubernetes.io/name=serving"
    )
    if not deps:
        raise DrillError(f"no serving pool Deployment in namespace {ctx.namespace} (set k8s.deployment)")
    return str(sorted(d["metadata"]["name"] for d in deps)[0])


def _serving_worker(ctx: ClusterContext) -> Repetition:
    rep = Repetition(ctx.index)
    dep = _serving_deployment(ctx)
    pod = str(ctx.scenario.fault.get("replica") or "") or None
    injected = faults.delete_pool_pod(ctx.cluster, ctx.namespace, dep, pod, ctx.grace)
    rep.t_fault = injected.t
    rep.event(f"fault: {injected.kind} of {injected.target}", injected.t)
    rep.info["fault"] = injected.to_dict()
    ctx.log(f"fault injected: {injected.detail}")
    recovery = faults.wait_workload_ready(ctx.cluster, injected, "Deployment", dep, ctx.timeout("replace_s"))
    rep.metrics["replacement_s"] = round(recovery.seconds, 3)
    rep.event(f"Deployment {dep} available again", injected.t + recovery.seconds)
    rep.info["recovery"] = recovery.to_dict()
    if "worker_replaced" in ctx.scenario.checks:
        rep.check("worker_replaced", True, f"{recovery.detail} {recovery.seconds:.2f} s after the deletion")
    _not_measured(
        rep,
        "error_ratio",
        "failed",
        "degraded",
        "requests",
        why="the decision load needs the decision service's URL; API-level recovery only",
    )
    return rep


def _scaling(ctx: ClusterContext) -> Repetition:
    rep = Repetition(ctx.index)
    dep = str(ctx.target.setting("deployment", "decision"))
    live = ctx.cluster.get("apps/v1", "Deployment", dep, ctx.namespace)
    if live is None:
        raise DrillError(f"no Deployment {dep} in namespace {ctx.namespace}")
    was = int((live.get("spec") or {}).get("replicas") or 1)
    to = int(ctx.target.setting("replicas", 0) or was + 1)
    out = faults.scale(ctx.cluster, ctx.namespace, "Deployment", dep, to)
    rep.t_fault = out.t
    rep.event(f"fault: Deployment {dep} scaled {was} -> {to}", out.t)
    ctx.log(f"fault injected: Deployment {dep} {out.detail}")
    try:
        up = faults.wait_workload_ready(ctx.cluster, out, "Deployment", dep, ctx.timeout("settle_s"))
        rep.metrics["scaled_ready_s"] = round(up.seconds, 3)
        rep.event(f"{dep} ready with {up.value} replica(s)", out.t + up.seconds)
    finally:
        back = faults.scale(ctx.cluster, ctx.namespace, "Deployment", dep, was)
    down = faults.wait_workload_ready(ctx.cluster, back, "Deployment", dep, ctx.timeout("scale_in_s"))
    rep.metrics["scaled_back_s"] = round(down.seconds, 3)
    rep.event(f"{dep} back to {down.value} replica(s)", back.t + down.seconds)
    rep.info.update(baseline_replicas=was, scaled_to=to, scale_out=up.to_dict(), scale_in=down.to_dict())
    rep.check("scaled_out", True, f"{dep}: {was} -> {to} replicas ready in {up.seconds:.2f} s")
    rep.check("scaled_in", True, f"{dep}: back to {was} replicas in {down.seconds:.2f} s")
    _not_measured(
        rep,
        "scale_out_reaction_s",
        "p99_recovery_s",
        "scale_in_s",
        "errors",
        "requests",
        why="the step load needs the decision service's URL (and an autoscaler on the Deployment may "
        "move its replicas back); here the fault part only",
    )
    return rep


CLUSTER_KINDS: dict[str, Callable[[ClusterContext], Repetition]] = {
    "failover": _failover,
    "stream-crash": _stream_crash,
    "serving-worker": _serving_worker,
    "scaling": _scaling,
}
"""The drill kinds that run on a cluster, and the function running one repetition of each."""


def run_cluster_drill(
    scenario: Scenario,
    runs_dir: Path,
    target: ClusterTarget,
    repeat: int = 1,
    progress: Callable[[str], None] | None = None,
) -> DrillResult:
    """Run ``scenario`` ``repeat`` times against the cluster and judge it, as
    :func:`dataplat.dr.runner.run_drill` does locally; the run folder is ``runs_dir/<ident>``.

    Never raises for a drill that ran: a repetition that could not finish is recorded
    (exit code 2) and stops the run; the report is written in every case.
    """
    if repeat < 1:
        raise DrillError(f"--repeat must be >= 1, got {repeat}")
    ident = new_ident(scenario)
    run_dir = runs_dir / ident
    run_dir.mkdir(parents=True, exist_ok=True)
    result = DrillResult(scenario, ident, run_dir, time.time(), target=target.to_dict(scenario.kind))
    lock = threading.Lock()
    log_file = (run_dir / "drill.log").open("a")

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        with lock:
            log_file.write(line + "\n")
            log_file.flush()
        if progress:
            progress(line)

    started = time.monotonic()
    try:
        run_one = CLUSTER_KINDS.get(scenario.kind)
        if run_one is None:
            raise DrillError(
                f"drills of kind {scenario.kind} run on the local platform only; on --target k8s: "
                + ", ".join(CLUSTER_KINDS)
            )
        log(f"cluster {target.cluster.host}, namespace {target.namespace}; {result.target['measured']}")
        run_repetitions(
            result,
            repeat,
            lambda i, rep_dir: run_one(ClusterContext(scenario, target, i, rep_dir, log)),
            log,
            expected=(DataplatError, OSError, psycopg.Error),
            where=" on the cluster",
        )
        _judge(result)
        _explain_unmeasured(result)
        if scenario.kind == "failover":
            from dataplat.dr.failover import summarize

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


def _explain_unmeasured(result: DrillResult) -> None:
    """Targets on metrics the cluster drill could not measure say why in their verdict."""
    reasons: dict[str, str] = {}
    for rep in result.repetitions:
        reasons.update(rep.info.get("not_measured") or {})
    for v in result.verdicts:
        if v.value is None:
            why = reasons.get(v.metric, "not measured on this run")
            v.detail = f"not measured on target k8s: {why}"


def resolve_target(flag: str | None, scenario: Scenario) -> str:
    """``--target`` > the scenario's ``target:`` > ``DATAPLAT_TARGET`` > ``local``."""
    from dataplat.dr.scenario import TARGETS

    target = flag or scenario.target or os.environ.get("DATAPLAT_TARGET") or "local"
    if target not in TARGETS:
        raise ConfigError(f"DATAPLAT_TARGET={target!r} is not a target (one of: {', '.join(TARGETS)})")
    return target


def connect_target(
    scenario: Scenario,
    *,
    context: str | None = None,
    kubeconfig: str | None = None,
    namespace: str | None = None,
    warehouse_conninfo: str | None = None,
) -> ClusterTarget:
    """The cluster of a drill: flags > the scenario's ``k8s:`` section > ``KUBECONFIG`` /
    ``DATAPLAT_NAMESPACE`` > defaults, as ``dataplat up --target k8s`` resolves them."""
    from dataplat.k8s.cluster import connect

    k8s = scenario.k8s
    context = context or k8s.get("context") or None
    ns = namespace or k8s.get("namespace") or os.environ.get("DATAPLAT_NAMESPACE") or "dataplat"
    conninfo = warehouse_conninfo or k8s.get("warehouse_conninfo") or ""
    if conninfo:
        check_conninfo(conninfo)
    cluster = connect(context, kubeconfig or k8s.get("kubeconfig") or None)
    return ClusterTarget(cluster, str(ns), context, conninfo, dict(k8s))
