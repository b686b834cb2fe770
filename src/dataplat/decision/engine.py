"""One decision from end to end, for the HTTP API and the stream consumer alike.

event -> a decision already recorded under the event id? (the worker's
:class:`~dataplat.decision.ledger.DecisionLedger`) -> the customer's view
(:class:`~dataplat.decision.features.FeatureCache`, read from the warehouse when not
cached, with any decision stored under the event id) -> the model's scores from the best
pool (:class:`~dataplat.serving.client.PoolRouter`, bounded by ``score_deadline_s``; no
pool -> rules only, marked degraded) -> the strategy's rules, the frequency caps counting
the ledger's recent decisions too -> recorded on the DECISIONS stream, idempotent by event
id (:class:`~dataplat.decision.record.StreamRecorder`; the warehouse gets it from there) ->
the answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from dataplat.decision import rules
from dataplat.decision.batching import Batcher, QueueFull
from dataplat.decision.events import Event, EventError
from dataplat.decision.features import FeatureCache
from dataplat.decision.ledger import DecisionLedger
from dataplat.decision.metrics import DecisionMetrics
from dataplat.decision.record import StreamRecorder
from dataplat.decision.strategy import StrategySet
from dataplat.decision.warehouse import ConnectionPool, StoredDecision, read_catalog
from dataplat.serving.client import PoolRouter, ServingError
from dataplat.serving.model import CLASSES, PROBA_OUTPUT

log = logging.getLogger("dataplat.decision")

DECISION_NAMESPACE = uuid.UUID("6f1d3c1e-5b7a-4a39-9d8e-2b1f0c4d7e10")
"""decision_id = uuid5(DECISION_NAMESPACE, event_id): the same event id, the same decision id."""


def decision_id(event_id: str) -> str:
    """The decision id of an event id (deterministic)."""
    return str(uuid.uuid5(DECISION_NAMESPACE, event_id))


@dataclass(frozen=True)
class Scored:
    """The model's answer for one row: probabilities by category (None: not scored), who, why not."""

    scores: dict[str, float] | None
    pool: str
    reason: str


@dataclass
class Decision:
    """The answer to one event (the JSON of ``POST /v1/decisions``: :meth:`to_json`)."""

    event_id: str
    customer_id: int
    event_type: str
    product_id: str | None
    product_name: str | None
    channel: str | None
    score: float | None
    degraded: bool
    reasons: list[str]
    strategy: str
    latency_ms: float = 0.0
    replayed: bool = False
    pool: str | None = None
    decided_at: float = field(default_factory=time.time)

    @cached_property
    def decision_id(self) -> str:
        """:func:`decision_id` of the event id."""
        return decision_id(self.event_id)

    def to_json(self) -> dict[str, Any]:
        """The response document of the API contract."""
        return {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "decision_id": self.decision_id,
            "offer": {"product_id": self.product_id, "name": self.product_name},
            "channel": self.channel,
            "score": self.score,
            "degraded": self.degraded,
            "reasons": self.reasons,
            "strategy": self.strategy,
            "latency_ms": round(self.latency_ms, 3),
            "replayed": self.replayed,
        }


class Engine:
    """Makes decisions (module docstring). One per worker process."""

    def __init__(
        self,
        strategies: StrategySet,
        pool: ConnectionPool,
        features: FeatureCache,
        ledger: DecisionLedger,
        recorder: StreamRecorder,
        router: PoolRouter | None,
        metrics: DecisionMetrics,
        *,
        score_deadline_s: float = 0.03,
        scorers: int = 2,
        max_pending: int = 1024,
    ) -> None:
        self.strategies = strategies
        self.pool = pool
        self.features = features
        self.ledger = ledger
        self.recorder = recorder
        self.router = router
        self.metrics = metrics
        self.score_deadline_s = score_deadline_s
        self.catalog: rules.Catalog | None = None
        self._catalog_lock = asyncio.Lock()
        self._cap = dt.timedelta(hours=max(strategies.max_cap_hours, 0.0))
        self.scorer: Batcher[tuple[str, np.ndarray], Scored] = Batcher(
            self._score_batch, name="scorer", runners=scorers, max_pending=max_pending
        )

    def start(self) -> None:
        """Start the feature readers and the scorers (inside the running event loop)."""
        self.features.start()
        self.scorer.start()

    async def stop(self) -> None:
        """Stop the feature readers and the scorers."""
        await self.features.stop()
        await self.scorer.stop()

    async def ensure_catalog(self) -> rules.Catalog:
        """The product catalogue (read once; :class:`WarehouseUnavailable` until it can be)."""
        if self.catalog is None:
            async with self._catalog_lock:
                if self.catalog is None:
                    catalog = await read_catalog(self.pool)
                    for s in self.strategies.strategies:
                        for o in s.offers:
                            if o.product not in catalog.products:
                                log.error(
                                    "%s:%s: offer %s names product %s, not in bank.products",
                                    s.file, o.line, o.name, o.product,
                                )  # fmt: skip
                            if o.campaign and o.campaign not in catalog.campaigns:
                                log.error(
                                    "%s:%s: offer %s names campaign %s, not in bank.campaigns",
                                    s.file, o.line, o.name, o.campaign,
                                )  # fmt: skip
                    self.catalog = catalog
        return self.catalog

    def _from_stored(self, stored: StoredDecision, catalog: rules.Catalog, started: float) -> Decision:
        product = catalog.products.get(stored.offer) if stored.offer else None
        return Decision(
            event_id=stored.event_id,
            customer_id=stored.customer_id,
            event_type=stored.event_type,
            product_id=stored.offer,
            product_name=product.name if product else None,
            channel=stored.channel,
            score=stored.score,
            degraded=stored.degraded,
            reasons=list(stored.reasons),
            strategy=stored.strategy,
            latency_ms=(time.perf_counter() - started) * 1000,
            replayed=True,
            pool=stored.pool,
        )

    async def _score_batch(self, items: list[tuple[str, np.ndarray]]) -> list[Scored]:
        """Score every row of a batch with one inference request per model."""
        out: list[Scored | None] = [None] * len(items)
        by_model: dict[str, list[int]] = {}
        for i, (model, _) in enumerate(items):
            by_model.setdefault(model, []).append(i)
        for model, idx in by_model.items():
            X = np.vstack([items[i][1] for i in idx])
            t0 = time.perf_counter()
            try:
                assert self.router is not None
                res = await self.router.infer(
                    model, X, outputs=[PROBA_OUTPUT], deadline_s=self.score_deadline_s
                )
            except ServingError as exc:
                for i in idx:
                    out[i] = Scored(None, "none", f"model: {exc} (rules only)")
                continue
            finally:
                self.metrics.stage.labels("score").observe(time.perf_counter() - t0)
            proba = res.outputs[PROBA_OUTPUT].reshape(len(idx), -1)
            for row, i in enumerate(idx):
                out[i] = Scored(
                    {c: float(p) for c, p in zip(CLASSES, proba[row], strict=False)}, res.pool, ""
                )
        return [o if o is not None else Scored(None, "none", "model: not scored") for o in out]

    async def _scores(self, model: str, features: np.ndarray) -> Scored:
        if self.router is None or not self.router.pools:
            return Scored(None, "none", "model: no serving pool configured (rules only)")
        try:
            # the router's deadline bounds the inference; waiting for a scorer is bounded too
            return await self.scorer.submit((model, features), self.score_deadline_s * 2)
        except TimeoutError:
            return Scored(
                None, "none", f"model: no score within {self.score_deadline_s * 2000:.0f} ms (rules only)"
            )
        except QueueFull as exc:
            return Scored(None, "none", f"model: {exc} (rules only)")

    async def decide(self, event: Event, started: float | None = None) -> tuple[Decision, bool]:
        """(the decision, whether this call recorded it). A replay returns the recorded decision
        with ``replayed`` set and False. Raises :class:`EventError` for an unknown customer,
        :class:`~dataplat.decision.warehouse.WarehouseUnavailable`,
        :class:`~dataplat.decision.warehouse.Overloaded` or
        :class:`~dataplat.decision.record.StreamUnavailable` when it cannot decide now."""
        started = time.perf_counter() if started is None else started
        catalog = await self.ensure_catalog()
        known = self.ledger.stored(event.event_id)
        if known is not None:
            return self._from_stored(known, catalog, started), False
        t0 = time.perf_counter()
        view = await self.features.view(event.customer_id, event.ts, event.event_id)
        self.metrics.stage.labels("features").observe(time.perf_counter() - t0)
        if view is not None and view.stored is not None:
            return self._from_stored(view.stored, catalog, started), False
        if view is None:
            raise EventError(f"no customer {event.customer_id}", "customer_id")
        since = event.ts - self._cap
        recent = self.ledger.contacts(event.customer_id, since, view.decision_ids, event.event_id)
        customer = (
            replace(view.customer, contacts=[*view.customer.contacts, *recent]) if recent else view.customer
        )

        strategy = self.strategies.for_event(event.type)
        reasons: list[str] = []
        if strategy is None:
            choice = rules.Choice(reasons=[f"no strategy handles {event.type}"])
            scores, pool_name, name = None, "skipped", "none"
        else:
            if rules.applicable(strategy, event, customer):
                scored = await self._scores(strategy.model, view.features[0])
            else:
                scored = Scored(None, "skipped", "")
            scores, pool_name = scored.scores, scored.pool
            if scored.reason:
                reasons.append(scored.reason)
            choice = rules.decide(strategy, event, customer, catalog, scores)
            name = strategy.name
        degraded = scores is None and pool_name != "skipped"
        self.metrics.scored_by.labels(pool_name).inc()
        decision = Decision(
            event_id=event.event_id,
            customer_id=event.customer_id,
            event_type=event.type,
            product_id=choice.product.code if choice.product else None,
            product_name=choice.product.name if choice.product else None,
            channel=choice.channel,
            score=choice.score,
            degraded=degraded,
            reasons=choice.reasons + reasons,
            strategy=name,
            pool=None if pool_name in ("none", "skipped") else pool_name,
        )
        decision.latency_ms = (time.perf_counter() - started) * 1000
        row = StoredDecision(
            event_id=event.event_id,
            customer_id=event.customer_id,
            ts=dt.datetime.now(dt.UTC),
            event_type=event.type,
            campaign_id=choice.campaign_id,
            offer=decision.product_id,
            channel=decision.channel,
            score=decision.score,
            degraded=degraded,
            latency_ms=decision.latency_ms,
            strategy=name,
            reasons=tuple(decision.reasons),
            pool=decision.pool,
        )
        doc = decision.to_json()
        doc.update(row.stream_fields())
        doc["event_published_at"] = event.published_at
        doc["decided_at"] = decision.decided_at
        t0 = time.perf_counter()
        stored = await self.recorder.record(row, doc)
        self.metrics.stage.labels("record").observe(time.perf_counter() - t0)
        if stored is not None:
            # another request for the same event id recorded its decision first
            return self._from_stored(stored, catalog, started), False
        self.metrics.offers.labels(event.type, decision.channel or "none", str(degraded).lower()).inc()
        decision.latency_ms = (time.perf_counter() - started) * 1000
        return decision, True
