"""A thin Open Inference Protocol (KServe V2 REST) server over ONNX Runtime on CPU.

Run it as::

    python -m dataplat.serving.server --repo DIR --listen 127.0.0.1:58100 --workers 2

It serves every model of a :class:`~dataplat.serving.model.ModelRepository` (all
versions; the latest when a request names none) with the endpoints that Triton, MLServer
and KServe answer too, so the same client reaches a GPU or NPU pool unchanged:

==========================================================  =========================================
``GET  /v2/health/live``, ``GET /v2/health/ready``          liveness; readiness (models loaded)
``GET  /v2``                                                server metadata
``GET  /v2/models/{name}[/versions/{v}]``                   model metadata (+ feature names, classes,
                                                            training date and metrics as parameters)
``GET  /v2/models/{name}[/versions/{v}]/ready``             model readiness
``POST /v2/models/{name}[/versions/{v}]/infer``             inference
``GET  /metrics``                                           Prometheus metrics of all workers
==========================================================  =========================================

Design, chosen by measurement (``bench/serving_latency.py``): a plain ASGI callable (no
framework) on uvicorn with httptools, ``--workers`` processes sharing one listening
socket (ours, see :func:`listen_socket`) under uvicorn's supervisor, which starts a
worker that dies again. Small requests
(at most :data:`INLINE_MAX_ROWS` rows, a few microseconds of ONNX Runtime) run inline on
the event loop; larger batches run on one inference thread per worker (ONNX Runtime
releases the GIL), so the loop keeps answering health checks.

Load shedding: each worker admits at most ``--max-inflight`` inference requests at once
(requests it has parsed and not yet answered; a small request yields one turn of the event
loop before it runs, so a burst that arrives together is counted together); past that it
answers ``503`` with ``Retry-After`` at once instead of queueing without bound, so a client
(:class:`~dataplat.serving.client.PoolRouter`) moves on to another pool.

Errors follow the protocol: a JSON object ``{"error": "..."}`` (plus ``"field"``, the
path of the offending field of a malformed request) with 400 for a bad request, 404 for
an unknown model or version, 405, 413 for a body over ``--max-body``, 503 when shedding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataplat.errors import PortInUseError
from dataplat.serving.model import LABEL_OUTPUT, PROBA_OUTPUT, ModelRepository, OnnxModel

SERVER_NAME = "dataplat-oip"
SERVER_VERSION = "1"
INLINE_MAX_ROWS = 64
"""Requests with at most this many rows run on the event loop; larger ones on the inference thread."""

DEFAULT_MAX_INFLIGHT = 32
DEFAULT_MAX_BODY = 8 * 1024 * 1024

ENV_PREFIX = "DATAPLAT_SERVING_"
_DATATYPES = {
    "FP32": np.float32,
    "FP64": np.float64,
    "FP16": np.float16,
    "INT32": np.int32,
    "INT64": np.int64,
}
_OUT_DATATYPE = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.float64): "FP64"}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class ServerConfig:
    """What one pool replica serves and how."""

    repo: Path
    host: str = "127.0.0.1"
    port: int = 58100
    workers: int = 1
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    """Inference requests admitted at once per worker; more are answered 503."""
    max_body: int = DEFAULT_MAX_BODY
    intra_op_threads: int = 1
    pool: str = ""
    """The pool this replica belongs to (a label on the metrics)."""

    def to_env(self) -> dict[str, str]:
        """The settings as ``DATAPLAT_SERVING_*`` variables (how workers receive them)."""
        return {
            f"{ENV_PREFIX}REPO": str(self.repo),
            f"{ENV_PREFIX}MAX_INFLIGHT": str(self.max_inflight),
            f"{ENV_PREFIX}MAX_BODY": str(self.max_body),
            f"{ENV_PREFIX}INTRA_OP_THREADS": str(self.intra_op_threads),
            f"{ENV_PREFIX}POOL": self.pool,
        }

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None) -> ServerConfig:
        """Read what :meth:`to_env` wrote (in a worker process)."""
        env = os.environ if env is None else env
        return cls(
            repo=Path(env[f"{ENV_PREFIX}REPO"]),
            max_inflight=int(env.get(f"{ENV_PREFIX}MAX_INFLIGHT", DEFAULT_MAX_INFLIGHT)),
            max_body=int(env.get(f"{ENV_PREFIX}MAX_BODY", DEFAULT_MAX_BODY)),
            intra_op_threads=int(env.get(f"{ENV_PREFIX}INTRA_OP_THREADS", 1)),
            pool=env.get(f"{ENV_PREFIX}POOL", ""),
        )


class RequestError(Exception):
    """A request the server refuses; carries the HTTP status and the offending field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"error": self.message}
        if self.field:
            doc["field"] = self.field
        return doc


class _Metrics:
    """Prometheus metrics, multiprocess-aware (``PROMETHEUS_MULTIPROC_DIR``)."""

    def __init__(self, pool: str) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.multiproc = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.requests = Counter(
            "dataplat_serving_requests_total",
            "Inference requests by model and HTTP status",
            ["pool", "model", "status"],
        )
        self.latency = Histogram(
            "dataplat_serving_request_duration_seconds",
            "Time from request start to response, inference requests",
            ["pool", "model"],
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
        )
        self.inflight = Gauge(
            "dataplat_serving_inflight_requests",
            "Inference requests being served (sum over live workers)",
            ["pool"],
            multiprocess_mode="livesum",
        )
        self.shed = Counter(
            "dataplat_serving_shed_total",
            "Inference requests answered 503 past the in-flight bound",
            ["pool"],
        )
        self.pool = pool
        self.inflight_child = self.inflight.labels(pool)
        self.shed_child = self.shed.labels(pool)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

        if self.multiproc:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class OipApp:
    """The ASGI application: routes, validation, inference, metrics and load shedding."""

    def __init__(self, config: ServerConfig, models: dict[str, dict[str, OnnxModel]] | None = None) -> None:
        self.config = config
        self.models = models if models is not None else load_models(config.repo, config.intra_op_threads)
        self.latest = {name: max(vs, key=int) for name, vs in self.models.items()}
        self.inflight = 0
        self.ready = True
        self.metrics = _Metrics(config.pool)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")
        self._metadata_cache: dict[tuple[str, str], bytes] = {}

    # --- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path.startswith("/v2/models/"):
                await self._models_route(path[len("/v2/models/") :], method, scope, receive, send)
                return
            if path == "/v2/health/live":
                await _respond(send, 200, b'{"live":true}')
            elif path == "/v2/health/ready":
                await _respond(send, 200 if self.ready else 503, _json_bytes({"ready": self.ready}))
            elif path == "/v2":
                await _respond(
                    send,
                    200,
                    _json_bytes({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []}),
                )
            elif path == "/metrics":
                body, ctype = self.metrics.exposition()
                await _respond(send, 200, body, ctype.encode())
            else:
                raise RequestError(404, f"no route for {path}")
        except RequestError as exc:
            await _respond(send, exc.status, _json_bytes(exc.body()))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.ready = False
                self._executor.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _models_route(self, rest: str, method: str, scope: Scope, receive: Receive, send: Send) -> None:
        parts = rest.split("/")
        name, version, action = parts[0], None, ""
        tail = parts[1:]
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        if len(tail) > 1:
            raise RequestError(404, f"no route for {scope['path']}")
        action = tail[0] if tail else ""
        if action == "infer":
            if method != "POST":
                raise RequestError(405, "infer takes POST")
            await self._infer(name, version, receive, send)
            return
        if method != "GET":
            raise RequestError(405, f"{scope['path']} takes GET")
        model = self._model(name, version)
        if action == "ready":
            await _respond(send, 200, _json_bytes({"name": name, "ready": self.ready}))
        elif action == "":
            key = (name, model.version.version)
            if key not in self._metadata_cache:
                self._metadata_cache[key] = _json_bytes(self._model_metadata(name, model))
            await _respond(send, 200, self._metadata_cache[key])
        else:
            raise RequestError(404, f"no route for {scope['path']}")

    # --- models -------------------------------------------------------------------------

    def _model(self, name: str, version: str | None) -> OnnxModel:
        versions = self.models.get(name)
        if versions is None:
            raise RequestError(
                404, f"unknown model {name!r}; this server has {', '.join(sorted(self.models))}"
            )
        v = self.latest[name] if version in (None, "") else version
        try:
            return versions[v]  # type: ignore[index]
        except KeyError:
            raise RequestError(
                404, f"model {name!r} has no version {v}; it has {', '.join(sorted(versions, key=int))}"
            ) from None

    def _model_metadata(self, name: str, model: OnnxModel) -> dict[str, Any]:
        meta = model.metadata
        return {
            "name": name,
            "versions": sorted(self.models[name], key=int),
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": meta.input_name, "datatype": "FP32", "shape": [-1, model.n_features]}],
            "outputs": [
                {"name": LABEL_OUTPUT, "datatype": "INT64", "shape": [-1]},
                {"name": PROBA_OUTPUT, "datatype": "FP32", "shape": [-1, len(meta.classes)]},
            ],
            "parameters": {
                "version": model.version.version,
                "feature_names": list(meta.feature_names),
                "classes": list(meta.classes),
                "trained_at": meta.trained_at,
                "metrics": meta.metrics,
            },
        }

    # --- inference ----------------------------------------------------------------------

    async def _infer(self, name: str, version: str | None, receive: Receive, send: Send) -> None:
        metrics = self.metrics
        if self.inflight >= self.config.max_inflight:
            metrics.shed_child.inc()
            metrics.requests.labels(metrics.pool, name, "503").inc()
            await _respond(
                send,
                503,
                _json_bytes({"error": f"overloaded: {self.inflight} requests in flight on this worker"}),
                extra=[(b"retry-after", b"1")],
            )
            return
        start = time.perf_counter()
        self.inflight += 1
        metrics.inflight_child.inc()
        status = 500
        try:
            model = self._model(name, version)
            body = await _read_body(receive, self.config.max_body)
            request_id, X, wanted = _parse_request(body, model)
            if X.shape[0] <= INLINE_MAX_ROWS:
                # one turn of the loop first: every request parsed in this turn is counted
                # in flight before any is answered, so a burst past the bound is shed
                await asyncio.sleep(0)
                outputs = model.run(X)
            else:
                loop = asyncio.get_running_loop()
                outputs = await loop.run_in_executor(self._executor, model.run, X)
            doc: dict[str, Any] = {
                "model_name": name,
                "model_version": model.version.version,
                "outputs": [_tensor(k, outputs[k]) for k in wanted],
            }
            if request_id is not None:
                doc["id"] = request_id
            status = 200
            await _respond(send, 200, _json_bytes(doc))
        except RequestError as exc:
            status = exc.status
            await _respond(send, exc.status, _json_bytes(exc.body()))
        except Exception as exc:  # noqa: BLE001 - a failed inference is a 500 for the client, not a crash
            await _respond(send, 500, _json_bytes({"error": f"inference failed: {exc}"}))
        finally:
            self.inflight -= 1
            metrics.inflight_child.dec()
            metrics.requests.labels(metrics.pool, name, str(status)).inc()
            metrics.latency.labels(metrics.pool, name).observe(time.perf_counter() - start)


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestError(400, "client disconnected before the body was complete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _parse_request(body: bytes, model: OnnxModel) -> tuple[Any, np.ndarray, list[str]]:
    """(id, features [N, F] float32, output names) of an OIP inference request, or RequestError."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"request body is not JSON: {exc}", "body") from None
    if not isinstance(doc, dict):
        raise RequestError(400, "request body must be a JSON object", "body")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(400, "'inputs' must be a non-empty list of tensors", "inputs")
    if len(inputs) != 1:
        raise RequestError(400, f"the model takes one input, got {len(inputs)}", "inputs")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise RequestError(400, "a tensor must be a JSON object", "inputs[0]")
    expected = model.metadata.input_name
    if tensor.get("name") != expected:
        raise RequestError(
            400, f"input must be named {expected!r}, got {tensor.get('name')!r}", "inputs[0].name"
        )
    dtype = _DATATYPES.get(tensor.get("datatype"))  # type: ignore[arg-type]
    if dtype is None:
        raise RequestError(
            400, f"datatype must be one of {', '.join(_DATATYPES)}, got {tensor.get('datatype')!r}",
            "inputs[0].datatype",
        )  # fmt: skip
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[0] < 1
        or shape[1] != model.n_features
    ):
        raise RequestError(
            400, f"shape must be [N, {model.n_features}] with N >= 1, got {shape!r}", "inputs[0].shape"
        )
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError(400, "'data' must be a list of numbers", "inputs[0].data")
    try:
        X = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise RequestError(400, f"'data' must hold only numbers: {exc}", "inputs[0].data") from None
    if X.size != shape[0] * shape[1]:
        raise RequestError(
            400,
            f"'data' holds {X.size} values but shape {shape} needs {shape[0] * shape[1]}",
            "inputs[0].data",
        )
    X = X.reshape(shape[0], shape[1]).astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        raise RequestError(400, "'data' holds NaN or infinite values", "inputs[0].data")
    wanted = [LABEL_OUTPUT, PROBA_OUTPUT]
    outs = doc.get("outputs")
    if outs is not None:
        if not isinstance(outs, list) or not all(isinstance(o, dict) for o in outs):
            raise RequestError(400, "'outputs' must be a list of objects with a name", "outputs")
        names = [o.get("name") for o in outs]
        for i, n in enumerate(names):
            if n not in (LABEL_OUTPUT, PROBA_OUTPUT):
                raise RequestError(400, f"unknown output {n!r}", f"outputs[{i}].name")
        wanted = names or wanted
    return doc.get("id"), X, wanted


def _tensor(name: str, value: np.ndarray) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": _OUT_DATATYPE.get(value.dtype, "FP32"),
        "shape": list(value.shape),
        "data": value.ravel().tolist(),
    }


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def load_models(repo: Path, intra_op_threads: int = 1) -> dict[str, dict[str, OnnxModel]]:
    """Every version of every model in ``repo``, loaded into ONNX Runtime sessions."""
    repository = ModelRepository(repo)
    models = {
        name: {v: OnnxModel(repository.get(name, v), intra_op_threads) for v in repository.versions(name)}
        for name in repository.models()
    }
    if not models:
        from dataplat.serving.model import ModelError

        raise ModelError(
            f"no model in the repository {repo}; publish one first (python -m dataplat.serving.model)"
        )
    return models


def create_app() -> OipApp:
    """The app for a worker process, configured from ``DATAPLAT_SERVING_*`` (uvicorn's factory)."""
    return OipApp(ServerConfig.from_env())


def parse_listen(value: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[v6]:PORT`` too) -> (address, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"--listen must be ADDR:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def serve(config: ServerConfig, log_level: str = "warning") -> None:
    """Run the server in the foreground until SIGTERM/SIGINT (uvicorn, ``config.workers`` processes)."""
    # check the repository here, so a bad one fails before any worker starts
    repository = ModelRepository(config.repo)
    if not repository.models():
        from dataplat.serving.model import ModelError

        raise ModelError(f"no model in the repository {config.repo}")
    os.environ.update(config.to_env())
    run_asgi_workers("dataplat.serving.server:create_app", config.host, config.port, config.workers,
                     log_level=log_level, backlog=1024, metrics_prefix="dataplat-serving-metrics-")


def run_asgi_workers(factory: str, host: str, port: int, workers: int, *, log_level: str = "warning",
                     backlog: int = 1024, metrics_prefix: str = "dataplat-metrics-") -> None:
    """Run the ASGI app ``factory`` (``module:function``) in ``workers`` processes until
    SIGTERM/SIGINT: uvicorn with httptools behind its supervisor, which starts a worker
    that dies again; the workers share one listening socket with ``TCP_NODELAY``
    (:func:`listen_socket`), and their Prometheus metrics are summed through a
    multiprocess folder that is removed at the end. The app reads its settings from the
    environment, which the caller sets before calling.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    metrics_dir = Path(tempfile.mkdtemp(prefix=metrics_prefix))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    uv_config = uvicorn.Config(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http="httptools",
        loop="asyncio",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=5,
        backlog=backlog,
    )
    sock = listen_socket(host, port, backlog=backlog)
    try:
        Multiprocess(uv_config, sockets=[sock]).run()
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def listen_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket whose accepted connections get ``TCP_NODELAY``.

    asyncio sets ``TCP_NODELAY`` only on sockets whose ``proto`` is ``IPPROTO_TCP``, and
    uvicorn's own multi-worker socket has proto 0: its responses, written as headers then
    body, then wait ~40 ms for the client's delayed ACK (Nagle). This one has the proto.
    """
    family, type_, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise PortInUseError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``--repo DIR --listen ADDR:PORT --workers N [--max-inflight N] [--pool NAME]``."""
    parser = argparse.ArgumentParser(
        prog="python -m dataplat.serving.server",
        description="Open Inference Protocol server (ONNX Runtime, CPU)",
    )
    parser.add_argument("--repo", required=True, type=Path, help="model repository (Triton layout)")
    parser.add_argument("--listen", default="127.0.0.1:58100", type=parse_listen, help="ADDR:PORT")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the socket")
    parser.add_argument("--max-inflight", type=int, default=DEFAULT_MAX_INFLIGHT, help="per worker")
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, help="bytes")
    parser.add_argument("--intra-op-threads", type=int, default=1)
    parser.add_argument("--pool", default="", help="pool name (metrics label)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.max_inflight < 1:
        parser.error("--workers and --max-inflight must be at least 1")
    host, port = args.listen
    serve(
        ServerConfig(
            repo=args.repo.resolve(),
            host=host,
            port=port,
            workers=args.workers,
            max_inflight=args.max_inflight,
            max_body=args.max_body,
            intra_op_threads=args.intra_op_threads,
            pool=args.pool,
        ),
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
