"""A tiny step load for the distributed Locust test: GET / with the worker's host in a header."""

from __future__ import annotations

import os

from locust import HttpUser, LoadTestShape, constant_throughput, task


class Tiny(HttpUser):
    wait_time = constant_throughput(20)

    @task
    def root(self) -> None:
        self.client.get("/", headers={"X-Loadgen-Host": os.environ.get("DATAPLAT_LOADGEN_HOST", "?")})


class Steps(LoadTestShape):
    steps = [int(s) for s in os.environ.get("DATAPLAT_STEPS", "4").split(",")]
    step_s = float(os.environ.get("DATAPLAT_STEP_S", "3"))

    def tick(self):  # type: ignore[no-untyped-def]
        i = int(self.get_run_time() // self.step_s)
        if i >= len(self.steps):
            return None
        return self.steps[i], 100
