"""Helpers of the serving tests: real server processes on free ports, started as pid-file daemons."""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dataplat.deploy import daemon

TEST_SF = 0.004
"""4,000 customers: every class of the label occurs, training takes about a second."""
TEST_SEED = 7


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """A running ``python -m dataplat.serving.server``."""

    name: str
    port: int
    run_dir: Path
    log_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return daemon.read_state(self.name, self.run_dir).pid

    def worker_pids(self) -> list[int]:
        """The uvicorn workers (children of the supervisor)."""
        parent = self.pid
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            if parent is not None and int(fields[1]) == parent:
                out.append(int(stat.parent.name))
        # multiprocessing's resource tracker is a child too; workers import onnxruntime
        return [p for p in out if _maps_onnxruntime(p)]

    def stop(self) -> None:
        daemon.stop(self.name, self.run_dir, timeout=10)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def _maps_onnxruntime(pid: int) -> bool:
    try:
        return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def start_server(
    repo: Path, work: Path, name: str, *, workers: int = 1, max_inflight: int = 32, pool: str = ""
) -> ServerProcess:
    """Start a server as a daemon and wait (bounded) until its model is ready."""
    port = free_port()
    run_dir, log_file = work / "run", work / "log" / f"{name}.log"
    argv = [sys.executable, "-m", "dataplat.serving.server", "--repo", str(repo)]
    argv += ["--listen", f"127.0.0.1:{port}", "--workers", str(workers), "--max-inflight", str(max_inflight)]
    argv += ["--pool", pool or name, "--log-level", "info"]
    spec = daemon.DaemonSpec(
        name=name,
        argv=tuple(argv),
        run_dir=run_dir,
        log_file=log_file,
        env={"PYTHONUNBUFFERED": "1", **({"HOME": os.environ["HOME"]} if "HOME" in os.environ else {})},
        ports={port: "serving_port"},
    )
    daemon.start(spec)
    server = ServerProcess(name, port, run_dir, log_file)
    wait_ready(server, workers)
    return server


def wait_ready(server: ServerProcess, workers: int = 1, timeout: float = 30.0) -> None:
    """Poll the model's readiness with backoff; with several workers, until all of them have started."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            url = f"{server.url}/v2/models/propensity/ready"
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200 and server.log().count("Application startup complete") >= workers:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"server {server.name} not ready after {timeout:.0f} s:\n{server.log()}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
