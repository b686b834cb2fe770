#!/usr/bin/env python3
"""Decision service latency and throughput, side by side with a bare ASGI endpoint.

Two servers run under the same settings (uvicorn, httptools, ``--workers`` processes
sharing one ``TCP_NODELAY`` socket, no access log):

* ``constant``: a bare ASGI callable that reads the body and answers a constant decision-
  sized JSON document (the ceiling of the HTTP stack on this machine);
* ``decision``: ``python -m dataplat.decision.service`` against a deployed platform
  (``--home``; load a data set first: ``dataplat data load --sf 0.002``), scoring through
  a serving pool (``--pool NAME=URL``, or one started here from a model trained on a tiny
  synthetic bank).

Each gets the same load from a minimal keep-alive HTTP/1.1 client on asyncio (one
process): closed loops at ``--levels`` concurrencies (p50/p99, throughput; every request
a new event id, a random customer and event type), then an open loop at half the best
closed-loop throughput with latency measured from the scheduled send time (no
coordinated omission). The verdict compares with the goal: at half of saturation p99 <=
``--max-p99-ms`` (20), and saturation >= ``--min-ratio`` (0.4) of the constant endpoint's.
Exit code 1 when the goal is missed.

Example::

    python bench/decision_latency.py --home ~/.local/state/dataplat --workers 2 --duration 3

The load generator shares the machine's cores with both servers, the warehouse and the
pool: on the 2-core reference machine it is part of what is measured.

Measured on the 2-core reference machine, otherwise quiet, SF 0.01 bank, the deployed CPU
pool (``--pool cpu=http://127.0.0.1:58100``), 3 s per step, ``--workers 2``; decisions
recorded on the DECISIONS stream, features from the worker's cache (started cold: the
service starts for the run):

==========  =====  ========  ======  ======
server      conc   req/s     p50 ms  p99 ms
==========  =====  ========  ======  ======
constant    1      7,592     0.11    0.32
constant    4      22,428    0.15    0.57
constant    32     18,313    1.63    5.07
constant    half   10,792    0.40    25.7   (open loop at 11,214/s)
decision    1      195       4.49    14.4
decision    16     1,711     8.19    25.1
decision    32     2,291     12.4    37.8
decision    half   1,143     6.58    24.2   (open loop at 1,146/s)
==========  =====  ========  ======  ======

Verdict FAIL: saturation 10% of the constant endpoint's (goal 40%), p99 24.2 ms at half of
it (goal 20 ms). This client is lighter than Locust, so the constant endpoint reaches 22k
req/s here and about 9k under Locust; ``dataplat bench run --suite decisions`` reports the
processor time of each component per request, which is where the gap is: about 0.6 ms of
CPU per decision in the decision workers and 0.3 ms in the pool and NATS, against 0.08 ms
in the constant endpoint. Unloaded, a decision takes about 1.7 ms in the service: scoring
about 0.95 ms (one round trip to the pool), recording about 0.5 ms (JetStream's
acknowledgement), features from the cache about 0.01 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from proclib import Conn, build_request, free_port, pct, stop, wait_ready

REPO = Path(__file__).resolve().parents[1]
EVENT_TYPES = ("payroll_credited", "large_inflow", "product_maturity", "transfer_out_other_bank", "app_login")

CONSTANT_BODY = json.dumps(
    {
        "event_id": "constant",
        "customer_id": 1,
        "decision_id": "00000000-0000-0000-0000-000000000000",
        "offer": {"product_id": "WM-S30", "name": "稳盈30天理财"},
        "channel": "app_push",
        "score": 0.1,
        "degraded": False,
        "reasons": ["payroll-mass-wealth: WM-S30 on app_push (score 0.100 x weight 1)"],
        "strategy": "inflow",
        "latency_ms": 0.1,
        "replayed": False,
    },
    ensure_ascii=False,
    separators=(",", ":"),
).encode()


# --- the constant endpoint ----------------------------------------------------------------


async def constant_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI endpoint: read the body, answer a constant decision."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(CONSTANT_BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": CONSTANT_BODY})


def serve_constant(host: str, port: int, workers: int) -> None:
    """Serve :func:`constant_app` exactly as the decision service serves itself."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from dataplat.serving.server import listen_socket

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    config = uvicorn.Config(
        "decision_latency:constant_app",
        host=host,
        port=port,
        workers=workers,
        http="httptools",
        loop="asyncio",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        backlog=2048,
    )
    sock = listen_socket(host, port, backlog=2048)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


# --- processes ----------------------------------------------------------------------------




def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )






# --- load generator -----------------------------------------------------------------------


class Events:
    """Fresh events: a new id every time, a random customer, type and amount."""

    def __init__(self, customers: int, seed: int = 1) -> None:
        self.customers = customers
        self.rng = random.Random(seed)
        self.run = f"{os.getpid()}-{int(time.time())}"
        self.n = 0

    def next(self) -> bytes:
        self.n += 1
        t = EVENT_TYPES[self.rng.randrange(len(EVENT_TYPES))]
        doc = {
            "event_id": f"bench-{self.run}-{self.n}",
            "type": t,
            "customer_id": self.rng.randint(1, self.customers),
            "amount": round(self.rng.choice((2_000, 8_000, 60_000, 300_000)) * self.rng.random(), 2),
        }
        return json.dumps(doc, separators=(",", ":")).encode()




async def closed_loop(port: int, events: Events, concurrency: int, duration: float) -> dict[str, Any]:
    conns = [await Conn.open(port) for _ in range(concurrency)]
    lat: list[float] = []
    statuses: dict[int, int] = {}
    end = time.perf_counter() + duration

    async def worker(c: Conn) -> None:
        while time.perf_counter() < end:
            body = events.next()
            t0 = time.perf_counter()
            status = await c.roundtrip(build_request(port, "/v1/decisions", body))
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                lat.append(time.perf_counter() - t0)

    t_start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t_start
    for c in conns:
        c.close()
    return {
        "concurrency": concurrency,
        "rps": len(lat) / elapsed,
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "statuses": statuses,
    }


async def open_loop(
    port: int, events: Events, rate: float, duration: float, max_conns: int = 128
) -> dict[str, Any]:
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(8):
        idle.put_nowait(await Conn.open(port))
    opened = 8
    lat: list[float] = []
    statuses: dict[int, int] = {}
    tasks: list[asyncio.Task[None]] = []

    async def one(scheduled: float, body: bytes) -> None:
        nonlocal opened
        if idle.empty() and opened < max_conns:
            opened += 1
            conn = await Conn.open(port)
        else:
            conn = await idle.get()
        status = await conn.roundtrip(build_request(port, "/v1/decisions", body))
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            lat.append(time.perf_counter() - scheduled)
        idle.put_nowait(conn)

    interval = 1.0 / rate
    t0 = time.perf_counter()
    for i in range(int(rate * duration)):
        scheduled = t0 + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, events.next())))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + 30)
    elapsed = time.perf_counter() - t0
    while not idle.empty():
        idle.get_nowait().close()
    return {
        "rate": rate,
        "achieved_rps": len(lat) / elapsed,
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "statuses": statuses,
    }


async def measure(port: int, events: Events, levels: list[int], duration: float) -> dict[str, Any]:
    await closed_loop(port, events, 4, 1.0)  # warm up: connections, prepared statements, caches
    closed = [await closed_loop(port, events, c, duration) for c in levels]
    saturation = max(r["rps"] for r in closed)
    half = await open_loop(port, events, saturation / 2, duration)
    return {"closed": closed, "saturation_rps": saturation, "half": half}


# --- main ---------------------------------------------------------------------------------


def customers_of(home: Path) -> int:
    import psycopg

    from dataplat.platform import endpoints

    with psycopg.connect(endpoints.warehouse_conninfo(home)) as conn:
        row = conn.execute("SELECT count(*), max(customer_id) FROM bank.customers").fetchone()
    if not row or not row[0]:
        raise SystemExit(f"bank.customers under {home} is empty: load a data set first (dataplat data load)")
    return int(row[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="a deployed platform with a data set loaded")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", action="append", default=[], help="NAME=URL of a serving pool (repeat)")
    parser.add_argument("--levels", default="1,4,16,32", help="closed-loop concurrencies")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--max-p99-ms", type=float, default=20.0)
    parser.add_argument("--min-ratio", type=float, default=0.4)
    parser.add_argument("--max-inflight", type=int, default=64)
    parser.add_argument("--synchronous-commit", default="on", help="passed to the service")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--serve-constant", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.serve_constant:
        host, _, port = args.serve_constant.rpartition(":")
        serve_constant(host, int(port), args.workers)
        return 0
    if args.home is None:
        parser.error("--home is required")
    home = args.home.expanduser().resolve()
    customers = customers_of(home)
    levels = [int(x) for x in args.levels.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="dataplat-decision-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {"workers": args.workers, "customers": customers, "levels": levels}
    try:
        pools = list(args.pool)
        if not pools:
            repo = tmp / "repo"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "dataplat.serving.model",
                    "--repo",
                    str(repo),
                    "--sf",
                    "0.004",
                    "--seed",
                    "7",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            sport = free_port()
            log = tmp / "serving.log"
            argv_s = [sys.executable, "-m", "dataplat.serving.server", "--repo", str(repo)]
            argv_s += ["--listen", f"127.0.0.1:{sport}", "--workers", "1", "--pool", "cpu"]
            procs.append(start(argv_s, log))
            wait_ready(f"http://127.0.0.1:{sport}/v2/models/propensity/ready", procs[-1], log)
            pools = [f"cpu=http://127.0.0.1:{sport}"]

        cport = free_port()
        log = tmp / "constant.log"
        procs.append(
            start(
                [
                    sys.executable,
                    __file__,
                    "--serve-constant",
                    f"127.0.0.1:{cport}",
                    "--workers",
                    str(args.workers),
                ],
                log,
            )
        )
        wait_ready(f"http://127.0.0.1:{cport}/", procs[-1], log)
        results["constant"] = asyncio.run(measure(cport, Events(customers), levels, args.duration))
        stop(procs.pop())

        dport = free_port()
        log = tmp / "decision.log"
        argv_d = [sys.executable, "-m", "dataplat.decision.service", "--home", str(home)]
        argv_d += ["--listen", f"127.0.0.1:{dport}", "--workers", str(args.workers)]
        argv_d += ["--max-inflight", str(args.max_inflight), "--no-consumer"]
        argv_d += ["--synchronous-commit", args.synchronous_commit]
        for p in pools:
            argv_d += ["--pool", p]
        procs.append(start(argv_d, log))
        wait_ready(f"http://127.0.0.1:{dport}/readyz", procs[-1], log)
        results["decision"] = asyncio.run(measure(dport, Events(customers, seed=2), levels, args.duration))
        with urllib.request.urlopen(f"http://127.0.0.1:{dport}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        results["degraded_or_unscored"] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('dataplat_decision_scored_total{pool="none"}')
        )
    except Exception:
        print(f"logs kept in {tmp}", file=sys.stderr)
        tmp = Path()  # keep them
        raise
    finally:
        for p in reversed(procs):
            stop(p)
        if tmp != Path():
            shutil.rmtree(tmp, ignore_errors=True)

    c, d = results["constant"], results["decision"]
    ratio = d["saturation_rps"] / c["saturation_rps"] if c["saturation_rps"] else 0.0
    ok = d["half"]["p99_ms"] <= args.max_p99_ms and ratio >= args.min_ratio
    results.update({"ratio": ratio, "ok": ok})
    print(f"{'server':<10} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for name in ("constant", "decision"):
        r = results[name]
        for row in r["closed"]:
            print(
                f"{name:<10} {row['concurrency']:>5} {row['rps']:>9.0f} {row['p50_ms']:>8.2f} "
                f"{row['p99_ms']:>8.2f}  {row['statuses']}"
            )
        h = r["half"]
        print(
            f"{name:<10} {'half':>5} {h['achieved_rps']:>9.0f} {h['p50_ms']:>8.2f} {h['p99_ms']:>8.2f}  "
            f"{h['statuses']} (open loop at {h['rate']:.0f}/s)"
        )
    print(
        f"saturation: decision {d['saturation_rps']:.0f} req/s = {ratio:.0%} of constant "
        f"{c['saturation_rps']:.0f} (goal >= {args.min_ratio:.0%}); p99 at half saturation "
        f"{d['half']['p99_ms']:.1f} ms (goal <= {args.max_p99_ms:g}); decisions without a model score: "
        f"{results['degraded_or_unscored']:.0f}"
    )
    print("verdict:", "PASS" if ok else "FAIL")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
