"""Fixtures of the policy tests: the shared platform with a small bank loaded, the shipped
policies applied, and a few consents so the partner's row filter has rows to show."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from policy_testkit import CONSENTED, LOAD_SEED, LOAD_SF, POLICIES, PolicyEnv


def _ensure_bank(conninfo: str) -> None:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM bank.customers").fetchone()
    if row and row[0]:
        return
    from dataplat.data.load import load_warehouse

    load_warehouse(conninfo, LOAD_SF, LOAD_SEED, progress=False)


@pytest.fixture(scope="module")
def env(platform) -> Iterator[PolicyEnv]:  # type: ignore[no-untyped-def]
    """Shipped policies in force on the shared platform; everything removed afterwards."""
    from dataplat.policy.apply import Target, apply, remove_all
    from dataplat.policy.loader import load_policies

    target = Target.from_home(platform.home)
    _ensure_bank(target.admin_conninfo)
    remove_all(target)
    policy = load_policies(POLICIES)
    apply(policy, target)
    with target.connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT customer_id FROM bank.customers ORDER BY customer_id LIMIT %s", (CONSENTED,)
            )
        ]
        conn.execute(
            "INSERT INTO dataplat_policy.consents (customer_id, grantee, purpose) "
            "SELECT unnest(%s::bigint[]), 'external_partner', 'joint_marketing' ON CONFLICT DO NOTHING",
            (ids,),
        )
        # a revoked consent must not count
        conn.execute(
            "UPDATE dataplat_policy.consents SET revoked_at = now() WHERE customer_id = %s", (ids[-1],)
        )
        conn.commit()
    try:
        yield PolicyEnv(platform.home, target, policy, frozenset(ids[:-1]))
    finally:
        remove_all(target)
