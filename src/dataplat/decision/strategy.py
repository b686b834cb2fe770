"""Strategy files: what the marketing team edits, validated before anything runs.

A strategy is one YAML file in the strategies folder (``strategies/`` of the checkout by
default, ``--strategies DIR`` otherwise). Each file handles some event types; no two files
may claim the same type. Shape (every key is documented in the shipped files)::

    strategy: inflow                 # the name every decision carries
    events: [payroll_credited, large_inflow]
    timezone: Asia/Shanghai          # local time for hours and do-not-disturb
    model: {name: propensity, min_score: 0.05}
    consent_required: [app_push, sms]
    do_not_disturb:
      - {from: "21:30", to: "08:30", channels: [app_push, sms]}
    frequency_caps:
      - {channel: any, max: 3, days: 7}
    offers:
      - name: payroll-mass-wealth
        events: [payroll_credited]
        segments: [mass]
        product: WM-S30
        campaign: RT-PAYROLL-WM
        channels: [app_push, sms]
        weight: 1.0

:func:`load_strategies` reads every ``*.yml`` / ``*.yaml`` of the folder and reports every
problem of every file at once (:class:`StrategyError`, each :class:`Problem` with file,
line and field). ``python -m dataplat.decision.strategy DIR`` does the same from a shell
and exits 0 when the folder is valid, 1 when it is not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import re
import sys
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplat.config import PROJECT_ROOT
from dataplat.decision.events import EVENT_TYPES
from dataplat.errors import ConfigError
from dataplat.yamldoc import Problem

DEFAULT_STRATEGIES_DIR = PROJECT_ROOT / "strategies"
CHANNELS: tuple[str, ...] = ("app_push", "sms", "rm_task")
"""Where an offer can be made: an APP push, an SMS, a task for the relationship manager."""
SEGMENTS: tuple[str, ...] = ("mass", "affluent", "private")
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class StrategyError(ConfigError):
    """The strategy files do not validate; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the strategy files:\n{lines}")


@dataclass(frozen=True)
class TimeWindow:
    """Local wall-clock hours ``[start, end)``; a window whose end is not after its start wraps midnight."""

    start: dt.time
    end: dt.time

    def contains(self, t: dt.time) -> bool:
        """Whether the local time ``t`` falls inside the window."""
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class QuietHours:
    """Do-not-disturb: during ``window`` (local time) nothing goes out on ``channels``."""

    window: TimeWindow
    channels: tuple[str, ...]


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``max`` contacts on ``channel`` (or on any channel: ``any``) in the last ``hours``."""

    channel: str
    max: int
    hours: float


@dataclass(frozen=True)
class Offer:
    """One offer rule: when it applies (event, segment, amount, timing), what and where."""

    name: str
    events: tuple[str, ...]
    product: str
    """Product code (``bank.products.code``)."""
    channels: tuple[str, ...]
    """In order of preference; the first one that consent, caps and quiet hours allow is used."""
    segments: tuple[str, ...] = ()
    """Empty: every segment."""
    campaign: str | None = None
    """Campaign code (``bank.campaigns.code``) the decision is recorded under."""
    weight: float = 1.0
    """Offers are ranked by model score x weight (by weight alone when the model is down)."""
    min_score: float | None = None
    """Overrides the strategy's ``model.min_score`` for this offer."""
    min_amount: float | None = None
    max_amount: float | None = None
    hours: TimeWindow | None = None
    """Local hours the offer may be made in (any time when absent)."""
    weekdays: tuple[int, ...] = ()
    """0 = Monday; empty: every day."""
    maturity_within_days: int | None = None
    """Only for customers holding a product that matures within this many days of the event."""
    exclude_holders: bool = True
    """Not to customers who already hold the product."""
    suitability: bool = True
    """Only when the product's risk level is at most the customer's (investor suitability)."""
    line: int | None = None


@dataclass(frozen=True)
class Strategy:
    """One strategy file."""

    name: str
    file: str
    events: tuple[str, ...]
    offers: tuple[Offer, ...]
    timezone: str = "Asia/Shanghai"
    model: str = "propensity"
    min_score: float = 0.0
    consent_required: tuple[str, ...] = ("app_push", "sms")
    quiet_hours: tuple[QuietHours, ...] = ()
    caps: tuple[FrequencyCap, ...] = ()
    version: str = ""

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        """The strategy's time zone."""
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def max_cap_hours(self) -> float:
        """The longest frequency-cap window (how far back contacts are read)."""
        return max((c.hours for c in self.caps), default=0.0)


@dataclass(frozen=True)
class StrategySet:
    """Every strategy of the folder, and which one handles each event type."""

    strategies: tuple[Strategy, ...]
    directory: str = ""

    def for_event(self, event_type: str) -> Strategy | None:
        """The strategy that handles ``event_type`` (None when no file claims it)."""
        for s in self.strategies:
            if event_type in s.events:
                return s
        return None

    @property
    def max_cap_hours(self) -> float:
        """The longest frequency-cap window of all strategies."""
        return max((s.max_cap_hours for s in self.strategies), default=0.0)

    def products(self) -> set[str]:
        """Every product code an offer names."""
        return {o.product for s in self.strategies for o in s.offers}


# --- validation -----------------------------------------------------------------------


class _Checker:
    """Walks one parsed file, collecting problems with their lines."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int | None, field: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, field, message))

    @staticmethod
    def key_line(node: Any, key: str | int) -> int | None:
        """1-based line of a key of a mapping (or an item of a sequence)."""
        lc = getattr(node, "lc", None)
        if lc is None:
            return None
        try:
            pos = lc.key(key) if isinstance(key, str) else lc.item(key)
        except (KeyError, IndexError, TypeError, AttributeError):
            return lc.line + 1 if getattr(lc, "line", None) is not None else None
        return pos[0] + 1 if pos else None

    @staticmethod
    def node_line(node: Any) -> int | None:
        lc = getattr(node, "lc", None)
        return lc.line + 1 if lc is not None and lc.line is not None else None

    def mapping(self, node: Any, path: str, line: int | None, allowed: Sequence[str]) -> bool:
        if not isinstance(node, dict):
            self.add(line, path, f"must be a mapping (key: value), got {_kind(node)}")
            return False
        for key in node:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                more = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(allowed)}"
                self.add(self.key_line(node, key), _join(path, str(key)), f"unknown key{more}")
        return True

    def text(self, node: dict, key: str, path: str, required: bool = False) -> str | None:
        if key not in node:
            if required:
                self.add(self.node_line(node), _join(path, key), "is required")
            return None
        value = node[key]
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            self.add(
                self.key_line(node, key), _join(path, key), f"must be a non-empty string, got {_kind(value)}"
            )
            return None
        return value.strip()

    def number(
        self, node: dict, key: str, path: str, low: float | None = None, high: float | None = None,
        integer: bool = False,
    ) -> float | None:  # fmt: skip
        if key not in node:
            return None
        value = node[key]
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if not ok or isinstance(value, bool):
            self.add(
                self.key_line(node, key), _join(path, key),
                f"must be {'an integer' if integer else 'a number'}, got {_kind(value)} {value!r}",
            )  # fmt: skip
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
            self.add(self.key_line(node, key), _join(path, key), f"must be within {bounds}, got {value}")
            return None
        return float(value)

    def boolean(self, node: dict, key: str, path: str, default: bool) -> bool:
        if key not in node:
            return default
        if not isinstance(node[key], bool):
            self.add(self.key_line(node, key), _join(path, key), f"must be true or false, got {node[key]!r}")
            return default
        return bool(node[key])

    def choices(
        self, node: dict, key: str, path: str, allowed: Sequence[str], required: bool = False,
        extra: Sequence[str] = (),
    ) -> tuple[str, ...]:  # fmt: skip
        if key not in node:
            if required:
                self.add(self.node_line(node), _join(path, key), "is required")
            return ()
        value = node[key]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or (required and not value):
            self.add(self.key_line(node, key), _join(path, key), "must be a non-empty list")
            return ()
        out: list[str] = []
        for i, item in enumerate(value):
            if item not in allowed and item not in extra:
                hint = difflib.get_close_matches(str(item), [*allowed, *extra], n=1)
                more = f"; did you mean {hint[0]!r}?" if hint else ""
                self.add(
                    self.key_line(value, i) or self.key_line(node, key), f"{_join(path, key)}[{i}]",
                    f"{item!r} is not one of {', '.join([*allowed, *extra])}{more}",
                )  # fmt: skip
            elif item in out:
                self.add(self.key_line(value, i), f"{_join(path, key)}[{i}]", f"{item!r} is listed twice")
            else:
                out.append(item)
        return tuple(out)

    def clock(self, node: dict, key: str, path: str, required: bool = True) -> dt.time | None:
        if key not in node:
            if required:
                self.add(self.node_line(node), _join(path, key), "is required (HH:MM, local time)")
            return None
        value = node[key]
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 21:30 as the sexagesimal number 1290
            value = f"{value // 60:02d}:{value % 60:02d}"
        if not isinstance(value, str) or not _TIME.match(value):
            self.add(
                self.key_line(node, key), _join(path, key), f"must be a time HH:MM (quoted), got {value!r}"
            )
            return None
        h, m = value.split(":")
        return dt.time(int(h), int(m))

    def window(self, node: dict, key: str, path: str) -> TimeWindow | None:
        if key not in node:
            return None
        value = node[key]
        line = self.key_line(node, key)
        if not self.mapping(value, _join(path, key), line, ("from", "to")):
            return None
        start = self.clock(value, "from", _join(path, key))
        end = self.clock(value, "to", _join(path, key))
        if start is not None and end is not None:
            if start == end:
                self.add(line, _join(path, key), "from and to are the same time (an empty window)")
                return None
            return TimeWindow(start, end)
        return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


_TOP_KEYS = (
    "strategy", "version", "description", "events", "timezone", "model", "consent_required",
    "do_not_disturb", "frequency_caps", "offers",
)  # fmt: skip
_OFFER_KEYS = (
    "name", "description", "events", "segments", "product", "campaign", "channels", "weight", "min_score",
    "min_amount", "max_amount", "hours", "weekdays", "maturity_within_days", "exclude_holders", "suitability",
)  # fmt: skip


def parse_strategy(text: str, file: str) -> tuple[Strategy | None, list[Problem]]:
    """One strategy from YAML text; (None, problems) when it does not validate."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    ck = _Checker(file)
    try:
        doc = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        ck.add(line, "", f"not valid YAML: {exc.problem or exc.context}")
        return None, ck.problems
    except Exception as exc:  # noqa: BLE001 - ruamel raises several unrelated types for bad input
        ck.add(None, "", f"not valid YAML: {exc}")
        return None, ck.problems
    if not ck.mapping(doc, "", 1, _TOP_KEYS):
        return None, ck.problems

    name = ck.text(doc, "strategy", "", required=True)
    version = ck.text(doc, "version", "") or ""
    events = ck.choices(doc, "events", "", EVENT_TYPES, required=True)
    tz = ck.text(doc, "timezone", "") or "Asia/Shanghai"
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        ck.add(ck.key_line(doc, "timezone"), "timezone", f"unknown time zone {tz!r} (e.g. Asia/Shanghai)")

    model, min_score = "propensity", 0.0
    if "model" in doc:
        m = doc["model"]
        if ck.mapping(m, "model", ck.key_line(doc, "model"), ("name", "min_score")):
            model = ck.text(m, "name", "model") or model
            min_score = ck.number(m, "min_score", "model", 0.0, 1.0) or 0.0

    consent = (
        ck.choices(doc, "consent_required", "", CHANNELS)
        if "consent_required" in doc
        else ("app_push", "sms")
    )

    quiet: list[QuietHours] = []
    dnd = doc.get("do_not_disturb", [])
    if not isinstance(dnd, list):
        ck.add(ck.key_line(doc, "do_not_disturb"), "do_not_disturb", "must be a list of windows")
        dnd = []
    for i, item in enumerate(dnd):
        path = f"do_not_disturb[{i}]"
        if not ck.mapping(item, path, ck.key_line(dnd, i), ("from", "to", "channels")):
            continue
        start, end = ck.clock(item, "from", path), ck.clock(item, "to", path)
        channels = ck.choices(item, "channels", path, CHANNELS) if "channels" in item else ("app_push", "sms")
        if start is not None and end is not None:
            if start == end:
                ck.add(ck.key_line(dnd, i), path, "from and to are the same time (an empty window)")
            else:
                quiet.append(QuietHours(TimeWindow(start, end), channels))

    caps: list[FrequencyCap] = []
    fc = doc.get("frequency_caps", [])
    if not isinstance(fc, list):
        ck.add(ck.key_line(doc, "frequency_caps"), "frequency_caps", "must be a list of caps")
        fc = []
    for i, item in enumerate(fc):
        path = f"frequency_caps[{i}]"
        if not ck.mapping(item, path, ck.key_line(fc, i), ("channel", "max", "days", "hours")):
            continue
        channel = ck.choices(item, "channel", path, CHANNELS, required=True, extra=("any",))
        if len(channel) > 1:
            ck.add(ck.key_line(item, "channel"), f"{path}.channel", "one channel per cap (or any)")
        cap_max = ck.number(item, "max", path, 0, 1000, integer=True)
        if "max" not in item:
            ck.add(ck.node_line(item), f"{path}.max", "is required")
        days = ck.number(item, "days", path, 0, 366)
        hours = ck.number(item, "hours", path, 0, 24 * 366)
        if ("days" in item) == ("hours" in item):
            ck.add(ck.node_line(item), path, "give exactly one of days or hours")
        span = days * 24 if days else hours
        if channel and cap_max is not None and span:
            caps.append(FrequencyCap(channel[0], int(cap_max), span))

    offers: list[Offer] = []
    raw_offers = doc.get("offers")
    if not isinstance(raw_offers, list) or not raw_offers:
        ck.add(ck.key_line(doc, "offers") or 1, "offers", "must be a non-empty list of offers")
        raw_offers = []
    seen: dict[str, int | None] = {}
    for i, item in enumerate(raw_offers):
        path = f"offers[{i}]"
        line = ck.key_line(raw_offers, i)
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip():
            path = f"offers[{i}] ({item['name'].strip()})"
        if not ck.mapping(item, path, line, _OFFER_KEYS):
            continue
        oname = ck.text(item, "name", path, required=True)
        if oname is not None:
            if oname in seen:
                ck.add(line, f"{path}.name", f"another offer has this name (line {seen[oname]})")
            seen[oname] = line
        oevents = ck.choices(item, "events", path, EVENT_TYPES, required=True)
        for e in oevents:
            if events and e not in events:
                ck.add(ck.key_line(item, "events"), f"{path}.events",
                       f"{e!r} is not among the strategy's events ({', '.join(events)})")  # fmt: skip
        product = ck.text(item, "product", path, required=True)
        channels = ck.choices(item, "channels", path, CHANNELS, required=True)
        segments = ck.choices(item, "segments", path, SEGMENTS)
        lo = ck.number(item, "min_amount", path, 0)
        hi = ck.number(item, "max_amount", path, 0)
        if lo is not None and hi is not None and lo > hi:
            ck.add(ck.key_line(item, "max_amount"), f"{path}.max_amount", "is below min_amount")
        weekdays = ck.choices(item, "weekdays", path, WEEKDAYS)
        maturity = ck.number(item, "maturity_within_days", path, 0, 3650, integer=True)
        weight = ck.number(item, "weight", path, 0)
        if oname is None or product is None or not oevents or not channels:
            continue
        offers.append(
            Offer(
                name=oname,
                events=oevents,
                product=product,
                channels=channels,
                segments=segments,
                campaign=ck.text(item, "campaign", path),
                weight=weight if weight is not None else 1.0,
                min_score=ck.number(item, "min_score", path, 0.0, 1.0),
                min_amount=lo,
                max_amount=hi,
                hours=ck.window(item, "hours", path),
                weekdays=tuple(WEEKDAYS.index(d) for d in weekdays),
                maturity_within_days=int(maturity) if maturity is not None else None,
                exclude_holders=ck.boolean(item, "exclude_holders", path, True),
                suitability=ck.boolean(item, "suitability", path, True),
                line=line,
            )
        )
    for e in events:
        if raw_offers and not any(e in o.events for o in offers) and not ck.problems:
            ck.add(ck.key_line(doc, "events"), "events", f"no offer handles {e!r}")

    if ck.problems or name is None:
        return None, ck.problems
    return (
        Strategy(
            name=name,
            file=file,
            events=events,
            offers=tuple(offers),
            timezone=tz,
            model=model,
            min_score=min_score,
            consent_required=consent,
            quiet_hours=tuple(quiet),
            caps=tuple(caps),
            version=version,
        ),
        [],
    )


def load_strategies(directory: str | Path | None = None) -> StrategySet:
    """Every strategy file of ``directory`` (default :data:`DEFAULT_STRATEGIES_DIR`).

    Raises :class:`StrategyError` listing every problem of every file (and the files that
    claim the same event type or strategy name) when anything is wrong.
    """
    folder = Path(directory) if directory is not None else DEFAULT_STRATEGIES_DIR
    if not folder.is_dir():
        raise StrategyError([Problem(str(folder), None, "", "no such folder of strategy files")])
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    if not files:
        raise StrategyError([Problem(str(folder), None, "", "holds no strategy file (*.yml)")])
    problems: list[Problem] = []
    strategies: list[Strategy] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), None, "", f"cannot read: {exc}"))
            continue
        strategy, found = parse_strategy(text, str(path))
        problems += found
        if strategy is not None:
            strategies.append(strategy)
    names: dict[str, str] = {}
    owners: dict[str, str] = {}
    for s in strategies:
        if s.name in names:
            problems.append(Problem(s.file, 1, "strategy", f"name {s.name!r} is used by {names[s.name]} too"))
        names[s.name] = s.file
        for e in s.events:
            if e in owners:
                problems.append(Problem(s.file, 1, "events", f"{e!r} is handled by {owners[e]} already"))
            owners[e] = s.file
    if problems:
        raise StrategyError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
    return StrategySet(tuple(strategies), str(folder))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dataplat.decision.strategy [DIR]``: validate the strategy files."""
    parser = argparse.ArgumentParser(prog="python -m dataplat.decision.strategy", description=main.__doc__)
    parser.add_argument("directory", nargs="?", default=str(DEFAULT_STRATEGIES_DIR))
    args = parser.parse_args(argv)
    try:
        found = load_strategies(args.directory)
    except StrategyError as exc:
        print(exc, file=sys.stderr)
        return 1
    for s in found.strategies:
        print(f"{s.file}: strategy {s.name!r}: {len(s.offers)} offer(s) for {', '.join(s.events)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
