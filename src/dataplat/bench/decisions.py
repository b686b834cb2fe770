"""The ``decisions`` suite: the real-time decision service under a Locust step load.

Three measurements, all against the deployed platform:

1. **HTTP, step load** — ``bench/locust/decisions.py`` (FastHttpUser, one Locust process
   per core, a ``LoadTestShape`` stepping through ``--steps`` users for ``--duration``
   seconds each) against the decision service (component ``decision``, port ``http``);
   per step p50/p95/p99, throughput, error rate and degraded answers
   (:mod:`dataplat.bench.locustrun`).
2. **The same load against a bare ASGI endpoint** answering a constant decision
   (``bench/decision_latency.py --serve-constant``: uvicorn, httptools, the same worker
   count and socket settings as the service), started for the run on a free port. The
   best step of each is its *saturation throughput*; their ratio is
   ``saturation_ratio_vs_bare``. Then one paced step at **half the service's saturation**
   (``constant_throughput``, the largest step's users) gives ``half_saturation_p99_ms``.
3. **The stream path** — events with ``published_at`` published to JetStream
   (``bank.events.<type>``, stream EVENTS), decisions read back from DECISIONS with an
   ordered consumer delivering only new messages: end-to-end latency as
   ``decided_at - published_at`` and ``received - published_at`` (after 5 warm-up events,
   not counted: the service's first fetch after a start can take seconds).

Metrics for SLO targets (``decisions.METRIC OP NUMBER [at concurrency USERS]``)::

    per step (every step, or the one ``at concurrency N`` names, N = users):
        p50_ms p95_ms p99_ms p999_ms max_ms rps error_rate degraded_rate
    whole run:
        saturation_rps bare_saturation_rps saturation_ratio_vs_bare
        half_saturation_p99_ms half_saturation_rps error_rate (without "at": the whole run)
        e2e_p50_ms e2e_p95_ms e2e_p99_ms e2e_max_ms   (received - published_at)
        e2e_decided_p50_ms e2e_decided_p99_ms         (decided_at - published_at)
        e2e_lost                                      (events without a decision in time)

The goal of the design (reported, judged through the SLO file, never asserted here): at
half of saturation p99 <= 20 ms, and saturation >= 40% of the bare endpoint's.
Invariants (``failures``): the Locust runs finished and made requests.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataplat.bench.context import BENCH_DIR, BenchContext, BenchError
from dataplat.bench.cpu import CpuMeter
from dataplat.bench.locustrun import LoadgenHost, LocustResult, LocustRun, platform_workers, run_locust
from dataplat.bench.svg import bar_chart, line_chart
from dataplat.platform import endpoints

if TYPE_CHECKING:  # pragma: no cover - typing only
    from dataplat.bench.slo import Target

LOCUSTFILE = BENCH_DIR / "locust" / "decisions.py"
CONSTANT_SERVER = BENCH_DIR / "decision_latency.py"
DECISION_WORKERS = 2
"""Worker processes of the bare endpoint: the decision service's (roles/decision: decision_workers)."""
EVENT_TYPES = ("payroll_credited", "large_inflow", "product_maturity", "transfer_out_other_bank", "app_login")
STEP_METRICS = ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "rps", "error_rate", "degraded_rate")
RUN_METRICS = (
    "saturation_rps",
    "bare_saturation_rps",
    "saturation_ratio_vs_bare",
    "half_saturation_p99_ms",
    "half_saturation_rps",
    "error_rate",
    "e2e_p50_ms",
    "e2e_p95_ms",
    "e2e_p99_ms",
    "e2e_max_ms",
    "e2e_decided_p50_ms",
    "e2e_decided_p99_ms",
    "e2e_lost",
)
METRICS = f"per step: {', '.join(STEP_METRICS)}; whole run: {', '.join(RUN_METRICS)}"
DEGRADED_NAME = "decision (degraded)"
E2E_EVENTS = 200
E2E_RATE = 50.0
"""Events per second published for the stream path (well below saturation: latency, not queueing)."""


# --- where things are ----------------------------------------------------------------------


def decision_url(home: Path) -> str:
    """The first decision service instance's base URL; :class:`BenchError` when none is deployed."""
    platform = endpoints.load_platform(home)
    found = platform.by_component("decision")
    if not found:
        raise BenchError(f"no decision service is deployed under {home} (component 'decision')")
    inst = found[0]
    return f"http://{inst['address']}:{inst['ports']['http']}"


def customer_range(conninfo: str, schema: str = "bank") -> tuple[int, int]:
    """(min, max) customer id; :class:`BenchError` when there are no customers."""
    import psycopg

    from dataplat.data.schema import quote_ident

    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            f"SELECT min(customer_id), max(customer_id) FROM {quote_ident(schema)}.customers"  # type: ignore[arg-type]
        ).fetchone()
    if not row or row[0] is None:
        raise BenchError(
            f"{schema}.customers is empty: load a data set first (dataplat data load --sf 0.002)"
        )
    return int(row[0]), int(row[1])


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 30.0) -> None:
    """Wait until ``url`` answers 200; :class:`BenchError` when it does not in time or ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise BenchError(f"{url} did not answer 200 within {timeout_s:.0f} s")


class BareEndpoint:
    """The constant-decision ASGI endpoint of ``bench/decision_latency.py`` on a free port."""

    def __init__(self, log: Path, workers: int = DECISION_WORKERS) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BareEndpoint:
        argv = [sys.executable, str(CONSTANT_SERVER), "--serve-constant", f"127.0.0.1:{self.port}"]
        argv += ["--workers", str(self.workers)]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(self.url + "/", self.proc)
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def pid(self) -> int | None:
        """The server's pid (its workers are its children)."""
        return self.proc.pid if self.proc is not None else None

    def __exit__(self, *_exc: object) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


# --- the HTTP step load ------------------------------------------------------------------


def step_load(
    host: str,
    steps: list[int],
    step_s: float,
    out_dir: Path,
    name: str,
    customers: tuple[int, int],
    processes: int | None = None,
    rate: float | None = None,
    workers: Sequence[LoadgenHost] = (),
) -> LocustResult:
    """The locustfile's step load against ``host`` (paced at ``rate`` req/s when given)."""
    env = {"DATAPLAT_CUSTOMER_MIN": str(customers[0]), "DATAPLAT_CUSTOMER_MAX": str(customers[1])}
    env["DATAPLAT_MAX_ERROR_RATE"] = "1"  # judged through the SLO, not the process
    if rate is not None:
        env["DATAPLAT_RATE"] = f"{rate:.3f}"
    spec = LocustRun(LOCUSTFILE, host, steps, step_s, out_dir, name=name, processes=processes, env=env)
    if workers:  # several loadgen hosts: a master here, workers on each of them
        spec.workers, spec.master_address = workers, workers[0].address
    return run_locust(spec)


def _cpu_line(cpu: dict[str, Any]) -> str:
    """``decision 0.41, loadgen 0.22, ...`` (CPU ms per request by group)."""
    return ", ".join(
        f"{name} {g['cpu_ms_per_request']:.3f}"
        for name, g in cpu["groups"].items()
        if g.get("cpu_ms_per_request") is not None
    )


def _side(result: LocustResult) -> dict[str, Any]:
    """A Locust run as a section part, with degraded answers per step."""
    doc = result.to_dict()
    for step in doc["steps"]:
        degraded = (step.get("by_name") or {}).get(DEGRADED_NAME, {}).get("requests", 0)
        step["degraded"] = degraded
        step["degraded_rate"] = round(degraded / step["requests"], 6) if step["requests"] else None
    return doc


# --- the stream path ---------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


async def _stream_e2e(
    servers: list[str], n: int, rate: float, customers: tuple[int, int], timeout_s: float
) -> dict[str, Any]:
    import nats
    from nats.js.api import DeliverPolicy

    nc = await nats.connect(servers=servers, connect_timeout=5, max_reconnect_attempts=2)
    try:
        js = nc.jetstream()
        run = uuid.uuid4().hex[:12]
        ids: dict[str, float] = {}
        got: dict[str, tuple[float, float]] = {}
        done = asyncio.Event()

        async def on_decision(msg: Any) -> None:
            received = time.time()
            try:
                doc = json.loads(msg.data)
            except ValueError:
                return
            eid = doc.get("event_id")
            if eid in ids and eid not in got:
                published = float(doc.get("event_published_at") or ids[eid])
                decided = float(doc.get("decided_at") or received)
                got[eid] = (decided - published, received - published)
                if len(got) >= n:
                    done.set()

        sub = await js.subscribe(
            "bank.decisions.>",
            stream="DECISIONS",
            cb=on_decision,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        rng = random.Random(n)
        interval = 1.0 / rate
        start = time.perf_counter()
        for i in range(n):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            etype = rng.choice(EVENT_TYPES)
            doc: dict[str, Any] = {
                "event_id": f"bench-e2e-{run}-{i}",
                "type": etype,
                "customer_id": rng.randint(*customers),
            }
            if etype != "app_login":
                doc["amount"] = round(rng.choice((8_000, 60_000, 300_000)) * (0.2 + rng.random()), 2)
            doc["published_at"] = time.time()
            ids[doc["event_id"]] = doc["published_at"]
            await js.publish(f"bank.events.{etype}", json.dumps(doc).encode(), stream="EVENTS")
        try:
            await asyncio.wait_for(done.wait(), timeout_s)
        except TimeoutError:
            pass
        await sub.unsubscribe()
    finally:
        await nc.close()
    decided = [v[0] * 1e3 for v in got.values()]
    received = [v[1] * 1e3 for v in got.values()]

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "events": n,
        "rate": rate,
        "decided": len(got),
        "lost": n - len(got),
        "received_ms": {f"p{q}_ms": r(_pct(received, q)) for q in (50, 95, 99)}
        | {"max_ms": r(max(received, default=None))},
        "decided_ms": {f"p{q}_ms": r(_pct(decided, q)) for q in (50, 95, 99)}
        | {"max_ms": r(max(decided, default=None))},
    }


def stream_e2e(
    home: Path,
    n: int = E2E_EVENTS,
    rate: float = E2E_RATE,
    customers: tuple[int, int] = (1, 1000),
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Publish ``n`` events at ``rate``/s to JetStream and time their decisions on DECISIONS."""
    servers = endpoints.nats_servers(endpoints.load_platform(home))
    if not servers:
        raise BenchError(f"no NATS server is deployed under {home}")
    return asyncio.run(_stream_e2e(servers, n, rate, customers, timeout_s))


# --- the suite protocol (see dataplat.bench.suites.SuiteModule) -------------------------


def run(ctx: BenchContext, processes: int | None = None, e2e_events: int = E2E_EVENTS) -> dict[str, Any]:
    """Step load on the service and on the bare endpoint, half-saturation step, stream path."""
    s = ctx.settings
    if s.sfs:
        ctx.ensure_sf(s.sfs[-1])
    url = decision_url(ctx.home)
    wait_http(url + "/readyz", timeout_s=30)
    customers = customer_range(ctx.conninfo(), s.bank_schema)
    steps = list(s.steps)
    raw = ctx.raw_dir / "decisions"
    raw.mkdir(parents=True, exist_ok=True)
    procs = processes if processes is not None else (os.cpu_count() or 1)
    section: dict[str, Any] = {
        "url": url,
        "steps_users": steps,
        "step_s": s.duration_s,
        "processes": procs,
        "loadgen_hosts": [w.name for w in platform_workers(ctx.home)],
        "customers": list(customers),
        "locustfile": str(LOCUSTFILE),
        "client": "Locust FastHttpUser, closed loop without wait, one process per core",
    }
    ctx.log(f"decisions: {url}, steps {steps} users x {s.duration_s:g} s, {procs} Locust process(es)")
    loadgen = platform_workers(ctx.home)
    meter = CpuMeter.for_platform(ctx.home)
    meter.start()
    service = step_load(url, steps, s.duration_s, raw, "service", customers, procs, workers=loadgen)
    meter.stop()
    section["service"] = _side(service)
    section["service"]["cpu"] = meter.report(service.total.get("requests"))
    ctx.log(f"decisions: service saturation {service.saturation_rps:.0f} req/s")
    ctx.log("decisions: CPU ms per request " + _cpu_line(section["service"]["cpu"]))

    with BareEndpoint(raw / "bare-server.log") as bare:
        ctx.log(f"decisions: bare endpoint {bare.url}, same steps")
        meter = CpuMeter({"bare endpoint": [bare.pid]} if bare.pid else {})
        meter.start()
        bare_result = step_load(bare.url, steps, s.duration_s, raw, "bare", customers, procs)
        meter.stop()
    section["bare"] = _side(bare_result)
    section["bare"]["workers"] = DECISION_WORKERS
    section["bare"]["cpu"] = meter.report(bare_result.total.get("requests"))
    sat, bare_sat = service.saturation_rps, bare_result.saturation_rps
    section["saturation_rps"] = round(sat, 2)
    section["bare_saturation_rps"] = round(bare_sat, 2)
    section["saturation_ratio_vs_bare"] = round(sat / bare_sat, 4) if sat and bare_sat else None
    ctx.log(f"decisions: bare saturation {bare_sat:.0f} req/s, ratio {section['saturation_ratio_vs_bare']}")

    if sat:
        rate = sat / 2
        ctx.log(f"decisions: paced at half saturation, {rate:.0f} req/s, {max(steps)} users")
        half = step_load(url, [max(steps)], s.duration_s, raw, "half", customers, procs, rate=rate)
        section["half"] = _side(half) | {"rate": round(rate, 2)}
    else:
        section["half"] = None

    ctx.log(f"decisions: stream path, {e2e_events} events at {E2E_RATE:g}/s")
    stream_e2e(ctx.home, 5, E2E_RATE, customers, timeout_s=20)  # warm-up: the consumer's first fetch
    section["stream"] = stream_e2e(ctx.home, e2e_events, E2E_RATE, customers)
    e2e = section["stream"]["received_ms"]
    lost = section["stream"]["lost"]
    ctx.log(f"decisions: stream e2e p50 {e2e['p50_ms']} ms p99 {e2e['p99_ms']} ms, lost {lost}")
    (raw / "stream.json").write_text(json.dumps(section["stream"], indent=2))
    return section


def check_metric(metric: str, target: Target, workload_dir: Path) -> str | None:
    """What is wrong with a decisions target's metric (None when it is fine)."""
    if target.engine is not None:
        return "'on ENGINE' applies to batch targets only"
    if metric in STEP_METRICS:
        return None
    if metric in RUN_METRICS:
        if target.concurrency is not None:
            return f"{metric!r} is a whole-run metric: drop 'at concurrency'"
        return None
    return f"unknown metric {metric!r} (known: {METRICS})"


def _run_value(section: dict[str, Any], metric: str) -> float | None:
    if metric in ("saturation_rps", "bare_saturation_rps", "saturation_ratio_vs_bare"):
        return section.get(metric)
    if metric.startswith("half_saturation_"):
        half = section.get("half") or {}
        total = half.get("total") or {}
        return total.get("p99_ms") if metric.endswith("p99_ms") else total.get("rps")
    if metric == "error_rate":
        return ((section.get("service") or {}).get("total") or {}).get("error_rate")
    stream = section.get("stream") or {}
    if metric == "e2e_lost":
        return float(stream["lost"]) if "lost" in stream else None
    if metric.startswith("e2e_decided_"):
        return (stream.get("decided_ms") or {}).get(metric.removeprefix("e2e_decided_"))
    return (stream.get("received_ms") or {}).get(metric.removeprefix("e2e_"))


def measure(section: dict[str, Any], target: Target) -> list[tuple[str, float | None]]:
    """Per-step metrics: one value per step (or the target's step); whole-run ones: one value."""
    if target.metric in RUN_METRICS and not (target.metric == "error_rate" and target.concurrency):
        return [("run", _run_value(section, target.metric))]
    steps = (section.get("service") or {}).get("steps", [])
    if target.concurrency is not None:
        steps = [st for st in steps if st["users"] == target.concurrency]
        if not steps:
            return [(f"concurrency {target.concurrency}", None)]
    return [(f"concurrency {st['users']}", st.get(target.metric)) for st in steps]


def failures(section: dict[str, Any]) -> list[str]:
    """Locust runs that timed out or made no request."""
    out = []
    for side in ("service", "bare", "half"):
        doc = section.get(side)
        if not doc:
            continue
        if doc.get("timed_out"):
            out.append(f"decisions: the {side} Locust run was killed after its hard timeout")
        if not (doc.get("total") or {}).get("requests"):
            out.append(f"decisions: the {side} Locust run made no request")
    return out


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return html.escape(f"{value:,}" if isinstance(value, int) else str(value))


def _cpu_html(svc: dict[str, Any] | None, bare: dict[str, Any] | None) -> str:
    """Where the cores went during each step load: CPU ms per request by process group."""
    if not svc:
        return ""
    names = list(svc["groups"])
    names += [n for n in (bare or {}).get("groups", {}) if n not in names]

    def ms(doc: dict[str, Any] | None, name: str) -> float | None:
        return ((doc or {}).get("groups", {}).get(name) or {}).get("cpu_ms_per_request")

    def cores(doc: dict[str, Any] | None, name: str) -> float | None:
        return ((doc or {}).get("groups", {}).get(name) or {}).get("cores")

    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{_f(ms(svc, n), 3)}</td><td>{_f(cores(svc, n))}</td>"
        f"<td>{_f(ms(bare, n), 3)}</td><td>{_f(cores(bare, n))}</td></tr>"
        for n in names
    )
    return (
        "<h3>Where the CPU went</h3><p>Processor time of each process group over the whole step "
        f"load, per request answered ({svc.get('cores_available')} cores on this machine; "
        "<i>other</i>: busy time outside the groups).</p>"
        + bar_chart(
            "CPU milliseconds per request, by process group (lower is better)",
            names,
            {
                "decision service run": [ms(svc, n) for n in names],
                "bare endpoint run": [ms(bare, n) for n in names],
            },
            y_label="CPU ms / request",
        )
        + "<table><tr><th>group</th><th>service run: CPU ms/request</th><th>cores</th>"
        "<th>bare run: CPU ms/request</th><th>cores</th></tr>"
        + rows
        + f"<tr><td><b>total</b></td><td><b>{_f(svc.get('total_cpu_ms_per_request'), 3)}</b></td>"
        f"<td>{_f(svc.get('total_cores'))}</td><td><b>{_f((bare or {}).get('total_cpu_ms_per_request'), 3)}"
        f"</b></td><td>{_f((bare or {}).get('total_cores'))}</td></tr></table>"
    )


def render_html(section: dict[str, Any]) -> str:
    """Throughput and percentiles per step (service and bare), the ratio, the stream path."""
    svc, bare = section.get("service") or {}, section.get("bare") or {}
    steps = svc.get("steps", [])
    labels = [f"{st['users']} users" for st in steps]
    bsteps = {st["users"]: st for st in bare.get("steps", [])}
    out = [
        "<h2>Real-time decisions</h2>",
        f"<p>{html.escape(section.get('client', ''))} ({section.get('processes')} process(es)), "
        f"{section.get('step_s')} s per step, against <code>{html.escape(section.get('url', ''))}</code> "
        f"and a bare ASGI endpoint answering a constant decision ({bare.get('workers')} workers). "
        f"Customers {section.get('customers')}. Locust keeps latencies below 100 ms as whole ms.</p>",
        f"<p>Saturation: service <b>{_f(section.get('saturation_rps'))}</b> req/s, bare "
        f"{_f(section.get('bare_saturation_rps'))} req/s, ratio "
        f"<b>{_f(section.get('saturation_ratio_vs_bare'), 3)}</b> (goal ≥ 0.4).</p>",
    ]
    half = section.get("half")
    if half:
        t = half.get("total") or {}
        out.append(
            f"<p>At half saturation (paced at {_f(half.get('rate'))} req/s): achieved {_f(t.get('rps'))} "
            f"req/s, p50 {_f(t.get('p50_ms'))} ms, p99 <b>{_f(t.get('p99_ms'))}</b> ms (goal ≤ 20 ms), "
            f"error rate {_f(t.get('error_rate'), 4)}.</p>"
        )
    out.append(
        bar_chart(
            "Requests per second per step (higher is better)",
            labels,
            {
                "decision service": [st["rps"] for st in steps],
                "bare endpoint": [(bsteps.get(st["users"]) or {}).get("rps") for st in steps],
            },
            y_label="req/s",
        )
    )
    lat: dict[str, list[float | None]] = {}
    dashed: dict[str, bool] = {}
    for p in ("p50_ms", "p95_ms", "p99_ms"):
        lat[f"service {p[:-3]}"] = [st[p] for st in steps]
        lat[f"bare {p[:-3]}"] = [(bsteps.get(st["users"]) or {}).get(p) for st in steps]
        dashed[f"bare {p[:-3]}"] = True
    out.append(
        line_chart(
            "Latency percentiles per step (ms, log scale; dashed: bare endpoint)",
            labels,
            lat,
            y_label="ms",
            x_label="users",
            log=True,
            dashed=dashed,
            height=340,
        )
    )
    out.append(
        "<table><tr><th>users</th><th>req/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>"
        "<th>max ms</th><th>requests</th><th>error rate</th><th>degraded</th><th>bare req/s</th>"
        "<th>bare p99 ms</th></tr>"
    )
    for st in steps:
        b = bsteps.get(st["users"]) or {}
        out.append(
            f"<tr><td>{st['users']}</td><td>{_f(st['rps'])}</td><td>{_f(st['p50_ms'], 0)}</td>"
            f"<td>{_f(st['p95_ms'], 0)}</td><td>{_f(st['p99_ms'], 0)}</td><td>{_f(st['max_ms'], 0)}</td>"
            f"<td>{_f(st['requests'])}</td><td>{_f(st['error_rate'], 4)}</td>"
            f"<td>{_f(st.get('degraded_rate'), 4)}</td><td>{_f(b.get('rps'))}</td>"
            f"<td>{_f(b.get('p99_ms'), 0)}</td></tr>"
        )
    out.append("</table>")
    out.append(_cpu_html(svc.get("cpu"), bare.get("cpu")))
    stream = section.get("stream")
    if stream:
        rc, dc = stream["received_ms"], stream["decided_ms"]
        out.append(
            f"<h3>Stream path</h3><p>{stream['events']} events at {_f(stream['rate'], 0)}/s on "
            f"<code>bank.events.&lt;type&gt;</code>; {stream['decided']} decisions read back, "
            f"{stream['lost']} missing.</p><table><tr><th>latency</th><th>p50 ms</th><th>p95 ms</th>"
            "<th>p99 ms</th><th>max ms</th></tr>"
            + "".join(
                f"<tr><td>{name}</td>"
                + "".join(f"<td>{_f(d[k], 2)}</td>" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
                + "</tr>"
                for name, d in (("received − published_at", rc), ("decided_at − published_at", dc))
            )
            + "</table>"
        )
    return "\n".join(out)
