"""Applying a strategy to one event: candidates, ranking, channel choice (pure functions).

Nothing here does I/O: the engine passes in the customer as read from the warehouse, the
product catalogue and the model's scores (None when no pool answered), and gets back a
:class:`Choice` with the reasons for it. See ``strategies/README.md`` for the rules in
the words of the people who write them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dataplat.decision.events import Event
from dataplat.decision.strategy import Offer, Strategy


@dataclass(frozen=True)
class Product:
    """A row of ``bank.products`` the strategies may offer."""

    product_id: int
    code: str
    name: str
    category: str
    risk_level: int


@dataclass(frozen=True)
class Catalog:
    """Products by code and campaign ids by code, read once from the warehouse."""

    products: Mapping[str, Product]
    campaigns: Mapping[str, int]


@dataclass(frozen=True)
class Customer:
    """What the rules need to know about the customer (see :mod:`~dataplat.decision.warehouse`)."""

    customer_id: int
    segment: str
    risk_level: int
    marketing_consent: bool
    status: str = "active"
    held_products: frozenset[int] = frozenset()
    """Products the customer holds now (active holdings)."""
    next_maturity: dt.date | None = None
    """The earliest maturity date, on or after the event's date, of the customer's holdings."""
    contacts: Sequence[tuple[str, dt.datetime]] = ()
    """(channel, when) of recent contacts and decisions, for the frequency caps."""


@dataclass
class Choice:
    """What the strategy chose: an offer on a channel, or nothing, and why."""

    offer: Offer | None = None
    product: Product | None = None
    channel: str | None = None
    score: float | None = None
    campaign_id: int | None = None
    reasons: list[str] = field(default_factory=list)


def _matches(offer: Offer, event: Event, customer: Customer, local: dt.datetime) -> str | None:
    """Why ``offer`` does not apply (None when it does)."""
    if event.type not in offer.events:
        return "event"
    if offer.segments and customer.segment not in offer.segments:
        return f"segment {customer.segment}"
    if offer.min_amount is not None and (event.amount is None or event.amount < offer.min_amount):
        return f"amount below {offer.min_amount:g}"
    if offer.max_amount is not None and event.amount is not None and event.amount > offer.max_amount:
        return f"amount above {offer.max_amount:g}"
    if offer.hours is not None and not offer.hours.contains(local.time()):
        return f"outside hours {offer.hours}"
    if offer.weekdays and local.weekday() not in offer.weekdays:
        return "not on this weekday"
    if offer.maturity_within_days is not None:
        if customer.next_maturity is None:
            return "nothing maturing"
        if (customer.next_maturity - local.date()).days > offer.maturity_within_days:
            return f"nothing maturing within {offer.maturity_within_days} days"
    return None


def applicable(strategy: Strategy, event: Event, customer: Customer) -> list[Offer]:
    """The offers whose event, segment, amount and timing conditions hold (before scoring:
    when there is none, the model need not be asked)."""
    local = event.ts.astimezone(strategy.tz)
    return [o for o in strategy.offers if _matches(o, event, customer, local) is None]


def channel_block(
    strategy: Strategy, channel: str, customer: Customer, when: dt.datetime, local: dt.datetime
) -> str | None:
    """Why ``channel`` may not be used for ``customer`` at ``when`` (None when it may)."""
    if channel in strategy.consent_required and not customer.marketing_consent:
        return f"{channel}: no marketing consent"
    for quiet in strategy.quiet_hours:
        if channel in quiet.channels and quiet.window.contains(local.time()):
            return f"{channel}: quiet hours {quiet.window}"
    for cap in strategy.caps:
        if cap.channel not in (channel, "any"):
            continue
        since = when - dt.timedelta(hours=cap.hours)
        used = sum(
            1 for ch, ts in customer.contacts if ts > since and (cap.channel == "any" or ch == channel)
        )
        if used >= cap.max:
            span = f"{cap.hours / 24:g}d" if cap.hours % 24 == 0 else f"{cap.hours:g}h"
            return f"{channel}: frequency cap {cap.max} per {span} on {cap.channel} reached ({used})"
    return None


def decide(
    strategy: Strategy,
    event: Event,
    customer: Customer,
    catalog: Catalog,
    scores: Mapping[str, float] | None,
) -> Choice:
    """Choose the offer and channel for ``event`` (module docstring; ``strategies/README.md``).

    ``scores`` maps a product category to the model's probability; None means the model
    could not be asked (rules only: ranking by weight, no score threshold).
    """
    local = event.ts.astimezone(strategy.tz)
    choice = Choice()
    candidates: list[tuple[float, int, Offer, Product, float | None]] = []
    for order, offer in enumerate(strategy.offers):
        if _matches(offer, event, customer, local) is not None:
            continue
        product = catalog.products.get(offer.product)
        if product is None:
            choice.reasons.append(f"{offer.name}: product {offer.product} is not in the catalogue")
            continue
        if offer.exclude_holders and product.product_id in customer.held_products:
            choice.reasons.append(f"{offer.name}: already holds {product.code}")
            continue
        if offer.suitability and product.risk_level > customer.risk_level:
            choice.reasons.append(
                f"{offer.name}: product risk R{product.risk_level} above customer's C{customer.risk_level}"
            )
            continue
        score: float | None = None
        if scores is not None:
            score = float(scores.get(product.category, 0.0))
            threshold = offer.min_score if offer.min_score is not None else strategy.min_score
            if score < threshold:
                choice.reasons.append(f"{offer.name}: score {score:.3f} below {threshold:g}")
                continue
        rank = (score if score is not None else 1.0) * offer.weight
        candidates.append((rank, order, offer, product, score))
    if not candidates:
        choice.reasons.append("no offer applies")
        return choice
    candidates.sort(key=lambda c: (-c[0], c[1]))
    for _rank, _order, offer, product, score in candidates:
        blocked: list[str] = []
        for channel in offer.channels:
            why = channel_block(strategy, channel, customer, event.ts, local)
            if why is None:
                choice.offer, choice.product, choice.channel, choice.score = offer, product, channel, score
                choice.campaign_id = catalog.campaigns.get(offer.campaign) if offer.campaign else None
                scored = f"score {score:.3f} x weight {offer.weight:g}" if score is not None else "rules only"
                choice.reasons.append(f"{offer.name}: {product.code} on {channel} ({scored})")
                choice.reasons += [f"{offer.name}: {b}" for b in blocked]
                return choice
            blocked.append(why)
        choice.reasons += [f"{offer.name}: {b}" for b in blocked]
    choice.reasons.append("every channel of every applicable offer is blocked")
    return choice
