"""A tiny ASGI app for the worker-scaling tests (imported by the workers, by name).

``GET /slow?ms=N`` answers after N ms with the worker's pid; ``GET /pid`` at once. The
lifespan startup takes ``SCALING_TEST_STARTUP_S`` seconds (a worker must not get a
connection before it ends). Request durations go to the histogram
``scaling_test_duration_seconds{source="http"}`` (Prometheus multiprocess), which the
supervisor reads as the in-flight requests of each worker.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from prometheus_client import Histogram

DURATION = Histogram("scaling_test_duration_seconds", "request durations", ["source"])


class App:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await asyncio.sleep(float(os.environ.get("SCALING_TEST_STARTUP_S", "0")))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        t0 = time.perf_counter()
        query = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode().split("&") if "=" in p)
        if scope["path"] == "/slow":
            await asyncio.sleep(float(query.get("ms", "100")) / 1000)
        body = str(os.getpid()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        DURATION.labels("http").observe(time.perf_counter() - t0)


def create_app() -> App:
    return App()
