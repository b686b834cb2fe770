"""Prometheus exporter of what dataplat runs: ``python -m dataplat.platform.exporter``.

Each scrape probes the platform afresh (the same probes as ``dataplat status``) and
exposes them as gauges. Patroni serves its own ``/metrics`` on its REST port; this
exporter adds what no component says about itself: whether each dataplat process is
up, who leads the warehouse, stream sizes and the lake's table count.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client import make_wsgi_app
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class PlatformCollector(Collector):
    """Probes the platform recorded under ``home`` on every scrape."""

    def __init__(self, home: Path, instance: str | None = None) -> None:
        self.home = home
        self.instance = instance
        self.errors = 0

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        from dataplat.platform.status import platform_status

        up = GaugeMetricFamily(
            "dataplat_component_up",
            "1 when the component answers its health probe",
            labels=["instance", "component", "host"],
        )
        role = GaugeMetricFamily(
            "dataplat_warehouse_leader", "1 for the member Patroni reports as leader", labels=["member"]
        )
        lag = GaugeMetricFamily(
            "dataplat_warehouse_replication_lag_bytes",
            "Replication lag of each member as Patroni reports it",
            labels=["member"],
        )
        timeline = GaugeMetricFamily(
            "dataplat_warehouse_timeline", "Timeline of each member", labels=["member"]
        )
        msgs = GaugeMetricFamily(
            "dataplat_stream_messages", "Messages held by each JetStream stream", labels=["stream"]
        )
        nbytes = GaugeMetricFamily(
            "dataplat_stream_bytes", "Bytes held by each JetStream stream", labels=["stream"]
        )
        started = time.perf_counter()
        try:
            report = platform_status(self.home, this_process=self.instance)
            for c in report.components:
                up.add_metric([c.name, c.component, c.host], 1.0 if c.health == "healthy" else 0.0)
            for m in report.warehouse.get("members", []):
                role.add_metric([m["name"]], 1.0 if m["role"] == "leader" else 0.0)
                if m["lag_bytes"] is not None:
                    lag.add_metric([m["name"]], float(m["lag_bytes"]))
                if m["timeline"] is not None:
                    timeline.add_metric([m["name"]], float(m["timeline"]))
            for s in report.stream.get("streams", []):
                msgs.add_metric([s["name"]], float(s["messages"]))
                nbytes.add_metric([s["name"]], float(s["bytes"]))
        except Exception:  # noqa: BLE001 - a failed probe is a metric, not a crash
            self.errors += 1
        yield from (up, role, lag, timeline, msgs, nbytes)
        yield GaugeMetricFamily(
            "dataplat_exporter_probe_seconds", "Time the last probe took", value=time.perf_counter() - started
        )
        yield CounterMetricFamily("dataplat_exporter_probe_errors", "Probes that failed", value=self.errors)


def serve(address: str, port: int) -> None:
    """Serve ``/metrics`` (and any other path but ``/healthz``) with prometheus_client's
    WSGI app, and ``/healthz`` without probing anything, in a daemon thread."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    metrics_app = make_wsgi_app()

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        return metrics_app(environ, start_response)

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = make_server(address, port, app, ThreadingWSGIServer, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataplat.platform.exporter")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--instance", help="the plan's name of this exporter (e.g. metrics-localhost)")
    parser.add_argument("--listen", default="127.0.0.1:59100", help="ADDRESS:PORT")
    args = parser.parse_args(argv)
    address, _, port = args.listen.rpartition(":")
    REGISTRY.register(PlatformCollector(args.home, args.instance))
    serve(address or "127.0.0.1", int(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
