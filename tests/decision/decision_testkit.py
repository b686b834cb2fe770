"""Helpers of the decision tests: the service as a real subprocess on a free port, HTTP calls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TEST_PREFIX = "dtest-"
"""Every event id the tests send starts with this (teardown deletes their decisions)."""


@dataclass
class ServiceProcess:
    """A running ``python -m dataplat.decision.service``."""

    proc: subprocess.Popen[bytes]
    port: int
    log_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_service(
    home: Path, work: Path, name: str, port: int, pools: list[str], extra: list[str] | None = None
) -> ServiceProcess:
    """Start the service (one worker) and wait, bounded, until ``/readyz`` answers 200."""
    log_file = work / f"{name}.log"
    argv = [sys.executable, "-m", "dataplat.decision.service", "--home", str(home)]
    argv += ["--listen", f"127.0.0.1:{port}", "--workers", "1", "--log-level", "info"]
    for p in pools:
        argv += ["--pool", p]
    argv += extra or []
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    service = ServiceProcess(proc, port, log_file)
    deadline = time.monotonic() + 40
    delay = 0.05
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"decision service exited with {proc.returncode}:\n{service.log()}")
        try:
            status, _ = get(service.url + "/readyz")
            if status == 200:
                return service
        except OSError:
            pass
        if time.monotonic() > deadline:
            service.stop()
            raise AssertionError(f"decision service not ready after 40 s:\n{service.log()}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(url: str, body: Any, timeout: float = 5.0) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST JSON (or raw bytes); (status, decoded JSON answer, headers)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
