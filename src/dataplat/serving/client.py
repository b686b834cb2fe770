"""The client side of the serving pools: an Open Inference Protocol client and a router.

:class:`OipClient` speaks KServe V2 REST (aiohttp, async) to one server: ours, Triton,
MLServer or any other that implements the protocol. (aiohttp rather than httpx: on the
2-core reference machine a single-row request costs ~0.4 ms through aiohttp and ~1.3 ms
through httpx, measured against the same server; the serving hop has a few ms in all.)

:class:`PoolRouter` is what the decision service calls. Pools are declared per
accelerator kind (``cpu``, ``nvidia``, ``ascend``) with a priority (lower is preferred,
``serving_pools`` in ``roles/serving/defaults/main.yml``); each pool has one or more
replicas (endpoints). For every request the router walks the pools by priority and, in
each, its replicas round-robin, skipping an endpoint whose circuit breaker is open or
whose cached health check says it is not ready, and moves on when an attempt fails:

==============================================  ==============================================
connection refused / reset, timeout, 5xx         next endpoint; counts as a failure (breaker)
503 / 429 (the server sheds load)                next endpoint; not a failure (it is healthy)
404 (model not on this pool)                     next endpoint
400, 413, 422 (the request is wrong)             :class:`InferenceRejected` (no other pool would
                                                 take it)
nothing left                                     :class:`AllPoolsDown`, with every attempt, so
                                                 the caller answers rules-only, marked degraded
==============================================  ==============================================

Nothing waits without a bound: every attempt has its own timeout and the whole call a
deadline (``deadline_s``) that fallbacks share; health checks (``GET .../ready``) have
their own short timeout and their results are cached for ``health_ttl_s``: a fresh failed
check skips the endpoint; the request path never waits for a check. Refresh them with
:meth:`PoolRouter.health` or in the background with :meth:`PoolRouter.start_health_checks`.
Faults in the request path feed a circuit breaker per endpoint (``breaker_threshold``
failures in a row open it for ``breaker_reset_s``, then one trial request decides).

Endpoint discovery (client-side load balancing, as a Kubernetes client reads
EndpointSlices): a pool URL that is a pool supervisor's endpoint
(:mod:`dataplat.scaling.supervisor`) also lists its ready replicas at
``GET /dataplat/v1/endpoints``. :meth:`PoolRouter.start_discovery` reads that list every
``discovery_interval_s`` and the router then sends requests straight to the replicas,
round-robin, with the pool URL (the supervisor's proxy) as the last endpoint of the pool:
no proxy hop on the request path (on the 2-core reference machine it cost about a third of
the decision path's throughput). A replica the supervisor is about to stop leaves the list
first and keeps serving for the supervisor's deregistration delay, which is longer than
the discovery interval; inference is idempotent, so a connection the replica closes while
stopping is retried on the next endpoint. A URL without the discovery route (Triton,
MLServer, a plain OIP server) answers 404 and is used as it is.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from dataplat.errors import ComponentError

DEFAULT_TIMEOUT_S = 0.05
DEFAULT_DEADLINE_S = 0.1
DEFAULT_HEALTH_TIMEOUT_S = 0.2
DEFAULT_HEALTH_TTL_S = 1.0
DEFAULT_DISCOVERY_INTERVAL_S = 0.5
DISCOVERY_PATH = "/dataplat/v1/endpoints"

_JSON = {"Content-Type": "application/json"}
_NP_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


class ServingError(ComponentError):
    """Base class of the errors of the serving client."""


class EndpointError(ServingError):
    """One endpoint could not serve a request (down, timed out, 5xx, shedding load)."""

    def __init__(self, url: str, reason: str, status: int | None = None, fault: bool = True) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status
        self.fault = fault
        """False when the endpoint is healthy but refused (503/429 load shedding, 404)."""


class InferenceRejected(ServingError):
    """The server refused the request itself (400/413/422): a caller's bug, not an outage."""

    def __init__(self, url: str, status: int, error: str, field: str | None = None) -> None:
        super().__init__(f"{url} rejected the request ({status}): {error}")
        self.url = url
        self.status = status
        self.error = error
        self.field = field


class AllPoolsDown(ServingError):
    """No pool could answer; ``attempts`` lists (pool, endpoint, reason) for every one tried or skipped."""

    def __init__(self, model: str, attempts: Sequence[tuple[str, str, str]]) -> None:
        detail = "; ".join(f"{pool} {url}: {reason}" for pool, url, reason in attempts) or "no pool declared"
        super().__init__(f"no serving pool could score {model!r}: {detail}")
        self.model = model
        self.attempts = list(attempts)


@dataclass(frozen=True)
class InferResult:
    """The answer of one inference: outputs by name, and who answered how fast."""

    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    request_id: str | None = None
    pool: str = ""
    endpoint: str = ""
    latency_s: float = 0.0
    fallbacks: int = 0
    """How many endpoints were tried (or skipped) before the one that answered."""


def encode_infer_request(
    X: np.ndarray | Sequence[Sequence[float]],
    input_name: str = "features",
    outputs: Sequence[str] | None = None,
    request_id: str | None = None,
) -> bytes:
    """The JSON body of an OIP inference request for a [N, F] FP32 feature matrix."""
    arr = np.asarray(X, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    doc: dict[str, Any] = {
        "inputs": [
            {"name": input_name, "shape": list(arr.shape), "datatype": "FP32", "data": arr.ravel().tolist()}
        ]
    }
    if outputs:
        doc["outputs"] = [{"name": o} for o in outputs]
    if request_id is not None:
        doc["id"] = request_id
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_infer_response(body: bytes) -> tuple[str, str, dict[str, np.ndarray], str | None]:
    """(model name, version, outputs by name as arrays, id) of an OIP inference response."""
    doc = json.loads(body)
    outputs: dict[str, np.ndarray] = {}
    for t in doc.get("outputs", []):
        arr: np.ndarray = np.asarray(t["data"], dtype=_NP_DTYPES.get(t.get("datatype", "FP32"), np.float32))
        outputs[t["name"]] = arr.reshape(t["shape"]) if t.get("shape") else arr
    return doc.get("model_name", ""), str(doc.get("model_version", "")), outputs, doc.get("id")


def _error_of(body: bytes) -> tuple[str, str | None]:
    try:
        doc = json.loads(body)
        return str(doc.get("error", body[:200].decode(errors="replace"))), doc.get("field")
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace"), None


def new_session(limit: int = 256) -> aiohttp.ClientSession:
    """An aiohttp session for OIP clients: keep-alive pool, no proxies from the environment."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=30, ttl_dns_cache=300),
        trust_env=False,
        skip_auto_headers=("User-Agent",),
    )


class OipClient:
    """Open Inference Protocol (KServe V2 REST) client for one server.

    Pass ``session`` (an :class:`aiohttp.ClientSession`, or a callable that returns one)
    to share one connection pool between clients; otherwise the client opens its own on
    first use (close it with :meth:`aclose` or ``async with``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        session: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._own = session is None
        self._provider = (
            session if callable(session) and not isinstance(session, aiohttp.ClientSession) else None
        )
        self._session = session if isinstance(session, aiohttp.ClientSession) else None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The connection pool (opened on first use, inside the running event loop)."""
        if self._provider is not None:
            return self._provider()
        if self._session is None:
            self._session = new_session(64)
        return self._session

    async def aclose(self) -> None:
        """Close the connection pool if this client owns it."""
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> OipClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _model_path(self, model: str, version: str | None) -> str:
        return f"{self.base_url}/v2/models/{model}" + (f"/versions/{version}" if version else "")

    async def _request(
        self, method: str, url: str, timeout_s: float, content: bytes | None = None
    ) -> tuple[int, bytes]:
        """(status, body); :class:`EndpointError` on timeout or a transport error."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self.session.request(
                    method,
                    url,
                    data=content,
                    headers=_JSON if content is not None else None,
                    allow_redirects=False,
                ) as response:
                    return response.status, await response.read()
        except TimeoutError:
            raise EndpointError(self.base_url, f"timed out after {timeout_s * 1000:.0f} ms") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise EndpointError(self.base_url, f"{type(exc).__name__}: {exc}") from None

    async def _ok(self, path: str, timeout_s: float | None) -> bool:
        try:
            status, _ = await self._request("GET", self.base_url + path, timeout_s or self.timeout_s)
        except EndpointError:
            return False
        return status == 200

    async def live(self, timeout_s: float | None = None) -> bool:
        """``GET /v2/health/live`` answered 200 in time."""
        return await self._ok("/v2/health/live", timeout_s)

    async def ready(self, timeout_s: float | None = None) -> bool:
        """``GET /v2/health/ready`` answered 200 in time."""
        return await self._ok("/v2/health/ready", timeout_s)

    async def model_ready(
        self, model: str, version: str | None = None, timeout_s: float | None = None
    ) -> bool:
        """``GET /v2/models/{model}[/versions/{v}]/ready`` answered 200 in time."""
        return await self._ok(self._model_path(model, version)[len(self.base_url) :] + "/ready", timeout_s)

    async def model_metadata(
        self, model: str, version: str | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """``GET /v2/models/{model}[/versions/{v}]``: inputs, outputs, parameters."""
        status, body = await self._request(
            "GET", self._model_path(model, version), timeout_s or self.timeout_s
        )
        if status != 200:
            raise EndpointError(self.base_url, f"model metadata: HTTP {status} {_error_of(body)[0]}", status)
        return json.loads(body)

    async def infer(
        self,
        model: str,
        X: np.ndarray | Sequence[Sequence[float]],
        *,
        version: str | None = None,
        input_name: str = "features",
        outputs: Sequence[str] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> InferResult:
        """``POST /v2/models/{model}[/versions/{v}]/infer`` with the feature matrix ``X``.

        Raises :class:`InferenceRejected` for 400/413/422 and :class:`EndpointError`
        for everything else that is not a 200.
        """
        body = encode_infer_request(X, input_name, outputs, request_id)
        return await self.infer_raw(model, body, version=version, timeout_s=timeout_s)

    async def infer_raw(
        self, model: str, body: bytes, *, version: str | None = None, timeout_s: float | None = None
    ) -> InferResult:
        """Like :meth:`infer` with an already encoded request body."""
        start = time.perf_counter()
        status, content = await self._request(
            "POST", self._model_path(model, version) + "/infer", timeout_s or self.timeout_s, body
        )
        if status == 200:
            name, v, outs, rid = decode_infer_response(content)
            return InferResult(
                name, v, outs, rid, endpoint=self.base_url, latency_s=time.perf_counter() - start
            )
        error, fld = _error_of(content)
        if status in (400, 413, 422):
            raise InferenceRejected(self.base_url, status, error, fld)
        raise EndpointError(
            self.base_url, f"HTTP {status}: {error}", status, fault=status not in (404, 429, 503)
        )


# --- routing --------------------------------------------------------------------------


class CircuitBreaker:
    """Consecutive-failure breaker: closed -> open after ``threshold`` failures in a row;
    after ``reset_s`` one trial request is let through (half-open): success closes it,
    failure opens it again."""

    def __init__(
        self, threshold: int = 3, reset_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.reset_s = reset_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        """Whether a request may go to the endpoint now (claims the trial when half-open)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        """Record a success: the breaker closes."""
        self.failures = 0
        self.opened_at = None
        self._trial = False

    def failure(self) -> None:
        """Record a failure: opens after ``threshold`` in a row, or at once when half-open."""
        self.failures += 1
        if self._trial or self.failures >= self.threshold:
            self.opened_at = self.clock()
        self._trial = False


@dataclass(frozen=True)
class PoolSpec:
    """A serving pool: its accelerator kind, its priority (lower first) and its replicas' URLs."""

    name: str
    urls: tuple[str, ...]
    accelerator: str = "cpu"
    priority: int = 100


def pools_from_placement(
    instances: Iterable[Mapping[str, Any]], serving_pools: Sequence[Mapping[str, Any]] = ()
) -> list[PoolSpec]:
    """Pools from the placement plan's serving instances (component ``serving``, ``pool``,
    ``accelerator``, ``address``, ``ports.http``) and the ``serving_pools`` settings (priority)."""
    priority = {p["name"]: int(p.get("priority", 100)) for p in serving_pools}
    by_pool: dict[str, list[Mapping[str, Any]]] = {}
    for inst in instances:
        if inst.get("component") == "serving":
            by_pool.setdefault(str(inst["pool"]), []).append(inst)
    return sorted(
        (
            PoolSpec(
                name=pool,
                urls=tuple(f"http://{i['address']}:{i['ports']['http']}" for i in members),
                accelerator=str(members[0].get("accelerator", "cpu")),
                priority=priority.get(pool, 100),
            )
            for pool, members in by_pool.items()
        ),
        key=lambda p: (p.priority, p.name),
    )


@dataclass
class _Endpoint:
    pool: PoolSpec
    client: OipClient
    breaker: CircuitBreaker
    health: bool | None = None
    checked_at: float = field(default=-1e18)


@dataclass
class _Discovery:
    """What a pool URL's discovery route said last: its ready replicas (None: not asked yet or
    not answering), or that it has no such route."""

    replicas: list[_Endpoint] | None = None
    unsupported: bool = False
    failures: int = 0


class PoolRouter:
    """Routes inference to the best healthy pool and falls back to the next (module docstring).

    Use as ``async with PoolRouter(pools) as router: await router.infer("propensity", X)``.
    """

    def __init__(
        self,
        pools: Sequence[PoolSpec],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        deadline_s: float = DEFAULT_DEADLINE_S,
        health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S,
        health_ttl_s: float = DEFAULT_HEALTH_TTL_S,
        breaker_threshold: int = 3,
        breaker_reset_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pools = sorted(pools, key=lambda p: (p.priority, p.name))
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.health_timeout_s = health_timeout_s
        self.health_ttl_s = health_ttl_s
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._endpoints: dict[str, list[_Endpoint]] = {
            p.name: [
                _Endpoint(p, OipClient(u, timeout_s=timeout_s, session=self._shared), CircuitBreaker(
                    breaker_threshold, breaker_reset_s, clock))
                for u in p.urls
            ]
            for p in self.pools
        }  # fmt: skip
        self._next = dict.fromkeys(self._endpoints, 0)
        self._health_task: asyncio.Task[None] | None = None
        self._discovery: dict[str, _Discovery] = {
            ep.client.base_url: _Discovery() for group in self._endpoints.values() for ep in group
        }
        self._discovery_task: asyncio.Task[None] | None = None
        self._breaker = (breaker_threshold, breaker_reset_s)

    def _shared(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session(256)
        return self._session

    async def aclose(self) -> None:
        """Stop the health checks and discovery, and close the shared connection pool."""
        for task in (self._health_task, self._discovery_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> PoolRouter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- health -------------------------------------------------------------------------

    async def _check(self, ep: _Endpoint, model: str | None) -> bool:
        if model:
            ok = await ep.client.model_ready(model, timeout_s=self.health_timeout_s)
        else:
            ok = await ep.client.ready(timeout_s=self.health_timeout_s)
        ep.health, ep.checked_at = ok, self.clock()
        return ok

    async def _healthy(self, ep: _Endpoint, model: str | None) -> bool:
        if ep.health is None or self.clock() - ep.checked_at >= self.health_ttl_s:
            return await self._check(ep, model)
        return ep.health

    async def health(self, model: str | None = None, refresh: bool = False) -> dict[str, dict[str, bool]]:
        """Readiness of every endpoint by pool (cached for ``health_ttl_s`` unless ``refresh``)."""
        eps = [ep for group in self._endpoints.values() for ep in group]
        results = await asyncio.gather(
            *(self._check(ep, model) if refresh else self._healthy(ep, model) for ep in eps)
        )
        out: dict[str, dict[str, bool]] = {}
        for ep, ok in zip(eps, results, strict=True):
            out.setdefault(ep.pool.name, {})[ep.client.base_url] = ok
        return out

    def start_health_checks(self, model: str | None = None, interval_s: float | None = None) -> None:
        """Refresh every endpoint's health in the background every ``interval_s`` (default: the TTL)."""
        if self._health_task is not None and not self._health_task.done():
            return
        interval = interval_s if interval_s is not None else self.health_ttl_s

        async def loop() -> None:
            while True:
                await self.health(model, refresh=True)
                await asyncio.sleep(interval)

        self._health_task = asyncio.get_running_loop().create_task(loop(), name="pool-health")

    def breaker_states(self) -> dict[str, str]:
        """Circuit breaker state of every endpoint by URL (discovered replicas included)."""
        out = {ep.client.base_url: ep.breaker.state for group in self._endpoints.values() for ep in group}
        for d in self._discovery.values():
            out.update({ep.client.base_url: ep.breaker.state for ep in d.replicas or ()})
        return out

    # --- endpoint discovery -------------------------------------------------------------

    async def discover(self) -> dict[str, list[str] | None]:
        """Ask every pool URL for its ready replicas once; by URL, the replica URLs it listed
        (None: no discovery route, or not answering, so the URL is used as it is)."""
        out: dict[str, list[str] | None] = {}
        for group in self._endpoints.values():
            for ep in group:
                out[ep.client.base_url] = await self._discover_one(ep)
        return out

    async def _discover_one(self, ep: _Endpoint) -> list[str] | None:
        d = self._discovery[ep.client.base_url]
        if d.unsupported:
            return None
        try:
            status, body = await ep.client._request(
                "GET", ep.client.base_url + DISCOVERY_PATH, self.health_timeout_s
            )
        except EndpointError:
            d.failures += 1
            if d.failures >= 3:  # the supervisor is gone: its replicas may be too; use the URL
                d.replicas = None
            return [e.client.base_url for e in d.replicas] if d.replicas is not None else None
        if status in (404, 405):
            d.unsupported, d.replicas = True, None
            return None
        if status != 200:
            d.failures += 1
            return [e.client.base_url for e in d.replicas] if d.replicas is not None else None
        try:
            urls = [str(r["url"]).rstrip("/") for r in json.loads(body)["replicas"] if r.get("ready", True)]
        except (ValueError, KeyError, TypeError):
            d.failures += 1
            return None
        d.failures = 0
        known = {e.client.base_url: e for e in d.replicas or ()}
        threshold, reset_s = self._breaker
        d.replicas = [
            known.get(u)
            or _Endpoint(
                ep.pool,
                OipClient(u, timeout_s=self.timeout_s, session=self._shared),
                CircuitBreaker(threshold, reset_s, self.clock),
                health=True,
                checked_at=self.clock(),
            )
            for u in urls
        ]
        return urls

    def start_discovery(self, interval_s: float = DEFAULT_DISCOVERY_INTERVAL_S) -> None:
        """Refresh the replica lists in the background every ``interval_s`` (module docstring)."""
        if self._discovery_task is not None and not self._discovery_task.done():
            return

        async def loop() -> None:
            while True:
                await self.discover()
                if all(d.unsupported for d in self._discovery.values()):
                    return  # nothing to discover from: plain servers
                await asyncio.sleep(interval_s)

        self._discovery_task = asyncio.get_running_loop().create_task(loop(), name="pool-discovery")

    # --- inference ----------------------------------------------------------------------

    def _order(self, pool: str) -> list[_Endpoint]:
        """The endpoints to try, in order: the discovered replicas, then the pool URLs, each
        round-robin."""
        group = self._endpoints[pool]
        replicas = [r for ep in group for r in self._discovery[ep.client.base_url].replicas or ()]
        n = self._next[pool]
        self._next[pool] = n + 1
        out: list[_Endpoint] = []
        for part in (replicas, group):
            if part:
                start = n % len(part)
                out += part[start:] + part[:start]
        return out

    async def infer(
        self,
        model: str,
        X: np.ndarray | Sequence[Sequence[float]],
        *,
        version: str | None = None,
        input_name: str = "features",
        outputs: Sequence[str] | None = None,
        request_id: str | None = None,
        deadline_s: float | None = None,
    ) -> InferResult:
        """Score ``X`` on the best pool that answers within the deadline.

        Raises :class:`AllPoolsDown` when none does and :class:`InferenceRejected` when a
        server says the request itself is wrong.
        """
        body = encode_infer_request(X, input_name, outputs, request_id)
        start = self.clock()
        deadline = start + (deadline_s if deadline_s is not None else self.deadline_s)
        attempts: list[tuple[str, str, str]] = []
        for pool in self.pools:
            for ep in self._order(pool.name):
                url = ep.client.base_url
                # a failed health check skips the endpoint while it is fresh; the request
                # path never waits for a health check (the request itself is the probe)
                if ep.health is False and self.clock() - ep.checked_at < self.health_ttl_s:
                    attempts.append((pool.name, url, "not ready (cached health check)"))
                    continue
                if not ep.breaker.allow():
                    attempts.append((pool.name, url, "circuit open"))
                    continue
                remaining = deadline - self.clock()
                if remaining <= 0:
                    attempts.append((pool.name, url, "deadline passed"))
                    raise AllPoolsDown(model, attempts)
                try:
                    res = await ep.client.infer_raw(
                        model, body, version=version, timeout_s=min(self.timeout_s, remaining)
                    )
                except EndpointError as exc:
                    attempts.append((pool.name, url, exc.reason))
                    if exc.fault:
                        ep.breaker.failure()
                    else:
                        ep.breaker.success()
                    continue
                except InferenceRejected:
                    ep.breaker.success()
                    raise
                ep.breaker.success()
                return InferResult(
                    res.model_name,
                    res.model_version,
                    res.outputs,
                    res.request_id,
                    pool=pool.name,
                    endpoint=url,
                    latency_s=self.clock() - start,
                    fallbacks=len(attempts),
                )
        raise AllPoolsDown(model, attempts)
