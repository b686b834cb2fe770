"""The decision service: an ASGI application and its command line.

Run it as::

    python -m dataplat.decision.service --home HOME --listen 127.0.0.1:58300 --workers 2 \\
        [--strategies DIR] [--pool NAME=URL[,PRIORITY]]... [--no-consumer]

==========================  ==================================================================
``POST /v1/decisions``      an event (:mod:`~dataplat.decision.events`) -> 200 with the decision;
                            422 ``{"error", "field"}`` for a malformed event or an unknown
                            customer; 503 with ``Retry-After`` when shedding load or when the
                            warehouse cannot answer; 413 for a body over 64 KiB
``GET /healthz``            liveness (no I/O)
``GET /readyz``             200 when the warehouse (read-write) and the stream answer, else 503
``GET /metrics``            Prometheus metrics of every worker
==========================  ==================================================================

Design, as in :mod:`dataplat.serving.server` and for the same measured reasons: a plain
ASGI callable on uvicorn with httptools, ``--workers`` processes sharing one listening
socket with ``TCP_NODELAY`` under uvicorn's supervisor. Each worker has its own bounded
warehouse pool, feature cache (:mod:`~dataplat.decision.features`), ledger of recent
decisions (:mod:`~dataplat.decision.ledger`), pool router (health checks in the
background) and NATS connection; it records decisions on the DECISIONS stream and runs the
stream consumer (unless ``--no-consumer``). One worker of the instance writes the DECISIONS
stream into ``bank.decisions`` (:mod:`~dataplat.decision.record`; unless ``--no-sink``).

Load shedding: a worker admits at most ``--max-inflight`` decisions at once and answers
``503`` with ``Retry-After: 1`` past that, at once; the feature reads, the scorers and the warehouse
pool are bounded too. Nothing waits without a timeout: features (``--features-timeout-ms``),
scoring (``--score-deadline-ms``, then rules only), recording (``--record-timeout-ms``).

Without ``--pool`` the pools come from the deployed platform (``platform.json``: serving
instances and ``settings.serving.pools``); the warehouse from
:func:`~dataplat.platform.endpoints.service_conninfo`; the stream from
:func:`~dataplat.platform.endpoints.nats_servers`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dataplat.decision.events import EventError, parse_event
from dataplat.decision.strategy import DEFAULT_STRATEGIES_DIR, StrategyError, load_strategies
from dataplat.errors import ConfigError, DataplatError

log = logging.getLogger("dataplat.decision")

ENV_CONFIG = "DATAPLAT_DECISION_CONFIG"
MAX_BODY = 64 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class PoolArg:
    """A pool given on the command line: ``NAME=URL[,PRIORITY]`` (repeat NAME for replicas)."""

    name: str
    url: str
    priority: int = 100

    @classmethod
    def parse(cls, value: str) -> PoolArg:
        """Parse ``NAME=URL[,PRIORITY]``."""
        name, sep, rest = value.partition("=")
        url, _, prio = rest.partition(",")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise argparse.ArgumentTypeError(
                f"--pool must be NAME=URL[,PRIORITY] with an http(s) URL, got {value!r}"
            )
        if prio and not prio.lstrip("-").isdigit():
            raise argparse.ArgumentTypeError(f"--pool priority must be an integer, got {prio!r}")
        return cls(name, url.rstrip("/"), int(prio) if prio else 100)


@dataclass(frozen=True)
class ServiceConfig:
    """What one decision service runs with (passed to workers as JSON in the environment)."""

    home: str
    host: str = "127.0.0.1"
    port: int = 58300
    workers: int = 1
    strategies: str = str(DEFAULT_STRATEGIES_DIR)
    pools: tuple[PoolArg, ...] = ()
    consumer: bool = True
    durable: str = "decision"
    synchronous_commit: str = "on"
    max_inflight: int = 64
    db_pool_size: int = 4
    features_timeout_ms: float = 1000.0
    score_timeout_ms: float = 25.0
    score_deadline_ms: float = 40.0
    record_timeout_ms: float = 2000.0
    publish_timeout_ms: float = 2000.0
    features_ttl_s: float = 300.0
    features_capacity: int = 100_000
    ledger_backfill_s: float = 60.0
    sink: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_env(self) -> dict[str, str]:
        """The configuration as an environment variable (how workers receive it)."""
        return {ENV_CONFIG: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None) -> ServiceConfig:
        """Read what :meth:`to_env` wrote."""
        doc = json.loads((os.environ if env is None else env)[ENV_CONFIG])
        doc["pools"] = tuple(PoolArg(**p) for p in doc.get("pools", ()))
        return cls(**doc)


def pool_specs(config: ServiceConfig):  # noqa: ANN201 - list[PoolSpec], imported lazily
    """The serving pools: the ``--pool`` arguments, else the deployed platform's placement."""
    from dataplat.platform import endpoints
    from dataplat.serving.client import PoolSpec, pools_from_placement

    if config.pools:
        by_name: dict[str, list[PoolArg]] = {}
        for p in config.pools:
            by_name.setdefault(p.name, []).append(p)
        return [
            PoolSpec(
                name=name, urls=tuple(p.url for p in ps), accelerator="", priority=min(p.priority for p in ps)
            )
            for name, ps in by_name.items()
        ]
    platform = endpoints.load_platform(Path(config.home))
    return pools_from_placement(platform.instances, platform.settings.get("serving", {}).get("pools", []))


async def _respond(
    send: Send, status: int, body: bytes, content_type: bytes = b"application/json",
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:  # fmt: skip
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


_RETRY = [(b"retry-after", b"1")]


class DecisionApp:
    """The ASGI application (module docstring). Everything that needs the event loop is
    created at lifespan startup."""

    def __init__(self, config: ServiceConfig) -> None:
        from dataplat.decision.metrics import get_metrics

        self.config = config
        self.metrics = get_metrics()
        self.strategies = load_strategies(config.strategies)
        self.inflight = 0
        self.engine: Any = None
        self.link: Any = None
        self.ledger: Any = None
        self.sink: Any = None
        self._following = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._ready_cache: tuple[float, bool, dict[str, Any]] = (0.0, False, {})

    # --- lifecycle ----------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the warehouse pool, the feature cache, the pool router, the stream link, the
        ledger's subscription, the sink and the consumer."""
        from dataplat.decision.consumer import EventConsumer
        from dataplat.decision.engine import Engine
        from dataplat.decision.features import FeatureCache
        from dataplat.decision.ledger import DecisionLedger
        from dataplat.decision.record import DecisionSink, StreamRecorder, sink_lock_path
        from dataplat.decision.stream import StreamLink
        from dataplat.decision.warehouse import ConnectionPool, WarehouseUnavailable
        from dataplat.platform import endpoints
        from dataplat.serving.client import PoolRouter

        cfg = self.config
        home = Path(cfg.home)
        platform = endpoints.load_platform(home)
        pool = ConnectionPool(
            endpoints.service_conninfo(home), size=cfg.db_pool_size,
            statement_timeout_ms=int(max(cfg.features_timeout_ms, 5000)),
            synchronous_commit=cfg.synchronous_commit,
        )  # fmt: skip
        cap_hours = self.strategies.max_cap_hours
        features = FeatureCache(
            pool, cap_hours, ttl_s=cfg.features_ttl_s, capacity=cfg.features_capacity,
            timeout_s=cfg.features_timeout_ms / 1000, max_pending=max(cfg.max_inflight * 4, 256),
        )  # fmt: skip
        self.ledger = DecisionLedger(cap_hours)
        self.link = StreamLink(endpoints.nats_servers(platform), timeout_s=cfg.publish_timeout_ms / 1000)
        specs = pool_specs(cfg)
        router = PoolRouter(
            specs, timeout_s=cfg.score_timeout_ms / 1000, deadline_s=cfg.score_deadline_ms / 1000
        )
        models = sorted({s.model for s in self.strategies.strategies})
        if specs:
            router.start_health_checks(models[0] if len(models) == 1 else None)
            router.start_discovery()  # straight to a supervised pool's replicas, no proxy hop
        self.engine = Engine(
            self.strategies,
            pool,
            features,
            self.ledger,
            StreamRecorder(self.link, self.ledger, self.metrics, timeout_s=cfg.record_timeout_ms / 1000),
            router,
            self.metrics,
            score_deadline_s=cfg.score_deadline_ms / 1000,
            max_pending=max(cfg.max_inflight * 4, 256),
        )
        self.engine.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.link.run(), name="stream-link"))
        self._tasks.append(loop.create_task(self._follow_decisions(), name="ledger"))
        if cfg.sink:
            self.sink = DecisionSink(self.link, pool, self.metrics, sink_lock_path(cfg.port))
            self._tasks.append(loop.create_task(self.sink.run(), name="sink"))
        if cfg.consumer:
            consumer = EventConsumer(self.link, self.engine, self.metrics, durable=cfg.durable)
            self._tasks.append(loop.create_task(consumer.run(), name="consumer"))
        try:
            await self.engine.ensure_catalog()
        except WarehouseUnavailable as exc:
            log.warning("warehouse not reachable at start (%s); decisions answer 503 until it is", exc)
        await self.link.wait_connected(2.0)
        try:  # no request before the ledger holds the recent decisions (bounded)
            async with asyncio.timeout(5.0):
                await self._following.wait()
        except TimeoutError:
            log.warning("the ledger is not back-filled after 5 s; frequency caps may miss recent decisions")
        self._tasks.append(loop.create_task(features.keep_fresh(), name="features-refresh"))

    async def _follow_decisions(self) -> None:
        """Feed the ledger with every decision that contacts a customer, from the decisions of
        the last ``ledger_backfill_s`` on (:func:`~dataplat.decision.ledger.follow`); sets
        ``_following`` when the back-fill is done. Decisions without a channel count for no
        cap: a replay of one is answered from the stream's duplicate detection."""
        from dataplat.decision.ledger import follow

        while True:
            await self.link.wait_connected(3600.0)
            try:
                filled = await follow(self.ledger, self.link, self.config.ledger_backfill_s)
            except Exception as exc:  # noqa: BLE001 - broker hiccup at start: try again
                log.warning("cannot follow the decisions yet (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(1.0)
                continue
            log.info(
                "ledger back-filled with %d decision(s) of the last %g s",
                filled,
                self.config.ledger_backfill_s,
            )
            self._following.set()
            await asyncio.Event().wait()

    async def shutdown(self) -> None:
        """Stop the consumer, the sink and the background tasks, close everything."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.engine is not None:
            await self.engine.stop()
            if self.engine.router is not None:
                await self.engine.router.aclose()
            await self.engine.pool.close()
        if self.link is not None:
            await self.link.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # noqa: BLE001 - reported to uvicorn, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/v1/decisions":
            if method != "POST":
                await _respond(send, 405, b'{"error":"/v1/decisions takes POST","field":"method"}')
            else:
                await self._decide(receive, send)
        elif path == "/healthz":
            await _respond(send, 200, b'{"live":true}')
        elif path == "/readyz":
            ok, detail = await self._ready()
            await _respond(send, 200 if ok else 503, _json({"ready": ok, **detail}))
        elif path == "/metrics":
            body, ctype = self.metrics.exposition()
            await _respond(send, 200, body, ctype.encode())
        else:
            await _respond(send, 404, _json({"error": f"no route for {path}", "field": "path"}))

    async def _ready(self) -> tuple[bool, dict[str, Any]]:
        from dataplat.decision.warehouse import ping

        at, ok, detail = self._ready_cache
        if time.monotonic() - at < 1.0:
            return ok, detail
        warehouse = self.engine is not None and await ping(self.engine.pool, 1.0)
        stream = self.link is not None and self.link.connected
        catalog = self.engine is not None and self.engine.catalog is not None
        if warehouse and not catalog:
            try:
                await self.engine.ensure_catalog()
                catalog = True
            except DataplatError:
                catalog = False
        ok = bool(warehouse and stream and catalog)
        detail = {"warehouse": warehouse, "stream": stream, "catalog": catalog}
        if not stream and self.link is not None and self.link.last_error:
            detail["stream_error"] = self.link.last_error
        self._ready_cache = (time.monotonic(), ok, detail)
        return ok, detail

    async def _decide(self, receive: Receive, send: Send) -> None:
        from dataplat.decision.record import StreamUnavailable
        from dataplat.decision.warehouse import Overloaded, WarehouseUnavailable

        metrics = self.metrics
        if self.inflight >= self.config.max_inflight:
            metrics.requests.labels("http", "shed").inc()
            await _respond(
                send, 503, _json({"error": f"overloaded: {self.inflight} decisions in flight", "field": ""}),
                extra=_RETRY,
            )  # fmt: skip
            return
        started = time.perf_counter()
        self.inflight += 1
        metrics.inflight.inc()
        outcome = "error"
        try:
            body = await _read_body(receive)
            event = parse_event(body)
            decision, fresh = await self.engine.decide(event, started)
            doc = decision.to_json()
            outcome = "decided" if fresh else "replayed"
            await _respond(send, 200, _json(doc))
        except EventError as exc:
            outcome = "invalid"
            status = 413 if exc.field == "body" and exc.message.startswith("body over") else 422
            await _respond(send, status, _json({"error": exc.message, "field": exc.field}))
        except Overloaded as exc:
            outcome = "shed"
            await _respond(send, 503, _json({"error": f"overloaded: {exc}", "field": ""}), extra=_RETRY)
        except WarehouseUnavailable as exc:
            outcome = "unavailable"
            await _respond(
                send, 503, _json({"error": f"warehouse unavailable: {exc}", "field": ""}), extra=_RETRY
            )
        except StreamUnavailable as exc:
            outcome = "unavailable"
            await _respond(
                send, 503, _json({"error": f"stream unavailable: {exc}", "field": ""}), extra=_RETRY
            )
        except Exception as exc:  # noqa: BLE001 - a bug answers 500, the worker keeps serving
            log.exception("decision failed")
            await _respond(send, 500, _json({"error": f"internal error: {type(exc).__name__}", "field": ""}))
        finally:
            self.inflight -= 1
            metrics.inflight.dec()
            metrics.requests.labels("http", outcome).inc()
            metrics.duration.labels("http").observe(time.perf_counter() - started)


async def _read_body(receive: Receive, limit: int = MAX_BODY) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise EventError("client disconnected before the body was complete", "body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise EventError(f"body over {limit} bytes", "body")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def create_app() -> DecisionApp:
    """The app of a worker process, configured from the environment (uvicorn's factory)."""
    level = os.environ.get("DATAPLAT_DECISION_LOG_LEVEL", "warning").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return DecisionApp(ServiceConfig.from_env())


def serve(config: ServiceConfig, log_level: str = "warning", scaling: Any = None) -> None:
    """Run the service in the foreground until SIGTERM/SIGINT (``config.workers`` processes, or
    as many as ``scaling``, a :class:`~dataplat.scaling.workers.WorkerPoolConfig`, decides)."""
    from dataplat.serving.server import run_asgi_workers

    os.environ["DATAPLAT_DECISION_LOG_LEVEL"] = log_level
    os.environ.update(config.to_env())
    if scaling is not None:
        from dataplat.scaling.workers import run_scaled_workers

        run_scaled_workers(scaling, log_level=log_level, metrics_prefix="dataplat-decision-metrics-")
        return
    run_asgi_workers(
        "dataplat.decision.service:create_app",
        config.host,
        config.port,
        config.workers,
        log_level=log_level,
        backlog=2048,
        metrics_prefix="dataplat-decision-metrics-",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m dataplat.decision.service``."""
    from dataplat.serving.server import parse_listen

    p = argparse.ArgumentParser(
        prog="python -m dataplat.decision.service", description="Real-time decision service"
    )
    p.add_argument("--home", required=True, type=Path, help="the deployed platform's home (platform.json)")
    p.add_argument("--listen", default="127.0.0.1:58300", type=parse_listen, help="ADDR:PORT")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the socket")
    p.add_argument("--strategies", type=Path, default=DEFAULT_STRATEGIES_DIR, help="folder of strategy files")
    p.add_argument("--pool", action="append", type=PoolArg.parse, default=[], metavar="NAME=URL[,PRIORITY]",
                   help="a serving pool replica (repeat; default: the platform's placement)")  # fmt: skip
    p.add_argument("--no-consumer", action="store_true", help="do not consume the EVENTS stream")
    p.add_argument("--durable", default="decision", help="the durable consumer's name (default: decision)")
    p.add_argument("--max-inflight", type=int, default=64, help="decisions at once per worker; more get 503")
    p.add_argument("--db-pool-size", type=int, default=4, help="warehouse connections per worker")
    p.add_argument("--score-timeout-ms", type=float, default=25.0, help="per pool attempt")
    p.add_argument("--score-deadline-ms", type=float, default=40.0, help="for scoring with fallbacks")
    p.add_argument("--features-timeout-ms", type=float, default=1000.0)
    p.add_argument("--features-ttl-s", type=float, default=300.0,
                   help="use a customer's cached features this long, for events this close to when they "
                   "were read (0: read the warehouse for every decision)")  # fmt: skip
    p.add_argument("--features-capacity", type=int, default=100_000, help="customers cached per worker")
    p.add_argument("--no-sink", action="store_true",
                   help="do not write the DECISIONS stream into bank.decisions here")  # fmt: skip
    p.add_argument("--record-timeout-ms", type=float, default=2000.0)
    p.add_argument(
        "--synchronous-commit",
        choices=("on", "remote_apply", "remote_write", "local", "off"),
        default="on",
        help="PostgreSQL synchronous_commit of the service's sessions (default on: a recorded decision "
        "survives a failover; local/off trade that for commit latency)",
    )
    p.add_argument("--log-level", default="warning")
    from dataplat.scaling.workers import add_scaling_arguments

    add_scaling_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the settings and the strategy files, then serve (exit 2 on bad settings)."""
    from dataplat.platform import endpoints

    args = build_parser().parse_args(argv)
    if args.workers < 1 or args.max_inflight < 1 or args.db_pool_size < 1:
        print(
            "decision service: --workers, --max-inflight and --db-pool-size must be at least 1",
            file=sys.stderr,
        )
        return 2
    host, port = args.listen
    config = ServiceConfig(
        home=str(args.home.resolve()),
        host=host,
        port=port,
        workers=args.workers,
        strategies=str(args.strategies.resolve()),
        pools=tuple(args.pool),
        consumer=not args.no_consumer,
        durable=args.durable,
        synchronous_commit=args.synchronous_commit,
        max_inflight=args.max_inflight,
        db_pool_size=args.db_pool_size,
        features_timeout_ms=args.features_timeout_ms,
        score_timeout_ms=args.score_timeout_ms,
        score_deadline_ms=args.score_deadline_ms,
        record_timeout_ms=args.record_timeout_ms,
        features_ttl_s=args.features_ttl_s,
        features_capacity=args.features_capacity,
        sink=not args.no_sink,
    )
    try:
        from dataplat.scaling.workers import scaling_config_from_args

        scaling = scaling_config_from_args(
            args, "dataplat.decision.service:create_app", host, port, args.workers, "decision"
        )
        endpoints.load_platform(Path(config.home))
        strategies = load_strategies(config.strategies)
        specs = pool_specs(config)
    except StrategyError as exc:
        print(f"decision service: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"decision service: {exc}", file=sys.stderr)
        return exc.exit_code
    except DataplatError as exc:
        print(f"decision service: {exc}", file=sys.stderr)
        return 2
    workers = (
        f"{scaling.spec.minReplicas}..{scaling.spec.maxReplicas} workers (HPA)"
        if scaling
        else f"{config.workers} worker(s)"
    )
    print(
        f"decision service on {host}:{port}, {workers}, "
        f"{len(strategies.strategies)} strateg{'y' if len(strategies.strategies) == 1 else 'ies'}, "
        f"pools: {', '.join(f'{s.name}({len(s.urls)})' for s in specs) or 'none (rules only)'}",
        file=sys.stderr,
        flush=True,
    )
    try:
        serve(config, log_level=args.log_level, scaling=scaling)
    except DataplatError as exc:
        print(f"decision service: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
