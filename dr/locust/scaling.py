"""Locust load of the scaling drill: a step load (low -> high -> low users) and a record of every request.

``dataplat drill run scaling`` runs it through :mod:`dataplat.bench.locustrun`; it runs on
its own too::

    DATAPLAT_STEPS=2,2,16,16,16,2,2 DATAPLAT_STEP_S=1 DATAPLAT_SAMPLES_DIR=/tmp/s \\
        locust -f dr/locust/scaling.py --headless --host http://127.0.0.1:58300

Every user sends requests back to back (a closed loop: the offered load is the number of
users), either decisions (``POST /v1/decisions``, a fresh event each time; ``degraded``
answers are answers) or Open Inference Protocol inference straight to a serving pool.
Each Locust process appends every request to ``DATAPLAT_SAMPLES_DIR/requests-<pid>.csv``
(start time in seconds since the epoch, latency in ms, 1 answered / 0 failed), from which
the drill computes its per-second series; the shape writes ``shape.json`` (when it
started) there once.

Environment:

==========================  ===============  ===========================================
``DATAPLAT_STEPS``          2,16,2           users at each step (:class:`ScalingShape`)
``DATAPLAT_STEP_S``         10               seconds per step
``DATAPLAT_SPAWN_RATE``     10               users started or stopped per second
``DATAPLAT_TARGET``         decision         ``decision`` or ``pool``
``DATAPLAT_PATH``           /v1/decisions    the request path (pool: ``/v2/models/M/infer``)
``DATAPLAT_FEATURES``       8                features of an inference request (pool)
``DATAPLAT_CUSTOMER_MIN``   1                customer ids of decision events
``DATAPLAT_CUSTOMER_MAX``   1000
``DATAPLAT_TIMEOUT_S``      10               a request that takes longer fails
``DATAPLAT_SAMPLES_DIR``    .                where the request records go
==========================  ===============  ===========================================
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, LoadTestShape, constant, events, task

EVENT_TYPES = ("payroll_credited", "large_inflow", "product_maturity", "transfer_out_other_bank", "app_login")
STEPS = [int(x) for x in os.environ.get("DATAPLAT_STEPS", "2,16,2").split(",") if x.strip()]
STEP_S = float(os.environ.get("DATAPLAT_STEP_S", "10"))
SPAWN_RATE = float(os.environ.get("DATAPLAT_SPAWN_RATE", "10"))
TARGET = os.environ.get("DATAPLAT_TARGET", "decision")
PATH = os.environ.get("DATAPLAT_PATH", "/v1/decisions")
FEATURES = int(os.environ.get("DATAPLAT_FEATURES", "8"))
CUSTOMER_MIN = int(os.environ.get("DATAPLAT_CUSTOMER_MIN", "1"))
CUSTOMER_MAX = int(os.environ.get("DATAPLAT_CUSTOMER_MAX", "1000"))
TIMEOUT_S = float(os.environ.get("DATAPLAT_TIMEOUT_S", "10"))
SAMPLES = Path(os.environ.get("DATAPLAT_SAMPLES_DIR", "."))

_RUN = uuid.uuid4().hex[:12]
_SEQ = itertools.count(1)
_ROWS: list[str] = []


def _flush() -> None:
    """Append the recorded requests to this process's file."""
    if not _ROWS:
        return
    SAMPLES.mkdir(parents=True, exist_ok=True)
    with (SAMPLES / f"requests-{os.getpid()}.csv").open("a") as fh:
        fh.write("".join(_ROWS))
    _ROWS.clear()


atexit.register(_flush)


@events.request.add_listener
def _record(response_time: float, exception: Any = None, start_time: float | None = None, **_kw: Any) -> None:
    start = start_time if start_time is not None else time.time() - response_time / 1000
    _ROWS.append(f"{start:.4f},{response_time:.3f},{0 if exception else 1}\n")
    if len(_ROWS) >= 2000:
        _flush()


@events.quitting.add_listener
def _quitting(**_kw: Any) -> None:
    _flush()


class ScalingUser(FastHttpUser):
    """Requests back to back: decisions, or inference straight to a pool."""

    wait_time = constant(0)
    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S
    rng = random.Random()

    def _body(self) -> dict[str, Any]:
        if TARGET == "pool":
            features = [round(self.rng.random(), 4) for _ in range(FEATURES)]
            return {
                "inputs": [{"name": "features", "shape": [1, FEATURES], "datatype": "FP32", "data": features}]
            }
        doc: dict[str, Any] = {
            "event_id": f"scaling-{_RUN}-{os.getpid()}-{next(_SEQ)}",
            "type": self.rng.choice(EVENT_TYPES),
            "customer_id": self.rng.randint(CUSTOMER_MIN, CUSTOMER_MAX),
        }
        if doc["type"] != "app_login":
            doc["amount"] = round(self.rng.choice((2_000, 8_000, 60_000)) * (0.2 + self.rng.random()), 2)
        return doc

    @task
    def request(self) -> None:
        """One request; anything but 200 is a failure."""
        with self.client.post(PATH, json=self._body(), name=TARGET, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
            else:
                resp.success()


class ScalingShape(LoadTestShape):
    """``DATAPLAT_STEPS`` users, ``DATAPLAT_STEP_S`` seconds each, at ``DATAPLAT_SPAWN_RATE``; then stop."""

    use_common_options = False
    _announced = False

    def tick(self) -> tuple[int, float] | None:
        """(users, spawn rate) now; None after the last step."""
        run_time = self.get_run_time()
        if not self._announced:
            self._announced = True
            SAMPLES.mkdir(parents=True, exist_ok=True)
            doc = {
                "started_at": time.time() - run_time,
                "steps": STEPS,
                "step_s": STEP_S,
                "spawn_rate": SPAWN_RATE,
            }
            (SAMPLES / "shape.json").write_text(json.dumps(doc))
        step = int(run_time // STEP_S)
        if step >= len(STEPS):
            return None
        return STEPS[step], SPAWN_RATE
