"""Properties of the masks (need hypothesis): partial formats never reveal hidden digits."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

from dataplat.policy.masks import derive_key, keep, mask_free_text, token  # noqa: E402

KEY = derive_key("test-key")


@hypothesis.given(
    digits=st.text(alphabet="0123456789", min_size=11, max_size=19),
    first=st.integers(0, 6),
    last=st.integers(0, 4),
)
def test_partial_never_reveals_hidden_digits(digits: str, first: int, last: int) -> None:
    shown = keep(digits, first, last, 4)
    assert shown is not None and len(shown) == len(digits)
    hidden = range(first, len(digits) - last) if len(digits) - first - last >= 4 else range(len(digits))
    for i in hidden:
        assert shown[i] == "*"
    for i, ch in enumerate(shown):
        assert ch == "*" or ch == digits[i]


@hypothesis.given(text=st.text(min_size=0, max_size=80))
def test_free_text_keeps_no_digit(text: str) -> None:
    shown = mask_free_text(text) or ""
    assert not any(ch in "0123456789" for ch in shown)


@hypothesis.given(value=st.text(alphabet="0123456789X", min_size=8, max_size=19))
def test_tokens_do_not_contain_the_value(value: str) -> None:
    assert value not in (token(value, KEY) or "")
