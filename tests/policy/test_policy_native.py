"""The C masks (extension dataplat_mask) against the real warehouse of the shared platform:
`dataplat up` built and installed them, the policies use them, they compute exactly what the
Python reference computes (hypothesis, multibyte text included), the SQL masks still work
when asked for, the build is idempotent and a failed build changes nothing, and the masking
benchmark runs on the concurrent workload."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from policy_testkit import REPO, PolicyEnv, as_login, assert_roles_read_their_masks

from dataplat.policy.apply import apply, in_force, native_masks, token_key
from dataplat.policy.masks import keep, key_pads, mask_email, token
from dataplat.policy.native import NativeUnavailable, install

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
"""Any text PostgreSQL stores (no NUL), CJK and emoji included."""


def _pg_config() -> Path:
    import pgserver  # the warehouse's PostgreSQL binaries

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_config"


@pytest.fixture(scope="module")
def admin(env: PolicyEnv) -> Any:
    with psycopg.connect(env.target.admin_conninfo, autocommit=True) as conn:  # type: ignore[attr-defined]
        yield conn


def test_up_installed_the_c_masks_and_the_policies_use_them(env: PolicyEnv, admin: Any) -> None:
    assert native_masks(env.target) is True  # type: ignore[arg-type]
    version = in_force(env.target)  # type: ignore[arg-type]
    assert version is not None and any("dataplat_mask." in s for s in version.statements)
    row = admin.execute(
        "SELECT pg_get_viewdef('bank_masked_marketing_analyst.customers'::regclass)"
    ).fetchone()
    assert "mask_token" in row[0] and "k_ipad || k.k_opad" in row[0]
    plan = admin.execute(
        "EXPLAIN (VERBOSE) SELECT * FROM bank_masked_marketing_analyst.customers WHERE customer_id = 1"
    ).fetchall()
    text = "\n".join(r[0] for r in plan)
    # the wrappers are inlined: the plan calls the C functions directly, one InitPlan reads the key
    assert "dataplat_mask.token(" in text and "dataplat_mask.keep(" in text
    assert text.count("InitPlan") == 1


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(value=TEXT, first=st.integers(0, 6), last=st.integers(0, 6), hidden=st.integers(0, 5))
def test_c_keep_is_the_reference(admin: Any, value: str, first: int, last: int, hidden: int) -> None:
    got = admin.execute("SELECT dataplat_mask.keep(%s, %s, %s, %s)", (value, first, last, hidden)).fetchone()
    assert got[0] == keep(value, first, last, hidden)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(user=TEXT, domain=TEXT, at=st.booleans())
def test_c_email_is_the_reference(admin: Any, user: str, domain: str, at: bool) -> None:
    value = user + ("@" if at else "") + domain
    assert admin.execute("SELECT dataplat_mask.email(%s)", (value,)).fetchone()[0] == mask_email(value)


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(value=TEXT)
def test_c_tokens_are_the_reference(env: PolicyEnv, admin: Any, value: str) -> None:
    key = token_key(env.target)  # type: ignore[arg-type]
    ipad, opad = key_pads(key)
    tk, full = admin.execute(
        "SELECT dataplat_mask.token(%s, %s), dataplat_mask.hash(%s, %s)",
        (ipad + opad, value, ipad + opad, value),
    ).fetchone()
    assert tk == token(value, key) and full == token(value, key, full=True)


def test_c_masks_refuse_bad_arguments(admin: Any) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="must not be negative"):
        admin.execute("SELECT dataplat_mask.keep('13812345678', -1, 4, 4)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="key pads must be 128 bytes"):
        admin.execute("SELECT dataplat_mask.token('\\x00'::bytea, 'x')")


def test_policy_roles_cannot_call_the_c_functions_themselves(env: PolicyEnv) -> None:
    """The key stays unreadable; the C functions run only inside the views (EXECUTE for the
    policy roles, no schema USAGE, nothing for PUBLIC)."""

    with as_login(env, "ma_verify") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT k_ipad FROM dataplat_policy_private.token_key")
    with as_login(env, "ma_verify") as conn:
        # the views call the functions by OID; calling them by name needs the schema, not granted
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="schema dataplat_mask"):
            conn.execute("SELECT dataplat_mask.keep('abc', 1, 1, 1)")
        assert conn.execute("SELECT name FROM customers LIMIT 1").fetchone()[0].endswith("*")
    with psycopg.connect(env.target.admin_conninfo, autocommit=True) as conn:  # type: ignore[attr-defined]
        # EXECUTE goes to the policy roles (the inlined views run it as the reader), not to PUBLIC
        acl = conn.execute(
            "SELECT bool_or(a.grantee = 0) FROM pg_proc AS p, aclexplode(p.proacl) AS a "
            "WHERE p.pronamespace = 'dataplat_mask'::regnamespace"
        ).fetchone()[0]
    assert acl is False


def test_sql_masks_when_asked_then_c_again(env: PolicyEnv) -> None:
    sql_version = apply(env.policy, env.target, masks="sql")  # type: ignore[arg-type]
    try:
        assert sql_version.changed
        current = in_force(env.target)  # type: ignore[arg-type]
        assert current is not None and not any("dataplat_mask." in s for s in current.statements)
        assert_roles_read_their_masks(env)
    finally:
        back = apply(env.policy, env.target)  # type: ignore[arg-type]
    assert back.changed and back.version == sql_version.version + 1  # type: ignore[operator]
    assert_roles_read_their_masks(env)
    assert apply(env.policy, env.target).changed is False  # type: ignore[arg-type]


def test_install_is_idempotent_and_a_failed_build_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    again = install(_pg_config())
    assert again.changed is False and again.written == []
    lib = Path(again.library)
    before = lib.read_bytes()
    monkeypatch.setenv("CC", "false")  # a compiler that fails
    with pytest.raises(NativeUnavailable, match="compiling dataplat_mask.c failed"):
        install(_pg_config())
    monkeypatch.setenv("CC", "no-such-cc-here")
    with pytest.raises(NativeUnavailable, match="CC=no-such-cc-here: no such compiler"):
        install(_pg_config())
    assert lib.read_bytes() == before
    with pytest.raises(NativeUnavailable, match="not found"):
        install("/nonexistent/pg_config")


def test_install_command_says_why_it_cannot(tmp_path: Path) -> None:
    import subprocess

    env = {**os.environ, "CC": "false"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dataplat.policy.native",
            "install",
            "--pg-config",
            str(_pg_config()),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["installed"] is False and "compiling" in doc["reason"]


def test_masking_benchmark_on_the_concurrent_workload(env: PolicyEnv, tmp_path: Path) -> None:
    """A short run of bench/masking_overhead.py (timings not asserted: noisy machine)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import masking_overhead  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(REPO / "bench"))
    out = tmp_path / "mask.json"
    masking_overhead.main(
        [
            "--home",
            str(env.home),
            "--clients",
            "1,2",
            "--rounds",
            "1",
            "--seconds",
            "0.3",
            "--repeat",
            "10",
            "--json-out",
            str(out),
        ]
    )
    doc = json.loads(out.read_text())
    assert doc["masks"] == "native" and doc["errors"] == 0
    assert set(doc["workload"]) == {"customer_360@1", "customer_360@2"}
    assert sorted(doc["not_masked"]) == ["audience_by_tags", "branch_dashboard"]
    for r in doc["workload"].values():
        assert r["clear_p50_ms"] > 0 and r["masked_p50_ms"] > 0 and r["ratio"] > 0
    assert set(doc["probes"]) == {"customer_360", "audience", "branch_dashboard"}
    assert doc["pass"] == (doc["worst_workload_ratio"] <= 1.15)
