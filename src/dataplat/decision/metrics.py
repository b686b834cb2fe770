"""Prometheus metrics of the decision service, aggregated over its worker processes.

The service sets ``PROMETHEUS_MULTIPROC_DIR`` before it starts its workers, so ``GET
/metrics`` on any worker answers for all of them (as :mod:`dataplat.serving.server` does).
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class DecisionMetrics:
    """The service's metrics (one instance per process)."""

    def __init__(self) -> None:
        self.multiproc = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.requests = Counter(
            "dataplat_decision_requests_total",
            "Events handled, by source (http | stream) and outcome "
            "(decided | replayed | invalid | shed | unavailable | error)",
            ["source", "outcome"],
        )
        self.duration = Histogram(
            "dataplat_decision_duration_seconds",
            "Time from receiving an event to the decision (HTTP: to the response)",
            ["source"],
            buckets=_LATENCY_BUCKETS,
        )
        self.stage = Histogram(
            "dataplat_decision_stage_seconds",
            "Time spent per stage of a decision (features | score | record | publish)",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
        )
        self.offers = Counter(
            "dataplat_decision_offers_total",
            "Decisions recorded, by event type, channel (none: no offer) and whether rules only",
            ["event_type", "channel", "degraded"],
        )
        self.scored_by = Counter(
            "dataplat_decision_scored_total",
            "Decisions by the pool that scored them (none: no pool answered, the decision is degraded; "
            "skipped: no offer applied, the model was not asked)",
            ["pool"],
        )
        self.inflight = Gauge(
            "dataplat_decision_inflight",
            "HTTP decisions being made (sum over live workers)",
            multiprocess_mode="livesum",
        )
        self.e2e = Histogram(
            "dataplat_decision_e2e_seconds",
            "Stream events: from the producer's published_at to the decision published on DECISIONS",
            buckets=_LATENCY_BUCKETS,
        )
        self.published = Counter(
            "dataplat_decision_published_total",
            "Decisions published to the DECISIONS stream (how they are recorded), by result "
            "(ok | duplicate: the event id was recorded before | failed)",
            ["result"],
        )

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of every worker's metrics, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

        if self.multiproc:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


_METRICS: DecisionMetrics | None = None


def get_metrics() -> DecisionMetrics:
    """This process's metrics (created on first use; Prometheus allows one registration per name)."""
    global _METRICS
    if _METRICS is None:
        _METRICS = DecisionMetrics()
    return _METRICS
