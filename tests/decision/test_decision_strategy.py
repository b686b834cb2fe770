"""Strategy files (validation with file, line and field; every problem at once) and the rules
(segments, timing, suitability, consent, quiet hours, frequency caps, ranking). No platform needed."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from dataplat.decision.events import parse_event
from dataplat.decision.rules import Catalog, Customer, Product, decide
from dataplat.decision.strategy import DEFAULT_STRATEGIES_DIR, StrategyError, load_strategies, parse_strategy

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
strategy: s
events: [payroll_credited]
timezone: Asia/Shanghai
model: {name: propensity, min_score: 0.05}
do_not_disturb:
  - {from: "21:30", to: "08:30", channels: [app_push, sms]}
frequency_caps:
  - {channel: any, max: 2, days: 7}
  - {channel: sms, max: 1, hours: 24}
offers:
  - name: wealth
    events: [payroll_credited]
    segments: [mass]
    product: WM-S30
    campaign: RT-PAYROLL-WM
    channels: [app_push, sms]
    weight: 1.0
  - name: deposit
    events: [payroll_credited]
    product: DEP-3M
    channels: [sms, rm_task]
    weight: 0.5
"""

BAD = """\
strategy: s
events: [payroll_credited, app_logn]
timezone: Mars/Olympus
frequency_caps:
  - {channel: sms, max: two, days: 7}
do_not_disturb:
  - {from: "21:30", to: "25:00"}
offers:
  - name: x
    events: [payroll_credited]
    product: WM-S30
    chanels: [app_push]
    segments: [rich]
    weight: -1
"""


def test_the_shipped_strategies_are_valid() -> None:
    found = load_strategies(DEFAULT_STRATEGIES_DIR)
    handled = {e for s in found.strategies for e in s.events}
    assert handled == {
        "payroll_credited",
        "large_inflow",
        "product_maturity",
        "transfer_out_other_bank",
        "app_login",
    }
    out = subprocess.run(
        [sys.executable, "-m", "dataplat.decision.strategy", str(DEFAULT_STRATEGIES_DIR)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def test_every_problem_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(BAD)
    (tmp_path / "broken.yml").write_text("strategy: b\nevents: [payroll_credited\noffers: []\n")
    with pytest.raises(StrategyError) as info:
        load_strategies(tmp_path)
    got = {(Path(p.file).name, p.line, p.field) for p in info.value.problems}
    assert ("bad.yml", 2, "events[1]") in got
    assert ("bad.yml", 3, "timezone") in got
    assert ("bad.yml", 5, "frequency_caps[0].max") in got
    assert ("bad.yml", 7, "do_not_disturb[0].to") in got
    assert ("bad.yml", 12, "offers[0] (x).chanels") in got
    assert ("bad.yml", 13, "offers[0] (x).segments[0]") in got
    assert ("bad.yml", 14, "offers[0] (x).weight") in got
    assert any(f == "broken.yml" and line == 3 for f, line, _ in got)
    text = str(info.value)
    assert "did you mean 'app_login'?" in text and "did you mean 'channels'?" in text
    assert f"{tmp_path / 'bad.yml'}:12: offers[0] (x).chanels: unknown key" in text


def test_two_files_may_not_claim_the_same_event(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(GOOD)
    (tmp_path / "b.yml").write_text(GOOD.replace("strategy: s", "strategy: t"))
    with pytest.raises(StrategyError, match="'payroll_credited' is handled by .*a.yml already"):
        load_strategies(tmp_path)


def test_the_service_refuses_to_start_on_bad_strategies(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "platform.json").write_text('{"plan": {"instances": []}, "settings": {}}')
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "bad.yml").write_text(BAD)
    out = subprocess.run(
        [sys.executable, "-m", "dataplat.decision.service", "--home", str(tmp_path / "home"),
         "--listen", "127.0.0.1:1", "--strategies", str(tmp_path / "strategies")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert f"{tmp_path / 'strategies' / 'bad.yml'}:12: offers[0] (x).chanels: unknown key" in out.stderr


# --- rules --------------------------------------------------------------------------------

CATALOG = Catalog(
    products={
        "WM-S30": Product(10, "WM-S30", "稳盈30天理财", "wealth_management", 2),
        "DEP-3M": Product(2, "DEP-3M", "三个月整存整取", "deposit", 1),
    },
    campaigns={"RT-PAYROLL-WM": 1},
)
SCORES = {"none": 0.5, "deposit": 0.3, "wealth_management": 0.2, "fund": 0.0, "insurance": 0.0}


def strategy():  # type: ignore[no-untyped-def]
    s, problems = parse_strategy(GOOD, "good.yml")
    assert not problems and s is not None
    return s


def event(local_time: str = "10:00", amount: float | None = 5000.0):  # type: ignore[no-untyped-def]
    doc = {
        "event_id": "e",
        "type": "payroll_credited",
        "customer_id": 1,
        "ts": f"2026-11-23T{local_time}:00+08:00",
    }
    if amount is not None:
        doc["amount"] = amount
    return parse_event(doc)


def customer(**kw):  # type: ignore[no-untyped-def]
    base = {"customer_id": 1, "segment": "mass", "risk_level": 3, "marketing_consent": True}
    return Customer(**{**base, **kw})


def test_ranking_by_score_times_weight_and_channel_order() -> None:
    c = decide(strategy(), event(), customer(), CATALOG, SCORES)
    # wealth 0.2 x 1.0 beats deposit 0.3 x 0.5
    assert (c.product.code, c.channel, c.campaign_id) == ("WM-S30", "app_push", 1)  # type: ignore[union-attr]
    assert c.score == pytest.approx(0.2)


def test_rules_only_ranks_by_weight_without_thresholds() -> None:
    c = decide(strategy(), event(), customer(), CATALOG, None)
    assert (c.product.code, c.channel, c.score) == ("WM-S30", "app_push", None)  # type: ignore[union-attr]


def test_segment_suitability_holdings_and_score_threshold() -> None:
    s = strategy()
    assert decide(s, event(), customer(segment="affluent"), CATALOG, SCORES).product.code == "DEP-3M"  # type: ignore[union-attr]
    low_risk = decide(s, event(), customer(risk_level=1), CATALOG, SCORES)
    assert low_risk.product.code == "DEP-3M"  # type: ignore[union-attr]
    assert any("risk R2 above customer's C1" in r for r in low_risk.reasons)
    holder = decide(s, event(), customer(held_products=frozenset({10})), CATALOG, SCORES)
    assert holder.product.code == "DEP-3M"  # type: ignore[union-attr]
    unlikely = decide(s, event(), customer(), CATALOG, {**SCORES, "wealth_management": 0.01})
    assert unlikely.product.code == "DEP-3M"  # type: ignore[union-attr]
    assert any("below 0.05" in r for r in unlikely.reasons)


def test_quiet_hours_consent_and_frequency_caps_pick_the_channel() -> None:
    s = strategy()
    night = decide(s, event("23:00"), customer(), CATALOG, SCORES)
    # app_push and sms are quiet at night: the deposit's rm_task is the first channel left
    assert (night.product.code, night.channel) == ("DEP-3M", "rm_task")  # type: ignore[union-attr]
    assert any("quiet hours 21:30-08:30" in r for r in night.reasons)
    no_consent = decide(s, event(), customer(marketing_consent=False), CATALOG, SCORES)
    assert no_consent.channel == "rm_task"
    when = event().ts
    capped = customer(
        contacts=[("app_push", when - dt.timedelta(days=1)), ("sms", when - dt.timedelta(days=2))]
    )
    c = decide(s, event(), capped, CATALOG, SCORES)
    assert c.channel is None and c.product is None
    assert any("frequency cap 2 per 7d on any reached (2)" in r for r in c.reasons)
    old = customer(contacts=[("app_push", when - dt.timedelta(days=8)), ("sms", when - dt.timedelta(days=9))])
    assert decide(s, event(), old, CATALOG, SCORES).channel == "app_push"
    sms_today = customer(contacts=[("sms", when - dt.timedelta(hours=2))], segment="affluent")
    assert decide(s, event(), sms_today, CATALOG, SCORES).channel == "rm_task"
