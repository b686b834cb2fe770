"""What the policy tests share (a module of its own: every test folder has a conftest.py,
so ``from conftest import`` would find whichever was imported first)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
BAD = Path(__file__).resolve().parent / "bad"
LOAD_SF = 0.002
LOAD_SEED = 424242
CONSENTED = 12
"""How many customers consent to joint marketing (the partner's filter)."""


@dataclass
class PolicyEnv:
    home: Path
    target: object  # dataplat.policy.apply.Target
    policy: object  # the shipped Policy
    consented: frozenset[int]


FORMATS = {
    "name": re.compile(r"^.\*+$"),
    "mobile": re.compile(r"^1\d{2}\*{4}\d{4}$"),
    "id_number": re.compile(r"^\d{4}\*{10}[\dX]{4}$"),
    "email": re.compile(r"^.\*\*\*@[\w.-]+$"),
}
"""The display formats of the shipped policies' partial masks."""


def as_login(env: PolicyEnv, login: str) -> psycopg.Connection[Any]:
    """A connection as one of the policies' LOGIN roles."""
    return psycopg.connect(env.target.login_conninfo(login), autocommit=True)  # type: ignore[attr-defined]


def raw_rows(env: PolicyEnv, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows read as the admin (the clear data)."""
    with env.target.connect() as conn:  # type: ignore[attr-defined]
        return conn.execute(query, params).fetchall()


def assert_roles_read_their_masks(env: PolicyEnv) -> None:
    """Every role reads, through its login, exactly what the Python reference of its masks gives."""
    from dataplat.policy.apply import token_key
    from dataplat.policy.masks import apply_mask

    raw = {
        r[0]: r
        for r in raw_rows(
            env,
            "SELECT customer_id, name, id_number, mobile, email, address, branch_id "
            "FROM bank.customers ORDER BY customer_id LIMIT 300",
        )
    }
    key = token_key(env.target)  # type: ignore[arg-type]
    cols = ("name", "id_number", "mobile", "email", "address")
    kinds = dict(zip(cols, ("name", "id_card", "mobile", "email", "address"), strict=True))
    for role in ("marketing_analyst", "relationship_manager", "risk_officer", "data_scientist", "auditor"):
        with as_login(env, env.policy.roles[role].logins[0].name) as conn:  # type: ignore[attr-defined]
            rows = conn.execute(
                "SELECT customer_id, name, id_number, mobile, email, address FROM customers "
                "WHERE customer_id = ANY(%s)",
                (list(raw),),
            ).fetchall()
        assert rows, role
        for row in rows:
            for i, col in enumerate(cols, start=1):
                mask = env.policy.mask_for(role, "customers", col)  # type: ignore[attr-defined]
                assert row[i] == apply_mask(kinds[col], mask, raw[row[0]][i], key), (role, col)
                if mask.kind == "partial" and col in FORMATS:
                    assert FORMATS[col].match(row[i]), (role, col, row[i])
    # formats of the display masks, spelled out
    with as_login(env, "ma_verify") as conn:
        name, mobile, ident = conn.execute("SELECT name, mobile, id_number FROM customers LIMIT 1").fetchone()
        card = conn.execute("SELECT card_no FROM cards LIMIT 1").fetchone()[0]
    assert re.match(r"^\d{6}\*+\d{4}$", card) and ident.startswith("tk_")
    assert re.match(r"^1\d\d\*\*\*\*\d{4}$", mobile) and re.match(r"^.\*+$", name)
