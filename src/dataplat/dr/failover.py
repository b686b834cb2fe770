"""The ``failover`` drill: the warehouse primary is lost under the ledger workload.

One repetition: wait for a healthy cluster (leader + streaming synchronous standby),
start the ledger, inject the fault on whoever leads now (so the next repetition fails
back), let Patroni fail over, and measure:

(``host-loss`` on a platform with one member per host kills every dataplat daemon of the
primary's host and starts them all again once the new leader is seen; the repetition
records ``old_leader_host``, ``new_leader_host`` and ``lost_host``.)

* RTO: fault -> first acknowledged commit on the new primary (client clock);
* RPO: acknowledged transfers missing on the new primary (must be 0), in-doubt commits
  (connection lost during COMMIT) reported apart;
* the balance invariant (total and per account against the transfers);
* fencing: a prober writes to the old primary's own address/port directly from the fault
  until it has rejoined; it must be refused (down or read-only) every time;
* rejoin: the old primary back as a streaming standby (pg_rewind when needed) and a
  synchronous standby in place again (the old primary itself with two members), seen in
  Patroni's ``/cluster``, ``pg_stat_replication`` and ``dataplat status``.

``summarize`` places the measured RTO/RPO in GB/T 20988-2007's capability levels.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg import sql

from dataplat.dr import faults
from dataplat.dr.context import DrillContext, DrillError, poll
from dataplat.dr.results import DrillResult, Repetition
from dataplat.dr.workload import LedgerWorkload
from dataplat.platform import endpoints
from dataplat.platform.endpoints import Platform
from dataplat.platform.warehouse import patroni_cluster

# GB/T 20988-2007 (信息安全技术 信息系统灾难恢复规范), appendix A: capability levels and the
# RTO / RPO they go with. Read as bands, checked from level 6 down; "数分钟" (minutes) is
# read as <= 30 min, "数小时" (hours) as <= 24 h. An indication only: a level also asks
# for backup sites, staff and procedures no drill measures.
#   level | RTO                    | RPO
#   6     | minutes                | 0
#   5     | minutes to 2 days      | 0 to 30 minutes
#   4     | hours to 2 days        | hours to 1 day
#   3     | 12 hours or more       | hours to 1 day
#   2     | 24 hours or more       | 1 to 7 days
#   1     | 2 days or more         | 1 to 7 days
GBT20988_LEVELS: tuple[tuple[int, float, float, str], ...] = (
    # (level, max RTO s, max RPO s, wording)
    (6, 30 * 60, 0, "RTO minutes, RPO 0"),
    (5, 2 * 86400, 30 * 60, "RTO minutes to 2 days, RPO 0-30 min"),
    (4, 2 * 86400, 86400, "RTO hours to 2 days, RPO hours to 1 day"),
    (3, float("inf"), 86400, "RTO >= 12 h, RPO hours to 1 day"),
    (2, float("inf"), 7 * 86400, "RTO >= 24 h, RPO 1-7 days"),
    (1, float("inf"), 7 * 86400, "RTO >= 2 days, RPO 1-7 days"),
)


def gbt20988_level(rto_s: float | None, rpo_s: float | None) -> dict[str, Any]:
    """The highest GB/T 20988-2007 level whose RTO and RPO bands hold the measured values."""
    if rto_s is None or rpo_s is None:
        return {"level": None, "note": "not measured"}
    for level, max_rto, max_rpo, wording in GBT20988_LEVELS:
        if rto_s <= max_rto and rpo_s <= max_rpo:
            return {
                "level": level,
                "bands": wording,
                "rto_s": rto_s,
                "rpo_s": rpo_s,
                "note": "indication only: levels also require sites, staff and procedures",
            }
    return {"level": 0, "note": "below level 1", "rto_s": rto_s, "rpo_s": rpo_s}


def _members(platform: Platform) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in platform.by_component("warehouse")}


def _cluster(platform: Platform) -> dict[str, Any]:
    return patroni_cluster(endpoints.patroni_urls(platform), timeout=1.0)


def healthy_cluster(platform: Platform) -> tuple[str, str] | None:
    """(leader, sync standby) when Patroni shows a running leader and a streaming sync standby."""
    members = _cluster(platform).get("members", [])
    leaders = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
    syncs = [m for m in members if m.get("role") == "sync_standby" and m.get("state") == "streaming"]
    if len(leaders) == 1 and syncs:
        return leaders[0]["name"], syncs[0]["name"]
    return None


def patroni_config(platform: Platform) -> dict[str, Any]:
    """Patroni's dynamic configuration (``GET /config``): ttl, loop_wait, retry_timeout ..."""
    last: Exception | None = None
    for url in endpoints.patroni_urls(platform):
        try:
            with urllib.request.urlopen(f"{url}/config", timeout=2) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError) as exc:
            last = exc
    raise DrillError(f"no Patroni member answered GET /config: {last}")


def target_variables(platform: Platform) -> dict[str, float]:
    """Values targets may use (``ttl + 5``): Patroni's ttl, loop_wait, retry_timeout."""
    cfg = patroni_config(platform)
    return {k: float(cfg[k]) for k in ("ttl", "loop_wait", "retry_timeout") if k in cfg}


@dataclass(frozen=True)
class Probe:
    """One attempt to write to the old primary directly."""

    t: float
    result: str  # down | read-only | error | ACCEPTED
    detail: str


class FenceProber:
    """Writes to one member's own address/port, bypassing target_session_attrs, until stopped.

    ``synchronous_commit = local``: a server that is writable at all acknowledges at once,
    so a split brain cannot hide behind a commit waiting for a standby.
    """

    def __init__(self, conninfo: str, schema: str) -> None:
        self.conninfo = conninfo
        self.schema = schema
        self.probes: list[Probe] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fence-prober", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[Probe]:
        self._stop.set()
        self._thread.join(10)
        return list(self.probes)

    def probe_once(self) -> Probe:
        """Try one write; classify the answer."""
        t = time.time()
        try:
            with psycopg.connect(self.conninfo, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SET synchronous_commit TO local")
                conn.execute("SET statement_timeout TO 2000")
                conn.execute(
                    sql.SQL("INSERT INTO {} (probe) VALUES (%s)").format(
                        sql.Identifier(self.schema, "ledger_fence")
                    ),
                    (f"fence-{t:.3f}",),
                )
                return Probe(t, "ACCEPTED", f"{conn.info.host}:{conn.info.port} committed a write")
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            return Probe(t, "read-only", str(exc).strip()[:120])
        except psycopg.OperationalError as exc:
            return Probe(t, "down", str(exc).strip().splitlines()[0][:120] if str(exc).strip() else "down")
        except psycopg.Error as exc:
            return Probe(t, "error", f"{type(exc).__name__}: {str(exc).strip()[:120]}")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.probes.append(self.probe_once())
            self._stop.wait(0.1)


def _where(member: dict[str, Any]) -> str:
    """``host (address)`` of a warehouse member."""
    return f"{member['host']} ({member['address']})"


def _first_commit_on(workload: LedgerWorkload, server: str, after: float) -> float | None:
    for a in workload.snapshot():
        if a.outcome == "acked" and a.server == server and a.t_end > after:
            return a.t_end
    return None


def _rejoined(platform: Platform, old: str, new: str) -> dict[str, Any] | None:
    """The old primary streams from the new leader on its timeline, and the new leader
    has a synchronous standby again (the old primary itself when there are two members;
    with more, another member may hold that role and the old primary streams async)."""
    members = {m["name"]: m for m in _cluster(platform).get("members", [])}
    o, n = members.get(old, {}), members.get(new, {})
    if not (
        n.get("role") == "leader"
        and o.get("role") in ("sync_standby", "replica")
        and o.get("state") == "streaming"
    ):
        return None
    if o.get("timeline") != n.get("timeline"):
        return None
    inst = _members(platform)[new]
    with psycopg.connect(endpoints.conninfo(platform, [inst], read_write=False), connect_timeout=2) as conn:
        rows: dict[str, str] = dict(
            conn.execute("SELECT application_name, sync_state FROM pg_stat_replication").fetchall()
        )
    sync = sorted(name for name, state in rows.items() if state == "sync")
    if old not in rows or not sync:
        return None
    return {"timeline": n.get("timeline"), "sync_state": rows[old], "sync_standbys": sync}


def run_repetition(ctx: DrillContext) -> Repetition:
    """One failover: fault, measurements, rejoin, checks."""
    sc, platform = ctx.scenario, ctx.platform
    w = sc.workload
    rep = Repetition(ctx.index)
    members = _members(platform)
    if len(members) < 2:
        raise DrillError("the failover drill needs at least two warehouse members")
    old, standby = poll(
        lambda: healthy_cluster(platform),
        ctx.timeout("healthy_s"),
        "a leader and a streaming synchronous standby before the fault",
    )
    rep.info.update(
        old_leader=old,
        old_leader_host=members[old]["host"],
        expected_candidate=standby,
        patroni=patroni_config(platform),
    )
    ctx.log(
        f"leader {old} on {_where(members[old])}, sync standby {standby} on {_where(members[standby])}; "
        f"fault {sc.fault_type}"
    )
    servers = {f"{m['address']}:{m['ports']['pg']}": n for n, m in members.items()}

    workload = LedgerWorkload(
        endpoints.conninfo(platform, list(members.values())),
        clients=int(w["clients"]),
        accounts=int(w["accounts"]),
        initial_balance=int(w["initial_balance"]),
        schema=str(w["schema"]),
        seed=ctx.index + 1,
    )
    workload.prepare()
    lost = faults.lost_host(platform, old) if sc.fault_type == "host-loss" else None
    # how to start the lost host's daemons again, read while they still run
    recipes = [faults.daemon_recipe(platform, name) for name in lost.daemons] if lost else []
    prober = FenceProber(endpoints.conninfo(platform, [members[old]], read_write=False), str(w["schema"]))
    stuck: list[str] = []
    t_rejoined: float | None = None
    new: str | None = None
    try:
        workload.start()
        rep.event("load starts", time.time())
        poll(lambda: any(a.outcome == "acked" for a in workload.snapshot()), 30, "the first ledger commit")
        time.sleep(float(w["before_s"]))  # steady load before the fault, by design

        if sc.fault_type == "postmaster-kill":
            injected = faults.kill_postmaster(platform, old)
        elif lost is not None and lost.whole_host:
            injected = faults.whole_host_loss(platform, lost)
        elif sc.fault_type == "host-loss":
            injected = faults.host_loss(platform, old)
        else:
            injected = faults.switchover(platform, old, standby)
        prober.start()
        t_fault = injected.t
        rep.t_fault = t_fault
        rep.event(f"fault: {injected.kind} on {old} ({members[old]['host']})", t_fault)
        rep.info["fault"] = asdict(injected)
        if lost is not None:
            rep.info["lost_host"] = asdict(lost)
        ctx.log(f"fault injected: {injected.detail}")

        def new_leader() -> str | None:
            for m in _cluster(platform).get("members", []):
                if m.get("role") == "leader" and m.get("state") == "running" and m["name"] != old:
                    return str(m["name"])
            return None

        new = poll(new_leader, ctx.timeout("failover_s"), f"a new leader other than {old}")
        t_promoted = time.time()
        rep.event(f"new leader {new} seen (Patroni) on {members[new]['host']}", t_promoted)
        rep.info["new_leader"] = new
        rep.info["new_leader_host"] = members[new]["host"]
        if recipes:
            delay = float(sc.fault["restart_delay_s"])
            if delay:
                time.sleep(delay)  # the lost host stays away this long, by design
            for recipe in recipes:
                faults.restart_daemon(platform, recipe)
            what = ", ".join(r.name for r in recipes)
            rep.event(f"host {members[old]['host']} back: {what} started again", time.time())
        new_server = f"{members[new]['address']}:{members[new]['ports']['pg']}"
        t_first = poll(
            lambda: _first_commit_on(workload, new_server, t_fault),
            ctx.timeout("failover_s"),
            f"the first commit on the new primary {new}",
        )
        rep.event(f"first commit on {new}", t_first)
        rep.metrics["rto_s"] = round(t_first - t_fault, 3)
        ctx.log(
            f"new leader {new} on {_where(members[new])}; "
            f"first commit {t_first - t_fault:.2f} s after the fault"
        )
        try:
            rejoin = poll(
                lambda: _rejoined(platform, old, new),
                ctx.timeout("rejoin_s"),
                f"{old} to rejoin as a streaming standby with synchronous replication restored",
            )
            t_rejoined = time.time()
            rep.event(f"{old} rejoined as {rejoin['sync_state']} standby", t_rejoined)
            rep.metrics["rejoin_s"] = round(t_rejoined - t_fault, 3)
            rep.info["rejoin"] = rejoin
        except DrillError as exc:
            rep.info["rejoin_error"] = str(exc)
        time.sleep(float(w["after_s"]))  # steady load after recovery, by design
    finally:
        probes = prober.stop() if prober._thread.is_alive() else list(prober.probes)
        stuck = workload.stop()
        rep.event("load stops", time.time())
        workload.dump(ctx.rep_dir / "attempts.jsonl")
        (ctx.rep_dir / "fence.jsonl").write_text("".join(json.dumps(asdict(p)) + "\n" for p in probes))
        for recipe in recipes:
            if not faults.daemon.read_state(recipe.name, platform.run_dir).running:
                faults.restart_daemon(platform, recipe)  # never leave the lost host down

    attempts = workload.snapshot()
    for name in servers.values():
        rep.series[f"commits on {name}"] = [
            a.t_end for a in attempts if a.outcome == "acked" and servers.get(a.server or "") == name
        ]
    rep.series["failed / in doubt"] = [a.t_end for a in attempts if a.outcome != "acked"]
    state: dict[str, Any] = {"workload": workload, "new_leader": new, "old_leader": old, "probes": probes}
    ctx.before_checks(state)
    _checks(ctx, rep, workload, old, new, probes, stuck, t_rejoined)
    return rep


def record_rpo(
    rep: Repetition,
    checks: Collection[str],
    acked: Mapping[str, Any],
    in_doubt: int,
    failed: int,
    present: set[str],
    stuck: list[str],
    where: str,
) -> list[str]:
    """RPO of the ledger workload: the acknowledged transfers (``acked``, by id, each with its
    ``t_end``) missing from the rows ``present`` after the failover, as commits and as seconds
    before the fault; the counts; the ``rpo`` check when the scenario asks for it. The ids lost."""
    lost = sorted(set(acked) - present)
    t_fault = rep.t_fault or 0.0
    rep.metrics["rpo_commits"] = len(lost)
    rpo_s = max((t_fault - acked[i].t_end for i in lost), default=0.0)
    rep.metrics["rpo_s"] = round(max(rpo_s, 0.0), 3)
    rep.info["counts"] = {
        "acked": len(acked),
        "in_doubt": in_doubt,
        "failed": failed,
        "rows_present": len(present),
        "stuck_clients": stuck,
    }
    if "rpo" in checks:
        rep.check(
            "rpo",
            not lost,
            f"{len(lost)} of {len(acked)} acknowledged transfers missing {where}"
            + (f": {', '.join(lost[:10])}" if lost else ""),
            lost=lost[:100],
        )
    return lost


def _checks(
    ctx: DrillContext,
    rep: Repetition,
    workload: LedgerWorkload,
    old: str,
    new: str,
    probes: list[Probe],
    stuck: list[str],
    t_rejoined: float | None,
) -> None:
    platform, sc = ctx.platform, ctx.scenario
    attempts = workload.snapshot()
    acked = {a.id: a for a in attempts if a.outcome == "acked"}
    in_doubt = {a.id: a for a in attempts if a.outcome == "in_doubt"}
    failed = {a.id: a for a in attempts if a.outcome == "failed"}
    inst = _members(platform)[new]
    with psycopg.connect(endpoints.conninfo(platform, [inst], read_write=False)) as conn:
        present = {r[0] for r in conn.execute(sql.SQL("SELECT id FROM {}").format(workload.transfers_table))}
        total, naccts = conn.execute(
            sql.SQL("SELECT coalesce(sum(balance), 0), count(*) FROM {}").format(workload.accounts_table)
        ).fetchone()  # type: ignore[misc]
        mismatched = conn.execute(
            sql.SQL(
                "SELECT a.id, a.balance, %s - coalesce(o.s, 0) + coalesce(i.s, 0) FROM {acc} a "
                "LEFT JOIN (SELECT src, sum(amount) s FROM {tr} GROUP BY src) o ON o.src = a.id "
                "LEFT JOIN (SELECT dst, sum(amount) s FROM {tr} GROUP BY dst) i ON i.dst = a.id "
                "WHERE a.balance <> %s - coalesce(o.s, 0) + coalesce(i.s, 0) ORDER BY a.id LIMIT 10"
            ).format(acc=workload.accounts_table, tr=workload.transfers_table),
            (workload.initial_balance, workload.initial_balance),
        ).fetchall()
    record_rpo(rep, sc.checks, acked, len(in_doubt), len(failed), present, stuck, f"on {new}")
    t_fault = rep.t_fault or 0.0
    if "invariant" in sc.checks:
        expected = workload.initial_balance * workload.accounts
        ok = total == expected and naccts == workload.accounts and not mismatched
        rep.check(
            "invariant",
            ok,
            f"total balance {total} (expected {expected}) over {naccts} accounts; "
            f"{len(mismatched)} account(s) disagree with the transfers",
            mismatched=[list(m) for m in mismatched],
        )
    if "in_doubt" in sc.checks:
        committed = sorted(i for i in in_doubt if i in present)
        phantom = sorted(i for i in failed if i in present)
        rep.check(
            "in_doubt",
            not phantom,
            f"{len(in_doubt)} in-doubt commits ({len(committed)} did commit, "
            f"{len(in_doubt) - len(committed)} did not; none counted as lost); "
            f"{len(phantom)} failed-before-COMMIT transfers present",
            in_doubt_committed=committed,
            phantom=phantom[:20],
        )
    if "fencing" in sc.checks:
        window_start = t_fault if sc.fault_type != "switchover" else _promotion_seen(rep)
        judged = [p for p in probes if p.t >= window_start]
        accepted = [p for p in judged if p.result == "ACCEPTED"]
        counts: dict[str, int] = {}
        for p in judged:
            counts[p.result] = counts.get(p.result, 0) + 1
        ok = bool(judged) and not accepted
        rep.check(
            "fencing",
            ok,
            f"{len(judged)} direct writes to the old primary {old} after the "
            f"{'fault' if sc.fault_type != 'switchover' else 'promotion'}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            + ("" if judged else " (no probe ran: cannot judge)"),
            counts=counts,
            accepted=[asdict(p) for p in accepted[:10]],
        )
    if "rejoin" in sc.checks:
        rep.check(
            "rejoin",
            t_rejoined is not None,
            f"{old} rejoined, sync replication restored, {rep.metrics.get('rejoin_s')} s after the fault"
            if t_rejoined
            else rep.info.get("rejoin_error", "did not rejoin"),
        )
    if "status" in sc.checks:
        from dataplat.platform.status import platform_status

        doc = platform_status(platform.home).to_dict()
        wh = doc["warehouse"]
        m = {x["name"]: x for x in wh.get("members", [])}
        sync = sorted(name for name, x in m.items() if x.get("sync_state") == "sync")
        ok = wh.get("leader") == new and m.get(old, {}).get("state") == "streaming" and bool(sync)
        rep.check(
            "status",
            ok,
            f"dataplat status: leader {wh.get('leader')}, {old} "
            f"{m.get(old, {}).get('role')}/{m.get(old, {}).get('state')} sync_state "
            f"{m.get(old, {}).get('sync_state')}; synchronous standby(s): {', '.join(sync) or 'none'}",
        )


def _promotion_seen(rep: Repetition) -> float:
    return next((e.t for e in rep.events if e.label.startswith("new leader")), rep.t_fault or 0.0)


def summarize(result: DrillResult) -> dict[str, Any]:
    """GB/T 20988-2007 level of the worst repetition (max RTO, max RPO)."""
    rtos = [r.metrics.get("rto_s") for r in result.repetitions if r.metrics.get("rto_s") is not None]
    rpos = [r.metrics.get("rpo_s") for r in result.repetitions if r.metrics.get("rpo_s") is not None]
    worst_rto = max(rtos) if rtos else None  # type: ignore[type-var]
    worst_rpo = max(rpos) if rpos else None  # type: ignore[type-var]
    return {
        "gbt20988_2007": gbt20988_level(worst_rto, worst_rpo),
        "gbt20988_table": [
            {"level": lv, "max_rto_s": None if r == float("inf") else r, "max_rpo_s": p, "bands": wtxt}
            for lv, r, p, wtxt in GBT20988_LEVELS
        ],
    }
