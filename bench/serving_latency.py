#!/usr/bin/env python3
"""Serving hop latency: dataplat's thin OIP server against MLServer, side by side.

Both servers serve the same ONNX propensity model (trained here on the synthetic bank)
over the Open Inference Protocol (KServe V2 REST) and get the same single-row requests
from the same load generator, a minimal keep-alive HTTP/1.1 client on asyncio (so the
client's own cost stays small and equal for both). Per server and round:

* ``seq``: one request at a time (unloaded latency, p50/p99);
* ``sat``: closed loop with ``--concurrency`` connections (throughput at saturation);
* ``half``: open loop at half the saturation throughput, latency measured from the
  scheduled send time (no coordinated omission): the decision service's operating point;
  ``sent p99`` is measured from the actual send instead, which leaves out the load
  generator's own stalls (on a busy 2-core machine they are most of the tail);
* ``fixed``: open loop at ``--rate`` requests/s, the same for both servers (the decision
  service saturates long before the pool does, so this is the load the pool really sees).

Rounds alternate between the servers; the medians over rounds are printed. With
``--client`` the thin server is also measured through :class:`dataplat.serving.client.PoolRouter`
(aiohttp), the path the decision service takes.

MLServer (PyPI ``mlserver``) runs from its own virtual environment (``--mlserver-bin``,
``DATAPLAT_MLSERVER_BIN`` or ``mlserver`` on PATH), since it pins its own FastAPI,
pydantic and uvicorn; it serves the model with a custom runtime that calls ONNX Runtime
the way ours does (MLServer has no maintained ONNX runtime of its own). Without it, only
the thin server is measured and the reason is printed. Set it up with::

    python3.11 -m venv /tmp/mlserver-venv
    /tmp/mlserver-venv/bin/pip install "mlserver==1.7.1" "uvloop<0.22" "onnxruntime>=1.20,<1.32"

(uvloop 0.22+ breaks MLServer 1.7.1's inference workers: ``parallel_workers`` > 0 dies
with "There is no current event loop".)

Measured on the 2-core reference machine (shared, load average 4-7 during the run), 3
rounds of 3 s, medians: thin server (2 workers) seq p50 0.41 / p99 2.45 ms, 3,696 req/s
at saturation, p50 1.38 / p99 4.89 ms at 300 req/s; MLServer 1.7.1 (parallel_workers=0)
seq 1.53 / 6.56 ms, 844 req/s, 2.25 / 28.5 ms at 300 req/s; MLServer (parallel_workers=2)
2.11 / 12.7 ms, 339 req/s, 8.77 / 145 ms at 300 req/s.

Exit code 1 when the thin server's p99 at ``--rate`` exceeds ``--max-p99-ms``.

Example: ``python bench/serving_latency.py --rounds 3 --duration 3 --json-out /tmp/serving.json``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from proclib import Conn, build_request, free_port, pct, stop, wait_ready

REPO = Path(__file__).resolve().parents[1]

_MLSERVER_RUNTIME = """
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            self.settings.parameters.uri, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        X = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        values = self.session.run(self.output_names, {"features": X})
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(n, v) for n, v in zip(self.output_names, values)],
        )
"""








# --- load generator ---------------------------------------------------------------------




async def sequential(port: int, request: bytes, n: int) -> dict[str, float]:
    conn = await Conn.open(port)
    lat: list[float] = []
    errors = 0
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            if await conn.roundtrip(request) != 200:
                errors += 1
            lat.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "errors": errors, "n": n}


async def closed_loop(port: int, request: bytes, concurrency: int, duration: float) -> dict[str, float]:
    conns = [await Conn.open(port) for _ in range(concurrency)]
    lat: list[float] = []
    errors = 0
    end = time.perf_counter() + duration

    async def worker(c: Conn) -> None:
        nonlocal errors
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            if await c.roundtrip(request) != 200:
                errors += 1
            lat.append(time.perf_counter() - t0)

    t_start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t_start
    for c in conns:
        c.close()
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "errors": errors,
        "n": len(lat),
    }


async def open_loop(
    port: int, request: bytes, rate: float, duration: float, max_conns: int = 64
) -> dict[str, float]:
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(8):
        idle.put_nowait(await Conn.open(port))
    opened = 8
    lat: list[float] = []
    service: list[float] = []
    errors = 0
    tasks: list[asyncio.Task[None]] = []

    async def one(scheduled: float) -> None:
        nonlocal errors, opened
        if idle.empty() and opened < max_conns:
            opened += 1
            conn = await Conn.open(port)
        else:
            conn = await idle.get()
        sent = time.perf_counter()
        if await conn.roundtrip(request) != 200:
            errors += 1
        done = time.perf_counter()
        lat.append(done - scheduled)
        service.append(done - sent)
        idle.put_nowait(conn)

    interval = 1.0 / rate
    t0 = time.perf_counter()
    n = int(rate * duration)
    for i in range(n):
        scheduled = t0 + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + 30)
    elapsed = time.perf_counter() - t0
    while not idle.empty():
        idle.get_nowait().close()
    return {
        "rate": rate,
        "achieved_rps": len(lat) / elapsed,
        "p50_ms": pct(lat, 50) * 1e3,
        "p99_ms": pct(lat, 99) * 1e3,
        "sent_p50_ms": pct(service, 50) * 1e3,
        "sent_p99_ms": pct(service, 99) * 1e3,
        "errors": errors,
        "n": len(lat),
    }


async def measure(port: int, path: str, body: bytes, args: argparse.Namespace) -> dict[str, Any]:
    request = build_request(port, path, body)
    await closed_loop(port, request, 4, 0.5)  # warm up
    seq = await sequential(port, request, args.seq_requests)
    sat = await closed_loop(port, request, args.concurrency, args.duration)
    half = await open_loop(port, request, sat["rps"] / 2, args.duration)
    fixed = await open_loop(port, request, args.rate, args.duration)
    return {"seq": seq, "sat": sat, "half": half, "fixed": fixed}


async def measure_client(port: int, row: list[float], n: int) -> dict[str, float]:
    from dataplat.serving.client import PoolRouter, PoolSpec

    lat: list[float] = []
    async with PoolRouter(
        [PoolSpec("cpu", (f"http://127.0.0.1:{port}",))], timeout_s=1.0, deadline_s=2.0
    ) as router:
        for _ in range(20):
            await router.infer("propensity", [row])
        for _ in range(n):
            t0 = time.perf_counter()
            await router.infer("propensity", [row])
            lat.append(time.perf_counter() - t0)
    return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "n": n}


# --- servers ----------------------------------------------------------------------------


def start_thin(repo: Path, workers: int, tmp: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = tmp / "thin.log"
    argv = [sys.executable, "-m", "dataplat.serving.server", "--repo", str(repo)]
    argv += ["--listen", f"127.0.0.1:{port}", "--workers", str(workers), "--max-inflight", "256"]
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_ready(f"http://127.0.0.1:{port}/v2/models/propensity/ready", proc, log, 60)
    return proc, port, log


def find_mlserver(flag: str | None) -> tuple[str | None, str]:
    candidate = flag or os.environ.get("DATAPLAT_MLSERVER_BIN") or shutil.which("mlserver")
    if not candidate:
        return (
            None,
            "no mlserver executable (pass --mlserver-bin, set DATAPLAT_MLSERVER_BIN, or put it on PATH)",
        )
    if not Path(candidate).exists():
        return None, f"{candidate} does not exist"
    return candidate, ""


def start_mlserver(
    binary: str, onnx_path: Path, workers: int, tmp: Path
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    root = tmp / f"mlserver-{workers}"
    model_dir = root / "propensity"
    model_dir.mkdir(parents=True)
    shutil.copy(onnx_path, model_dir / "model.onnx")
    (model_dir / "dataplat_onnx_runtime.py").write_text(_MLSERVER_RUNTIME)
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "propensity",
                "implementation": "dataplat_onnx_runtime.OnnxRuntimeModel",
                "parameters": {"uri": str(model_dir / "model.onnx"), "version": "1"},
            }
        )
    )
    (root / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "parallel_workers": workers,
                "debug": False,
                "host": "127.0.0.1",
            }
        )
    )
    log = tmp / f"mlserver-{workers}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    proc = subprocess.Popen(
        [binary, "start", str(root)], stdout=log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True, cwd=root, env=env,
    )  # fmt: skip
    wait_ready(f"http://127.0.0.1:{port}/v2/models/propensity/ready", proc, log, 120)
    return proc, port, log


def mlserver_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
        return (out.stdout or out.stderr).strip().splitlines()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


# --- main -------------------------------------------------------------------------------


def summarise(rounds: list[dict[str, Any]]) -> dict[str, float]:
    def med(phase: str, key: str) -> float:
        return statistics.median(r[phase][key] for r in rounds)

    return {
        "seq_p50_ms": med("seq", "p50_ms"),
        "seq_p99_ms": med("seq", "p99_ms"),
        "sat_rps": med("sat", "rps"),
        "sat_p99_ms": med("sat", "p99_ms"),
        "half_rps": med("half", "achieved_rps"),
        "half_p50_ms": med("half", "p50_ms"),
        "half_p99_ms": med("half", "p99_ms"),
        "half_sent_p99_ms": med("half", "sent_p99_ms"),
        "fixed_p50_ms": med("fixed", "p50_ms"),
        "fixed_p99_ms": med("fixed", "p99_ms"),
        "errors": sum(r[p]["errors"] for r in rounds for p in ("seq", "sat", "half", "fixed")),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per loaded phase")
    p.add_argument("--seq-requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=16, help="connections of the saturation phase")
    p.add_argument("--workers", type=int, default=2, help="thin server workers / MLServer parallel_workers")
    p.add_argument(
        "--mlserver-workers", type=int, nargs="+", default=None,
        help="MLServer parallel_workers settings to measure (default: 0 and --workers)",
    )  # fmt: skip
    p.add_argument("--mlserver-bin", help="the mlserver executable (its own venv)")
    p.add_argument("--no-mlserver", action="store_true")
    p.add_argument("--client", action="store_true", help="also measure through PoolRouter (aiohttp)")
    p.add_argument("--sf", type=float, default=0.01, help="scale factor of the training data")
    p.add_argument("--rate", type=float, default=300.0, help="requests/s of the fixed-rate phase")
    p.add_argument("--max-p99-ms", type=float, default=5.0, help="limit on the thin server's fixed-rate p99")
    p.add_argument("--json-out")
    args = p.parse_args(argv)

    sys.path.insert(0, str(REPO / "src"))
    from dataplat.serving.client import encode_infer_request
    from dataplat.serving.model import ModelRepository, train

    tmp = Path(tempfile.mkdtemp(prefix="dataplat-bench-serving-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        trained = train(args.sf)
        mv = ModelRepository(tmp / "repo").publish(trained)
        row = [float(x) for x in trained.X_test[0]]
        body = encode_infer_request([row])

        servers: dict[str, tuple[int, str]] = {}
        proc, port, _ = start_thin(tmp / "repo", args.workers, tmp)
        procs.append(proc)
        servers[f"thin (uvicorn+httptools, {args.workers} workers)"] = (port, "/v2/models/propensity/infer")
        notes: list[str] = []
        mlserver_info = ""
        if not args.no_mlserver:
            binary, why = find_mlserver(args.mlserver_bin)
            if binary is None:
                notes.append(f"MLServer not measured: {why}")
            else:
                mlserver_info = mlserver_version(binary)
                for w in args.mlserver_workers if args.mlserver_workers is not None else [0, args.workers]:
                    try:
                        proc, port, _ = start_mlserver(binary, mv.onnx_path, w, tmp)
                    except RuntimeError as exc:
                        notes.append(f"MLServer (parallel_workers={w}) did not start: {exc}")
                        continue
                    procs.append(proc)
                    servers[f"MLServer {mlserver_info} (parallel_workers={w})"] = (
                        port,
                        "/v2/models/propensity/infer",
                    )

        results: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for r in range(args.rounds):
            for name, (port, path) in servers.items():
                res = asyncio.run(measure(port, path, body, args))
                results[name].append(res)
                seq, sat, half, fixed = res["seq"], res["sat"], res["half"], res["fixed"]
                print(
                    f"round {r + 1} {name}: seq p50 {seq['p50_ms']:.2f} ms p99 {seq['p99_ms']:.2f} ms"
                    f" | sat {sat['rps']:.0f} rps | half ({half['achieved_rps']:.0f} rps)"
                    f" p50 {half['p50_ms']:.2f} ms p99 {half['p99_ms']:.2f} ms"
                    f" | {args.rate:.0f} rps p50 {fixed['p50_ms']:.2f} ms p99 {fixed['p99_ms']:.2f} ms",
                    flush=True,
                )
        client = None
        if args.client:
            first_port = next(iter(servers.values()))[0]
            client = asyncio.run(measure_client(first_port, row, args.seq_requests))

        summary = {name: summarise(rs) for name, rs in results.items()}
        print(f"\nmedians over {args.rounds} rounds, single-row infer, {os.cpu_count()} CPUs:")
        print(f"{'server':58} {'seq p50':>8} {'seq p99':>8} {'sat rps':>8} {'half rps':>8} {'half p50':>8} "
              f"{'half p99':>8} {'sent p99':>8} {'fix p50':>8} {'fix p99':>8} {'errors':>6}")  # fmt: skip
        for name, s in summary.items():
            cols = [f"{s[k]:8.2f}" for k in ("seq_p50_ms", "seq_p99_ms")]
            cols += [f"{s[k]:8.0f}" for k in ("sat_rps", "half_rps")]
            keys = ("half_p50_ms", "half_p99_ms", "half_sent_p99_ms", "fixed_p50_ms", "fixed_p99_ms")
            cols += [f"{s[k]:8.2f}" for k in keys]
            print(f"{name:58} {' '.join(cols)} {s['errors']:6d}")
        if client:
            p50, p99 = client["p50_ms"], client["p99_ms"]
            print(f"thin via PoolRouter (aiohttp), sequential: p50 {p50:.2f} ms p99 {p99:.2f} ms")
        for n in notes:
            print(n)
        if args.json_out:
            Path(args.json_out).write_text(
                json.dumps(
                    {"summary": summary, "rounds": results, "client": client, "notes": notes}, indent=2
                )
            )
        thin = next(iter(summary.values()))
        if thin["fixed_p99_ms"] > args.max_p99_ms:
            worst = thin["fixed_p99_ms"]
            print(f"FAIL: thin server p99 at {args.rate:.0f} rps {worst:.2f} ms > {args.max_p99_ms} ms")
            return 1
        return 0
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
