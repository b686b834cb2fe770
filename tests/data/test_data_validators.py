"""Check digits and formats against known real-format examples."""

from __future__ import annotations

import pytest

from dataplat.data.generate import id_number_valid, luhn_valid, mobile_valid


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002X",  # the example of GB 11643-1999
        "11010519491231002x",  # lower-case check character
        "440524188001010014",  # the other example of the standard
        "110101199003074477",
    ],
)
def test_valid_id_numbers(value: str) -> None:
    assert id_number_valid(value)


@pytest.mark.parametrize(
    "value",
    [
        "110105194912310021",  # wrong check digit
        "11010519491231002",  # 17 characters
        "11010519491231002XX",
        "11010519491331002X",  # month 13
        "110105194902300020",  # 30 February
        "910105194912310029",  # region starts with 9 (check digit right)
        "11010520991231002X",  # born in the future
        "A1010519491231002X",
        "",
        None,
        11010519491231002,
    ],
)
def test_invalid_id_numbers(value: object) -> None:
    assert not id_number_valid(value)


@pytest.mark.parametrize(
    "value", ["79927398713", "4111111111111111", "6222021234567890128", "0000000000000000"]
)
def test_luhn_valid(value: str) -> None:
    assert luhn_valid(value)


@pytest.mark.parametrize(
    "value", ["79927398710", "4111111111111112", "6222021234567890123", "4", "", "4111 1111", None]
)
def test_luhn_invalid(value: object) -> None:
    assert not luhn_valid(value)


@pytest.mark.parametrize("value", ["13800138000", "15912345678", "17712345678", "18612345678", "19912345678"])
def test_mobile_valid(value: str) -> None:
    assert mobile_valid(value)


@pytest.mark.parametrize(
    "value", ["12345678901", "1380013800", "138001380001", "14012345678", "1380013800a", None]
)
def test_mobile_invalid(value: object) -> None:
    assert not mobile_valid(value)
