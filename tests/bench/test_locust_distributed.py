"""Distributed load generation: a real Locust master with workers on two loadgen hosts.

The inventory has two loadgen hosts, 127.0.0.1 and 127.0.0.2 (both loopback, both
``ansible_connection: local``, so their workers are started as processes here, the way
Ansible would reach them); the master runs here and every worker reports to it. A tiny
HTTP server counts the requests each loadgen host sent (a header names the host), and the
master's CSVs must hold them all.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dataplat.bench.locustrun import LocustRun, loadgen_workers, run_locust
from dataplat.inventory.loader import load_inventory

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Counting(BaseHTTPRequestHandler):
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        with self.lock:
            self.counts[self.headers.get("X-Loadgen-Host", "?")] += 1
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


def test_master_aggregates_workers_of_two_loadgen_hosts(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "all:\n  vars:\n    ansible_connection: local\n  children:\n    loadgen:\n      hosts:\n"
        "        lg-1: {ansible_host: 127.0.0.1, locust_processes: 1}\n"
        "        lg-2: {ansible_host: 127.0.0.2, locust_processes: 1}\n"
    )
    workers = loadgen_workers(load_inventory(inv))
    assert [(w.name, w.address, w.processes, w.connection) for w in workers] == [
        ("lg-1", "127.0.0.1", 1, "local"),
        ("lg-2", "127.0.0.2", 1, "local"),
    ]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    _Counting.counts = Counter()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = LocustRun(
            HERE / "distributed" / "tiny_locustfile.py",
            f"http://127.0.0.1:{server.server_address[1]}",
            steps=[2, 4],
            step_s=3.0,
            out_dir=tmp_path / "out",
            name="dist",
            workers=workers,
            master_address=workers[0].address,
            master_port=_free_port(),
        )
        argv = spec.command()
        assert "--master" in argv and argv[argv.index("--expect-workers") + 1] == "2"
        result = run_locust(spec)
    finally:
        server.shutdown()
    log = (tmp_path / "out" / "dist.log").read_text()
    assert result.exit_code == 0 and not result.timed_out, log
    served = dict(_Counting.counts)
    # both hosts' workers sent load, and the master's stats hold every request the server answered
    assert served.get("lg-1", 0) > 10 and served.get("lg-2", 0) > 10, served
    assert result.total["requests"] == sum(served.values()), (result.total, served)
    assert result.total["failures"] == 0
    assert sum(s["requests"] for s in result.steps) == result.total["requests"]
    assert set(result.files) >= {"worker:lg-1", "worker:lg-2"}


def test_single_machine_command_unchanged(tmp_path: Path) -> None:
    """Without workers the command is the one-machine `--processes N` form it always was."""
    spec = LocustRun(HERE / "distributed" / "tiny_locustfile.py", "http://x", [1], 1.0, tmp_path, processes=2)
    argv = spec.command()
    assert argv[argv.index("--processes") + 1] == "2" and "--master" not in argv
    # its master listens on loopback, on a port of its own (two runs side by side do not collide)
    assert argv[argv.index("--master-bind-host") + 1] == "127.0.0.1"
    assert argv[argv.index("--master-bind-port") + 1] == argv[argv.index("--master-port") + 1] != "5557"
