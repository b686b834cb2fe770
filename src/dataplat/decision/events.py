"""The event a decision answers: its types, its JSON form and its validation.

The same JSON arrives as the body of ``POST /v1/decisions`` and as a message on
``bank.events.<type>``::

    {"event_id": "e-1", "type": "payroll_credited", "customer_id": 42,
     "ts": "2026-11-22T09:30:00+08:00", "amount": 18000.0, "attributes": {}}

``ts`` (ISO 8601; without an offset it is UTC), ``amount`` and ``attributes`` are optional.
Stream messages may carry ``published_at`` (epoch seconds) for end-to-end latency.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

EVENT_TYPES: tuple[str, ...] = (
    "payroll_credited",
    "large_inflow",
    "product_maturity",
    "transfer_out_other_bank",
    "app_login",
)
"""The events the service decides on (``type``)."""

MAX_EVENT_ID = 128
_MAX_INT64 = 2**63 - 1


class EventError(ValueError):
    """A malformed event; ``field`` names the offending field (answered as 422)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Event:
    """A validated event."""

    event_id: str
    type: str
    customer_id: int
    ts: dt.datetime
    """Aware datetime (UTC when the event gave no offset, now when it gave no ``ts``)."""
    amount: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    published_at: float | None = None
    """Epoch seconds the producer stamped on a stream message (end-to-end latency)."""


def parse_event(body: bytes | str | dict[str, Any], now: dt.datetime | None = None) -> Event:
    """Validate an event (JSON bytes or an already decoded object); :class:`EventError` if malformed."""
    if isinstance(body, dict):
        doc: Any = body
    else:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventError(f"body is not JSON: {exc}", "body") from None
    if not isinstance(doc, dict):
        raise EventError("body must be a JSON object", "body")

    event_id = doc.get("event_id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= MAX_EVENT_ID:
        raise EventError(f"event_id must be a string of 1 to {MAX_EVENT_ID} characters", "event_id")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in event_id):
        raise EventError("event_id must not contain control characters", "event_id")

    etype = doc.get("type")
    if etype not in EVENT_TYPES:
        raise EventError(f"type must be one of {', '.join(EVENT_TYPES)}, got {etype!r}", "type")

    customer_id = doc.get("customer_id")
    if not isinstance(customer_id, int) or isinstance(customer_id, bool) or not 0 < customer_id <= _MAX_INT64:
        raise EventError("customer_id must be a positive integer", "customer_id")

    raw_ts = doc.get("ts")
    if raw_ts is None:
        ts = now or dt.datetime.now(dt.UTC)
    elif isinstance(raw_ts, str):
        try:
            ts = dt.datetime.fromisoformat(raw_ts)
        except ValueError:
            raise EventError(f"ts must be an ISO 8601 date-time, got {raw_ts!r}", "ts") from None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
    else:
        raise EventError("ts must be an ISO 8601 string", "ts")

    amount = doc.get("amount")
    if amount is not None:
        if not isinstance(amount, int | float) or isinstance(amount, bool) or not math.isfinite(amount):
            raise EventError("amount must be a finite number", "amount")
        if amount < 0:
            raise EventError("amount must not be negative", "amount")
        amount = float(amount)

    attributes = doc.get("attributes")
    if attributes is None:
        attributes = {}
    elif not isinstance(attributes, dict):
        raise EventError("attributes must be a JSON object", "attributes")

    published_at = doc.get("published_at")
    if published_at is not None and (
        not isinstance(published_at, int | float) or isinstance(published_at, bool)
    ):
        raise EventError("published_at must be epoch seconds", "published_at")

    return Event(
        event_id=event_id,
        type=etype,
        customer_id=customer_id,
        ts=ts,
        amount=amount,
        attributes=attributes,
        published_at=float(published_at) if published_at is not None else None,
    )
