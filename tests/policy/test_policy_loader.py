"""Validation of policy files: every problem at once, with file, line and field."""

from __future__ import annotations

import pytest
from policy_testkit import BAD, POLICIES

from dataplat.cli import main
from dataplat.policy.compiler import compile_policy
from dataplat.policy.loader import load_policies, read_policy_texts
from dataplat.policy.model import PolicyError


def _problems(name: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(PolicyError) as exc:
        load_policies(BAD / name)
    return [(p.file, p.line, p.field) for p in exc.value.problems]


def test_shipped_policies_validate_and_compile() -> None:
    policy = load_policies(POLICIES)
    assert set(policy.roles) == {
        "marketing_analyst",
        "relationship_manager",
        "risk_officer",
        "data_scientist",
        "external_partner",
        "auditor",
    }
    assert policy.classified("customers", "id_number").kind == "id_card"
    assert policy.mask_for("external_partner", "customers", "id_number").kind == "deny"
    assert policy.mask_for("external_partner", "cards", "card_no").kind == "deny"  # table not granted
    assert policy.mask_for("marketing_analyst", "customers", "segment").kind == "clear"  # unclassified
    compiled = compile_policy(policy)
    assert compile_policy(load_policies(POLICIES)).sha256 == compiled.sha256  # deterministic
    assert 'CREATE VIEW "bank_masked_relationship_manager"."customers" WITH (security_barrier = true)' in (
        compiled.sql
    )
    assert 'CREATE VIEW "bank_masked_auditor"."customers" AS' in compiled.sql
    assert "pg_has_role" not in compiled.sql  # nothing resolves the role at read time


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bad_yaml.yml", [("bad_yaml.yml", 5, "(yaml)")]),
        ("unknown_role.yml", [("unknown_role.yml", 7, "masks.growth_hacker")]),
        ("unknown_table.yml", [("unknown_table.yml", 4, "classification.customer_secrets")]),
        ("unknown_column.yml", [("unknown_column.yml", 4, "classification.customers.passport_no")]),
        ("unknown_mask.yml", [("unknown_mask.yml", 8, "roles.marketing_analyst.masks.name")]),
        ("conflict.yml", [("conflict.yml", 11, "masks.marketing_analyst.customers.mobile")]),
        ("duplicate_key.yml", [("duplicate_key.yml", 6, "(yaml)")]),
        ("partial_too_wide.yml", [("partial_too_wide.yml", 8, "roles.auditor.masks.id_card")]),
        (
            "many_errors.yml",
            [
                ("many_errors.yml", 3, "classification.customers.name.kind"),
                ("many_errors.yml", 4, "classification.customers.mobile.level"),
                ("many_errors.yml", 7, "roles.marketing_analyst.tables[1]"),
                ("many_errors.yml", 8, "roles.marketing_analyst.row_filter.by"),
                ("many_errors.yml", 10, "roles.marketing_analyst.masks.balance"),
            ],
        ),
    ],
)
def test_bad_policies_name_file_line_field(name: str, expected: list[tuple[str, int, str]]) -> None:
    assert _problems(name) == expected


def test_conflict_message_names_both_places() -> None:
    with pytest.raises(PolicyError) as exc:
        load_policies(BAD / "conflict.yml")
    assert "clear here, partial at conflict.yml:8" in str(exc.value)


def test_injection_like_names_are_refused() -> None:
    problems = _problems("injection_role.yml")
    assert problems == [("injection_role.yml", 2, 'roles.analyst"; DROP TABLE bank.customers; --')]
    problems = _problems("injection_schema.yml")
    assert problems == [
        ("injection_schema.yml", 2, "settings.masked_schema"),
        ("injection_schema.yml", 7, "roles.auditor.logins[0].name"),
    ]


def test_conflicts_across_files_are_found() -> None:
    texts = {
        "a.yml": "classification:\n  customers:\n    mobile: {kind: mobile, level: 3}\n"
        "roles:\n  auditor:\n    tables: [customers]\n    masks: {mobile: partial}\n",
        "b.yml": "masks:\n  auditor:\n    mobile: 'null'\n",
        "c.yml": "classification:\n  customers:\n    mobile: {kind: id_card, level: 3}\n",
    }
    with pytest.raises(PolicyError) as exc:
        read_policy_texts(texts)
    where = sorted((p.file, p.line, p.field) for p in exc.value.problems)
    assert where == [("b.yml", 3, "masks.auditor.mobile"), ("c.yml", 3, "classification.customers.mobile")]


def test_identifiers_are_quoted_in_compiled_sql() -> None:
    policy = read_policy_texts({"p.yml": "roles:\n  select:\n    tables: [customers]\n"})
    sql = compile_policy(policy).sql
    assert 'CREATE ROLE "select" NOLOGIN' in sql
    assert 'GRANT "select" TO "select_verify"' in sql


def test_cli_reports_every_problem_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["policy", "plan", "--offline", "-p", str(BAD / "many_errors.yml")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "5 problem(s)" in err and "many_errors.yml:8: roles.marketing_analyst.row_filter.by" in err


def test_cli_json_lists_problems(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    rc = main(["policy", "plan", "--offline", "--json", "-p", str(BAD / "unknown_role.yml")])
    assert rc == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["problems"][0] == {
        "file": "unknown_role.yml",
        "line": 7,
        "field": "masks.growth_hacker",
        "message": "unknown role; defined roles: marketing_analyst",
    }
