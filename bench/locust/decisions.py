"""Locust load on the real-time decision service: ``POST /v1/decisions`` in steps of users.

Runs on its own, for people who know Locust::

    locust -f bench/locust/decisions.py --host http://127.0.0.1:58300 --headless \\
        --processes -1 --csv /tmp/decisions --csv-full-history --only-summary

``dataplat bench run --suite decisions`` runs it the same way through
:mod:`dataplat.bench.locustrun` (once against the service, once against a bare ASGI
endpoint answering a constant decision).

Every request is a fresh event (a unique ``event_id``), of a random type, for a random
customer in ``[DATAPLAT_CUSTOMER_MIN, DATAPLAT_CUSTOMER_MAX]``. Answers with
``"degraded": true`` (decided without a model score) are counted under the request name
``decision (degraded)``, the others under ``decision``; both together are the aggregate.

Environment (all optional):

==========================  =========  =================================================
``DATAPLAT_STEPS``          8,16,32    users at each step (the :class:`StepShape`)
``DATAPLAT_STEP_S``         10         seconds per step
``DATAPLAT_RATE``           unset      requests/s to pace at with the largest step's users
                                       (``constant_throughput`` of RATE / max(steps) per
                                       user); unset: closed loop, no wait
``DATAPLAT_CUSTOMER_MIN``   1          customer ids drawn from this range
``DATAPLAT_CUSTOMER_MAX``   1000
``DATAPLAT_MAX_ERROR_RATE`` 0.01       the process exits 1 when the failure ratio is higher
``DATAPLAT_PATH``           /v1/decisions
==========================  =========  =================================================

Percentile windows follow the step length (``CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW``)
and worker processes report every second, so that each step's rows of
``_stats_history.csv`` describe that step.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import uuid
from typing import Any

import locust.runners
import locust.stats
from locust import FastHttpUser, LoadTestShape, constant, constant_throughput, events, task
from locust.env import Environment

EVENT_TYPES = ("payroll_credited", "large_inflow", "product_maturity", "transfer_out_other_bank", "app_login")
AMOUNTS = (2_000, 8_000, 60_000, 300_000)
NAME = "decision"
DEGRADED_NAME = "decision (degraded)"


def _env_steps() -> list[int]:
    raw = os.environ.get("DATAPLAT_STEPS", "8,16,32")
    steps = [int(x) for x in raw.replace(" ", "").split(",") if x]
    if not steps or any(s < 1 for s in steps):
        raise ValueError(f"DATAPLAT_STEPS must list positive user counts, got {raw!r}")
    return steps


STEPS = _env_steps()
STEP_S = float(os.environ.get("DATAPLAT_STEP_S", "10"))
RATE = float(os.environ["DATAPLAT_RATE"]) if os.environ.get("DATAPLAT_RATE") else None
CUSTOMER_MIN = int(os.environ.get("DATAPLAT_CUSTOMER_MIN", "1"))
CUSTOMER_MAX = int(os.environ.get("DATAPLAT_CUSTOMER_MAX", "1000"))
MAX_ERROR_RATE = float(os.environ.get("DATAPLAT_MAX_ERROR_RATE", "0.01"))
PATH = os.environ.get("DATAPLAT_PATH", "/v1/decisions")

# One step's rows in _stats_history.csv cover that step: percentiles over a window as long
# as a step (at least 2 s), stats from worker processes every second instead of every 3 s.
locust.stats.CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW = max(2, int(STEP_S))
locust.runners.WORKER_REPORT_INTERVAL = 1.0

_RUN = uuid.uuid4().hex[:12]
_SEQ = itertools.count(1)


def new_event(rng: random.Random) -> dict[str, Any]:
    """A fresh decision event: a unique id, a random type, customer and amount."""
    doc: dict[str, Any] = {
        "event_id": f"locust-{_RUN}-{os.getpid()}-{next(_SEQ)}",
        "type": rng.choice(EVENT_TYPES),
        "customer_id": rng.randint(CUSTOMER_MIN, CUSTOMER_MAX),
    }
    if doc["type"] != "app_login":
        doc["amount"] = round(rng.choice(AMOUNTS) * (0.2 + rng.random()), 2)
    return doc


class DecisionUser(FastHttpUser):
    """Posts decision events back to back (or paced at ``DATAPLAT_RATE`` / users when set)."""

    wait_time = constant_throughput(RATE / max(STEPS)) if RATE else constant(0)
    rng = random.Random()

    @task
    def decide(self) -> None:
        """One decision; 200 with ``degraded`` counts as ``decision (degraded)``."""
        with self.client.post(PATH, json=new_event(self.rng), name=NAME, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            try:
                degraded = bool(resp.json().get("degraded"))
            except (ValueError, AttributeError):
                resp.failure("answer is not a JSON object")
                return
            if degraded:
                resp.request_meta["name"] = DEGRADED_NAME
            resp.success()


class StepShape(LoadTestShape):
    """``DATAPLAT_STEPS`` users, ``DATAPLAT_STEP_S`` seconds each, all spawned at once; then stop."""

    use_common_options = False

    def tick(self) -> tuple[int, float] | None:
        """(users, spawn rate) for the current step, None after the last step."""
        step = int(self.get_run_time() // STEP_S)
        if step >= len(STEPS):
            return None
        users = STEPS[step]
        return users, float(max(users, 1) * 10)


@events.quitting.add_listener
def _verdict(environment: Environment, **_kwargs: Any) -> None:
    """Exit code 1 when the failure ratio exceeds ``DATAPLAT_MAX_ERROR_RATE`` (Locust's pattern)."""
    runner = environment.runner
    if runner is not None and isinstance(runner, locust.runners.WorkerRunner):
        return
    total = environment.stats.total
    if total.num_requests == 0:
        logging.error("no request was made")
        environment.process_exit_code = 1
    elif total.fail_ratio > MAX_ERROR_RATE:
        logging.error("failure ratio %.4f > %.4f", total.fail_ratio, MAX_ERROR_RATE)
        environment.process_exit_code = 1
    else:
        environment.process_exit_code = 0
