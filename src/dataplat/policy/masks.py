"""The masks, twice: SQL functions the views call, and the same rules in Python.

The Python functions are the reference the tests and ``verify`` compare the warehouse
with. Partial masks keep only the characters a bank display shows; everything else
becomes ``*`` (one per hidden character). Tokens are HMAC-SHA256 under a secret key
that lives in a table only the admin can read; the views pass it to the token function,
so a role can neither read the key nor compute tokens of values of its choosing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from decimal import ROUND_FLOOR, Decimal

from dataplat.policy.model import MIN_HIDDEN, PARTIAL_DEFAULTS, Mask

TOKEN_PREFIX = "tk_"
TOKEN_HEX = 24


def keep(value: str | None, keep_first: int, keep_last: int, min_hidden: int = 1) -> str | None:
    """Keep the first/last characters, star the rest; all stars when fewer than
    ``min_hidden`` characters would be hidden."""
    if value is None:
        return None
    n = len(value)
    if n - keep_first - keep_last < max(min_hidden, 1):
        return "*" * n
    return (
        value[:keep_first]
        + "*" * (n - keep_first - keep_last)
        + (value[n - keep_last :] if keep_last else "")
    )


def mask_email(value: str | None) -> str | None:
    """``z***@example.com``: the first character of the user part and the domain."""
    if value is None:
        return None
    at = value.find("@")
    if at < 1:
        return "***"
    return value[0] + "***" + value[at:]


_EMAIL_USER = re.compile(r"[^\s@]+@")


def mask_free_text(value: str | None) -> str | None:
    """Every digit becomes ``*``; user parts of e-mail addresses become ``***@``."""
    if value is None:
        return None
    return _EMAIL_USER.sub("***@", re.sub(r"[0-9]", "*", value))


def mask_balance(value: Decimal | None, round_to: int) -> Decimal | None:
    """Rounded down to a multiple of ``round_to``."""
    if value is None:
        return None
    return (Decimal(value) / round_to).to_integral_value(ROUND_FLOOR) * round_to


def derive_key(secret: str | bytes) -> bytes:
    """The 32-byte HMAC key derived from the configured secret."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(b"dataplat-policy-token-v1\0" + raw).digest()


def key_pads(key: bytes) -> tuple[bytes, bytes]:
    """HMAC's inner and outer padded keys (what the warehouse stores instead of the key)."""
    block = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def key_fingerprint(key: bytes) -> str:
    """A short, non-secret fingerprint that says whether the key changed."""
    return hmac.new(key, b"dataplat-policy-fingerprint", hashlib.sha256).hexdigest()[:16]


def token(value: str | None, key: bytes, full: bool = False) -> str | None:
    """``tk_`` + 24 hex digits of HMAC-SHA256 (``full``: the 64 hex digits)."""
    if value is None:
        return None
    digest = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
    return digest if full else TOKEN_PREFIX + digest[:TOKEN_HEX]


def partial(kind: str, value: str | None, mask: Mask) -> str | None:
    """The partial (display) format of ``value`` of ``kind`` for text kinds."""
    if kind == "email":
        return mask_email(value)
    if kind == "free_text":
        return mask_free_text(value)
    params = {**PARTIAL_DEFAULTS[kind], **dict(mask.params)}
    return keep(value, params["keep_first"], params["keep_last"], MIN_HIDDEN.get(kind, 1))


def apply_mask(kind: str, mask: Mask, value: object, key: bytes | None = None) -> object:
    """What a role with ``mask`` reads for ``value`` (deny: :class:`PermissionError`)."""
    if mask.kind == "clear":
        return value
    if mask.kind == "null" or value is None:
        return None
    if mask.kind == "deny":
        raise PermissionError("column not granted")
    if mask.kind in ("token", "hash"):
        if key is None:
            raise ValueError("a token needs the key")
        return token(str(value), key, full=mask.kind == "hash")
    if kind == "balance":
        return mask_balance(
            Decimal(str(value)), mask.param("round_to", PARTIAL_DEFAULTS["balance"]["round_to"])
        )
    return partial(kind, str(value), mask)


# --- SQL --------------------------------------------------------------------------------

FUNCTIONS_SQL: tuple[str, ...] = (
    """CREATE OR REPLACE FUNCTION dataplat_policy.mask_keep(v text, keep_first integer, keep_last integer,
    min_hidden integer) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN v IS NULL THEN NULL
    WHEN char_length(v) - keep_first - keep_last < greatest(min_hidden, 1) THEN repeat('*', char_length(v))
    ELSE left(v, keep_first) || repeat('*', char_length(v) - keep_first - keep_last)
         || CASE WHEN keep_last > 0 THEN right(v, keep_last) ELSE '' END END""",
    """CREATE OR REPLACE FUNCTION dataplat_policy.mask_email(v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN v IS NULL THEN NULL
    WHEN strpos(v, '@') > 1 THEN left(v, 1) || '***' || substr(v, strpos(v, '@'))
    ELSE '***' END""",
    """CREATE OR REPLACE FUNCTION dataplat_policy.mask_free_text(v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN regexp_replace(regexp_replace(v, '[0-9]', '*', 'g'), '[^\\s@]+@', '***@', 'g')""",
    """CREATE OR REPLACE FUNCTION dataplat_policy.mask_balance(v numeric, round_to numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN floor(v / round_to) * round_to""",
    f"""CREATE OR REPLACE FUNCTION dataplat_policy.mask_token(k_ipad bytea, k_opad bytea, v text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
RETURN '{TOKEN_PREFIX}'
    || left(encode(sha256(k_opad || sha256(k_ipad || convert_to(v, 'UTF8'))), 'hex'), {TOKEN_HEX})""",
    """CREATE OR REPLACE FUNCTION dataplat_policy.mask_hash(k_ipad bytea, k_opad bytea, v text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
RETURN encode(sha256(k_opad || sha256(k_ipad || convert_to(v, 'UTF8'))), 'hex')""",
)
"""Mask functions: SQL-standard bodies (bound at creation, so a reader's search_path cannot
swap the built-ins they call; still inlined). The token functions are STABLE, not IMMUTABLE,
because ``convert_to`` is STABLE: the planner inlines a SQL function only when its body is no
more volatile than it is declared, and a SQL function that is not inlined plans its body again
in every query (about 40 µs on a point lookup). They are harmless without the key: the key's padded forms
are read by the views from ``dataplat_policy_private.token_key``, which no policy role can read."""

NATIVE_EXTENSION = "dataplat_mask"

NATIVE_FUNCTIONS_SQL: tuple[str, ...] = (
    f"CREATE EXTENSION IF NOT EXISTS {NATIVE_EXTENSION}",
    """CREATE OR REPLACE FUNCTION dataplat_policy.mask_keep(v text, keep_first integer, keep_last integer,
    min_hidden integer) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN dataplat_mask.keep(v, keep_first, keep_last, min_hidden)""",
    """CREATE OR REPLACE FUNCTION dataplat_policy.mask_email(v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN dataplat_mask.email(v)""",
    *(f for f in FUNCTIONS_SQL if ".mask_free_text(" in f or ".mask_balance(" in f),
    """CREATE OR REPLACE FUNCTION dataplat_policy.mask_token(pads bytea, v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN dataplat_mask.token(pads, v)""",
    """CREATE OR REPLACE FUNCTION dataplat_policy.mask_hash(pads bytea, v text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN dataplat_mask.hash(pads, v)""",
)
"""The same functions over the C extension (:mod:`dataplat.policy.native`) where the
warehouse has it: the wrappers are inlined, so a view calls the C function directly. The
token functions take both HMAC pads in one value (inner then outer, 64 bytes each), which
the views read with one sub-select instead of two.
Free text and balances stay SQL (regular expressions and numeric arithmetic are built-in C
already)."""
