"""Mask formats (Python reference of the SQL functions) and their properties."""

from __future__ import annotations

from decimal import Decimal

import pytest

from dataplat.policy.masks import apply_mask, derive_key, keep, mask_email, token
from dataplat.policy.model import Mask

KEY = derive_key("test-key")


@pytest.mark.parametrize(
    ("kind", "mask", "raw", "shown"),
    [
        ("name", Mask("partial"), "张三", "张*"),
        ("name", Mask("partial"), "欧阳娜娜", "欧***"),
        ("mobile", Mask("partial"), "13812341234", "138****1234"),
        ("id_card", Mask("partial"), "11010119900101002X", "1101**********002X"),
        (
            "id_card",
            Mask("partial", (("keep_first", 6), ("keep_last", 4))),
            "11010119900101002X",
            "110101********002X",
        ),
        ("bank_card", Mask("partial"), "6222021234567890", "622202******7890"),
        ("email", Mask("partial"), "zhang.san@example.com", "z***@example.com"),
        ("address", Mask("partial"), "北京市东城区春晖路9号", "北京市东城区*****"),
        ("free_text", Mask("partial"), "call 13812341234 or zs@x.cn", "call *********** or ***@x.cn"),
        ("balance", Mask("partial"), Decimal("123456.78"), Decimal("120000")),
        ("mobile", Mask("null"), "13812341234", None),
        ("mobile", Mask("clear"), "13812341234", "13812341234"),
    ],
)
def test_display_formats(kind: str, mask: Mask, raw: object, shown: object) -> None:
    assert apply_mask(kind, mask, raw, KEY) == shown


def test_short_values_are_starred_entirely() -> None:
    assert keep("1381234", 3, 4, 4) == "*******"
    assert mask_email("nobody") == "***"


def test_tokens_are_stable_keyed_and_distinct() -> None:
    a, b = token("11010119900101002X", KEY), token("11010119900101002X", KEY)
    assert a == b and a is not None and a.startswith("tk_") and len(a) == 27
    assert token("11010119900101002X", derive_key("other")) != a
    assert token("11010119900101002Y", KEY) != a
    assert len(token("x", KEY, full=True) or "") == 64


def test_deny_raises() -> None:
    with pytest.raises(PermissionError):
        apply_mask("mobile", Mask("deny"), "13812341234")


def test_order_by_evidence_needs_ties_of_different_raw_values():
    from dataplat.policy.verify import ties_in_raw_order

    # 3 groups of 5 masked-equal rows with distinct raw values: 5!^3 arrangements
    raw = {i: f"1380000{i:04d}" for i in range(15)}
    masked = {i: f"138****{i // 5}" for i in range(15)}
    in_raw_order = [(i, masked[i]) for i in sorted(raw, key=lambda k: (masked[k], raw[k]))]
    assert ties_in_raw_order(in_raw_order, raw) is True  # the sort used the raw values: a leak
    shuffled = [(i, masked[i]) for i in sorted(raw, key=lambda k: (masked[k], -int(raw[k])))]
    assert ties_in_raw_order(shuffled, raw) is False
    # equal raw values (the same free text on many rows) are no evidence either way
    same = {i: "every channel is blocked" for i in range(15)}
    assert ties_in_raw_order([(i, "every channel is blocked") for i in range(15)], same) is None
