"""Policies against the real warehouse (the shared platform): each role reads what its policy
says, the known bypasses fail, verify finds a planted leak, apply is idempotent, rollback works."""

from __future__ import annotations

import json

import psycopg
import pytest
from policy_testkit import POLICIES, PolicyEnv, as_login, assert_roles_read_their_masks, raw_rows

from dataplat.cli import main
from dataplat.policy.apply import apply, history, in_force, rollback, token_key
from dataplat.policy.loader import read_policy_texts
from dataplat.policy.masks import token
from dataplat.policy.model import PolicyApplyError
from dataplat.policy.verify import LEAK, verify


def _texts() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(POLICIES.glob("*.yml"))}


def test_apply_is_idempotent(env: PolicyEnv) -> None:
    again = apply(env.policy, env.target)  # type: ignore[arg-type]
    assert again.changed is False
    assert main(["policy", "plan", "--home", str(env.home), "--json"]) == 0


def test_each_role_reads_what_its_policy_says(env: PolicyEnv) -> None:
    assert_roles_read_their_masks(env)


def test_row_filters_and_denied_columns(env: PolicyEnv) -> None:
    branch1 = {r[0] for r in raw_rows(env, "SELECT customer_id FROM bank.customers WHERE branch_id = 1")}
    with as_login(env, "rm_verify") as conn:
        seen = {r[0] for r in conn.execute("SELECT customer_id FROM customers")}
        accounts = {r[0] for r in conn.execute("SELECT DISTINCT customer_id FROM accounts")}
    assert seen == branch1 and accounts <= branch1 and accounts
    with as_login(env, "partner_verify") as conn:
        seen = {r[0] for r in conn.execute("SELECT customer_id FROM customers")}
        assert seen == set(env.consented)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT id_number FROM customers")
        with pytest.raises(psycopg.errors.UndefinedTable):  # not granted: no view in its schema
            conn.execute("SELECT * FROM cards")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM bank_masked_marketing_analyst.cards")
    with as_login(env, "ds_verify") as conn:
        assert {r[0] for r in conn.execute("SELECT DISTINCT name FROM customers")} == {None}


def test_tokens_join_across_roles(env: PolicyEnv) -> None:
    key = token_key(env.target)  # type: ignore[arg-type]
    cid, ident = raw_rows(
        env, "SELECT customer_id, id_number FROM bank.customers ORDER BY customer_id LIMIT 1"
    )[0]
    with as_login(env, "ma_verify") as ma, as_login(env, "ds_verify") as ds:
        a = ma.execute("SELECT id_number FROM customers WHERE customer_id = %s", (cid,)).fetchone()[0]
        b = ds.execute("SELECT id_number FROM customers WHERE customer_id = %s", (cid,)).fetchone()[0]
    assert a == b == token(ident, key)


def test_known_bypasses_fail(env: PolicyEnv) -> None:
    cid, ident, mobile = raw_rows(
        env,
        "SELECT customer_id, id_number, mobile FROM bank.customers "
        "WHERE branch_id <> 1 ORDER BY customer_id LIMIT 1",
    )[0]
    with as_login(env, "ma_verify") as conn:
        assert conn.execute("SELECT count(*) FROM customers WHERE id_number = %s", (ident,)).fetchone() == (
            0,
        )
        assert conn.execute("SELECT count(*) FROM customers WHERE mobile = %s", (mobile,)).fetchone() == (0,)
        for query in ("SELECT id_number::int FROM customers", "SELECT mobile::numeric FROM customers"):
            with pytest.raises(psycopg.errors.InvalidTextRepresentation) as exc:
                conn.execute(query)
            assert ident not in str(exc.value) and mobile not in str(exc.value)
        for query in (
            "SELECT * FROM bank.customers",
            "SELECT count(*) FROM pg_catalog.pg_statistic",
            "SELECT * FROM dataplat_policy_private.token_key",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(query)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with conn.cursor().copy("COPY bank.customers TO STDOUT") as cp:
                for _ in cp:
                    pass
        stats = conn.execute("SELECT count(*) FROM pg_stats WHERE schemaname = 'bank'").fetchone()
        assert stats == (0,)
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN (ANALYZE, VERBOSE) SELECT id_number FROM customers WHERE mobile <> 'x'"
            )
        )
        assert ident not in plan
    with as_login(env, "rm_verify") as conn:  # a leaky function sees only the rows the filter lets through
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute(
            "CREATE FUNCTION pg_temp.peek(bigint) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 "
            "AS $$ BEGIN RAISE NOTICE 'peek %', $1; RETURN true; END $$"
        )
        conn.execute("SELECT count(*) FROM customers WHERE pg_temp.peek(customer_id)")
        assert notices and f"peek {cid}" not in notices


def test_verify_passes_for_the_shipped_policies(env: PolicyEnv, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["policy", "verify", "--home", str(env.home)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "marketing_analyst" in out and "LEAK" not in out


def test_verify_finds_a_planted_leak_then_passes_once_fixed(env: PolicyEnv) -> None:
    texts = _texts()
    # the hole: mobile left out of the classification, so every role reads it in clear
    texts["classification.yml"] = texts["classification.yml"].replace(
        "    mobile:     {kind: mobile,    level: 3}\n", ""
    )
    holed = read_policy_texts(texts)
    assert apply(holed, env.target).changed  # type: ignore[arg-type]
    report = verify(holed, env.target, roles=["marketing_analyst"])  # type: ignore[arg-type]
    leaks = [f for f in report.findings if f.status == LEAK]
    assert not report.ok and any("unclassified column customers.mobile" in f.detail for f in leaks), (
        report.table()
    )
    assert apply(env.policy, env.target).changed  # type: ignore[arg-type]
    assert verify(env.policy, env.target, roles=["marketing_analyst"]).ok  # type: ignore[arg-type]


def test_rollback_and_history(env: PolicyEnv, capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = in_force(env.target)  # type: ignore[arg-type]
    texts = _texts()
    texts["roles.yml"] = texts["roles.yml"].replace(
        "      mobile: partial\n      bank_card: partial\n      email: "
        "partial\n      address: partial\n      balance: clear",
        "      mobile: 'null'\n      bank_card: partial\n      email: "
        "partial\n      address: partial\n      balance: clear",
        1,
    )
    changed = read_policy_texts(texts)
    assert changed.mask_for("marketing_analyst", "customers", "mobile").kind == "null"
    assert main(["policy", "plan", "--home", str(env.home)]) == 0
    assert "no changes" in capsys.readouterr().out  # the shipped policies are the ones in force
    apply(changed, env.target, note="mobile hidden")  # type: ignore[arg-type]
    with as_login(env, "ma_verify") as conn:
        assert conn.execute("SELECT count(mobile) FROM customers").fetchone() == (0,)
    result = rollback(env.target)  # type: ignore[arg-type]
    assert result.changed and result.version is not None
    with as_login(env, "ma_verify") as conn:
        assert conn.execute("SELECT count(mobile) FROM customers").fetchone()[0] > 0
    versions = history(env.target)  # type: ignore[arg-type]
    assert versions[-1].action == "rollback" and versions[-1].sql_sha256 == before.sql_sha256  # type: ignore[union-attr]
    csv_file = tmp_path / "matrix.csv"
    assert main(["policy", "audit", "--home", str(env.home), "--json", "--csv", str(csv_file)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["history"][-1]["action"] == "rollback"
    cell = next(
        c for c in doc["matrix"] if c["role"] == "relationship_manager" and c["column"] == "id_number"
    )
    assert cell["mask"] == "partial" and cell["row_filtered"]
    assert "external_partner,customers,id_number,id_card,4,deny," in csv_file.read_text()


def test_failed_apply_leaves_previous_policies(env: PolicyEnv) -> None:
    before = in_force(env.target)  # type: ignore[arg-type]
    texts = _texts()
    texts["classification.yml"] = texts["classification.yml"].replace(
        "source_schema: bank ", "source_schema: nobank "
    )
    broken = read_policy_texts(texts)
    with pytest.raises(PolicyApplyError, match="nothing was changed"):
        apply(broken, env.target)  # type: ignore[arg-type]
    assert in_force(env.target).version == before.version  # type: ignore[union-attr]
    with as_login(env, "ma_verify") as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone()[0] > 0
