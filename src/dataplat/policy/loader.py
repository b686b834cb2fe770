"""Read a folder of policy files and validate them, reporting every problem at once.

Files (``*.yml`` / ``*.yaml``, read in name order) hold any of these top-level keys:

``settings``
    ``source_schema`` (bank), ``masked_schema`` (bank_masked), ``default_mask`` (deny):
    what a role gets for a classified column it has no rule for.
``classification``
    ``{table: {column: {kind: KIND, level: 1..5}}}``.
``roles``
    ``{role: {description, tables: [...], masks: {KIND or table.column: MASK},
    row_filter: {by: branch} | {by: consent, purpose: P}, logins: [{name, branch_id(s)}]}}``.
``masks``
    ``{role: {KIND or table.column: MASK}}``: masks kept apart from the role (a role
    declared elsewhere).

A MASK is a name (``clear``, ``partial``, ``token``, ``hash``, ``null``, ``deny``) or a
mapping ``{mask: partial, keep_first: 6, keep_last: 4}`` (``round_to`` for balances).
A column rule beats the kind rule; two different rules for one role and key, in one
file or two, are a conflict. Every problem names its file, line and field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from dataplat.data.schema import TABLES, get_table
from dataplat.policy.model import (
    IDENT_RE,
    KINDS,
    LEVELS,
    MASKS,
    MIN_HIDDEN,
    NUMERIC_KINDS,
    PARTIAL_DEFAULTS,
    PURPOSE_RE,
    ROW_FILTERS,
    TEXT_ONLY_MASKS,
    USUAL_LENGTH,
    ColumnClass,
    Login,
    Mask,
    Policy,
    PolicyError,
    Problem,
    Role,
    RowFilter,
    Settings,
    Where,
)

TOP_KEYS = ("settings", "classification", "roles", "masks")
ROLE_KEYS = ("description", "tables", "masks", "row_filter", "logins")
KNOWN_TABLES = {t.name: t for t in TABLES}


def _line(node: Any, key: Any = None) -> int | None:
    """1-based line of ``node[key]`` (or of ``node``) from ruamel's round-trip info."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return int(lc.line) + 1
        if isinstance(key, int):
            return int(lc.item(key)[0]) + 1
        return int(lc.key(key)[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return int(lc.line) + 1 if getattr(lc, "line", None) is not None else None


@dataclass
class _Raw:
    """A rule as read, before merging."""

    role: str
    key: str
    mask: Mask
    where: Where


class _Reader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.settings: dict[str, tuple[Any, Where]] = {}
        self.classes: dict[str, ColumnClass] = {}
        self.roles: dict[str, tuple[Any, str, Where]] = {}
        self.rules: list[_Raw] = []
        self.mask_roles: list[tuple[str, Where]] = []

    def problem(self, file: str, line: int | None, fld: str, message: str) -> None:
        self.problems.append(Problem(file, line, fld, message))

    # --- one file ---------------------------------------------------------------------

    def read(self, file: str, text: str) -> None:
        yaml = YAML(typ="rt")
        yaml.allow_duplicate_keys = False
        try:
            doc = yaml.load(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            self.problem(file, line, "(yaml)", f"not valid YAML: {what}".strip())
            return
        except YAMLError as exc:
            self.problem(file, None, "(yaml)", f"not valid YAML: {exc}")
            return
        if doc is None:
            return
        if not isinstance(doc, Mapping):
            self.problem(file, _line(doc), "(top)", "a policy file is a mapping of " + ", ".join(TOP_KEYS))
            return
        for key in doc:
            if key not in TOP_KEYS:
                self.problem(
                    file, _line(doc, key), str(key), f"unknown section; use one of {', '.join(TOP_KEYS)}"
                )
        if "settings" in doc:
            self._settings(file, doc, doc["settings"])
        if "classification" in doc:
            self._classification(file, doc, doc["classification"])
        if "roles" in doc:
            self._roles(file, doc, doc["roles"])
        if "masks" in doc:
            node = doc["masks"]
            if not isinstance(node, Mapping):
                self.problem(
                    file, _line(doc, "masks"), "masks", "must map role -> {kind or table.column: mask}"
                )
            else:
                for role, rules in node.items():
                    self.mask_roles.append((str(role), Where(file, _line(node, role))))
                    self._rules(file, node, role, rules, f"masks.{role}")

    def _settings(self, file: str, parent: Any, node: Any) -> None:
        if not isinstance(node, Mapping):
            self.problem(file, _line(parent, "settings"), "settings", "must be a mapping")
            return
        for key, value in node.items():
            fld = f"settings.{key}"
            where = Where(file, _line(node, key))
            if key in ("source_schema", "masked_schema"):
                if not isinstance(value, str) or not IDENT_RE.match(value):
                    self.problem(
                        file, where.line, fld, f"{value!r} is not a plain identifier ([a-z][a-z0-9_]*)"
                    )
                    continue
            elif key == "default_mask":
                if value not in ("deny", "null"):
                    self.problem(file, where.line, fld, f"{value!r}: the default must be deny or null")
                    continue
            else:
                self.problem(
                    file, where.line, fld, "unknown setting; use source_schema, masked_schema, default_mask"
                )
                continue
            if key in self.settings and self.settings[key][0] != value:
                self.problem(
                    file,
                    where.line,
                    fld,
                    f"conflicts with {self.settings[key][0]!r} at {self.settings[key][1]}",
                )
                continue
            self.settings[key] = (value, where)

    def _classification(self, file: str, parent: Any, node: Any) -> None:
        if not isinstance(node, Mapping):
            self.problem(file, _line(parent, "classification"), "classification", "must map table -> columns")
            return
        for table, cols in node.items():
            tline = _line(node, table)
            if table not in KNOWN_TABLES:
                self.problem(
                    file, tline, f"classification.{table}", f"unknown table; known: {', '.join(KNOWN_TABLES)}"
                )
                continue
            if not isinstance(cols, Mapping):
                self.problem(file, tline, f"classification.{table}", "must map column -> {kind, level}")
                continue
            for column, spec in cols.items():
                fld = f"classification.{table}.{column}"
                line = _line(cols, column)
                try:
                    get_table(table).column(str(column))
                except KeyError:
                    self.problem(
                        file,
                        line,
                        fld,
                        f"unknown column of {table}; known: " + ", ".join(get_table(table).column_names),
                    )
                    continue
                if not isinstance(spec, Mapping):
                    self.problem(file, line, fld, "must be {kind: KIND, level: 1..5}")
                    continue
                for extra in spec:
                    if extra not in ("kind", "level", "note"):
                        self.problem(
                            file, _line(spec, extra), f"{fld}.{extra}", "unknown field; use kind, level, note"
                        )
                kind, level = spec.get("kind"), spec.get("level")
                ok = True
                if kind not in KINDS:
                    self.problem(
                        file,
                        _line(spec, "kind") if "kind" in spec else line,
                        f"{fld}.kind",
                        f"{kind!r} is not a kind; use one of {', '.join(KINDS)}",
                    )
                    ok = False
                if not isinstance(level, int) or isinstance(level, bool) or level not in LEVELS:
                    self.problem(
                        file,
                        _line(spec, "level") if "level" in spec else line,
                        f"{fld}.level",
                        f"{level!r}: the level is an integer 1..5",
                    )
                    ok = False
                if ok and kind in NUMERIC_KINDS and get_table(table).column(str(column)).type != "money":
                    self.problem(file, _line(spec, "kind"), f"{fld}.kind", f"{kind} needs a money column")
                    ok = False
                if ok and kind not in NUMERIC_KINDS and get_table(table).column(str(column)).type != "text":
                    self.problem(file, _line(spec, "kind"), f"{fld}.kind", f"{kind} needs a text column")
                    ok = False
                if not ok:
                    continue
                key = f"{table}.{column}"
                prev = self.classes.get(key)
                if prev is not None and (prev.kind, prev.level) != (kind, level):
                    self.problem(
                        file, line, fld, f"conflicts with {prev.kind}/level {prev.level} at {prev.where}"
                    )
                    continue
                self.classes[key] = ColumnClass(
                    table, str(column), str(kind), int(level or 0), Where(file, line)
                )

    def _roles(self, file: str, parent: Any, node: Any) -> None:
        if not isinstance(node, Mapping):
            self.problem(file, _line(parent, "roles"), "roles", "must map role name -> role")
            return
        for name, spec in node.items():
            fld = f"roles.{name}"
            line = _line(node, name)
            if not isinstance(name, str) or not IDENT_RE.match(name):
                self.problem(
                    file, line, fld, f"{name!r} is not a valid role name ([a-z][a-z0-9_]*, at most 48)"
                )
                continue
            if name in self.roles:
                self.problem(file, line, fld, f"role defined twice (also at {self.roles[name][2]})")
                continue
            if not isinstance(spec, Mapping):
                self.problem(file, line, fld, "must be a mapping of " + ", ".join(ROLE_KEYS))
                continue
            for key in spec:
                if key not in ROLE_KEYS:
                    self.problem(
                        file, _line(spec, key), f"{fld}.{key}", f"unknown field; use {', '.join(ROLE_KEYS)}"
                    )
            self.roles[name] = (spec, file, Where(file, line))
            if "masks" in spec:
                self._rules(file, spec, "masks", spec["masks"], f"{fld}.masks", role=name)

    def _rules(self, file: str, parent: Any, key: Any, node: Any, fld: str, role: str | None = None) -> None:
        role = role if role is not None else str(key)
        if not isinstance(node, Mapping):
            self.problem(file, _line(parent, key), fld, "must map KIND or table.column -> mask")
            return
        for target, value in node.items():
            tfld = f"{fld}.{target}"
            line = _line(node, target)
            target = str(target)
            kind = self._target_kind(file, line, tfld, target)
            if kind is None:
                continue
            mask = self._mask(file, node, target, value, tfld, kind)
            if mask is not None:
                self.rules.append(_Raw(role, target, mask, Where(file, line)))

    def _target_kind(self, file: str, line: int | None, fld: str, target: str) -> str | None:
        if "." not in target:
            if target not in KINDS:
                self.problem(
                    file, line, fld, f"unknown kind {target!r}; use one of {', '.join(KINDS)} or table.column"
                )
                return None
            return target
        table, _, column = target.partition(".")
        if table not in KNOWN_TABLES:
            self.problem(file, line, fld, f"unknown table {table!r}; known: {', '.join(KNOWN_TABLES)}")
            return None
        try:
            col = get_table(table).column(column)
        except KeyError:
            self.problem(file, line, fld, f"unknown column {column!r} of {table}")
            return None
        return "@" + col.type  # resolved against the classification later

    def _mask(self, file: str, parent: Any, key: Any, value: Any, fld: str, kind: str) -> Mask | None:
        line = _line(parent, key)
        if isinstance(value, Mapping):
            name = value.get("mask")
            params_node: Mapping[str, Any] = value
        else:
            name = "null" if value is None else value
            params_node = {}
        if name not in MASKS:
            self.problem(file, line, fld, f"unknown mask {name!r}; use one of {', '.join(MASKS)}")
            return None
        params: dict[str, int] = {}
        for pkey, pval in params_node.items():
            if pkey == "mask":
                continue
            pline = _line(params_node, pkey) or line
            allowed = ("keep_first", "keep_last", "round_to") if name == "partial" else ()
            if pkey not in allowed:
                self.problem(
                    file,
                    pline,
                    f"{fld}.{pkey}",
                    f"{name} takes no parameter {pkey!r}"
                    + (f"; use {', '.join(allowed)}" if allowed else ""),
                )
                return None
            if not isinstance(pval, int) or isinstance(pval, bool) or pval < (1 if pkey == "round_to" else 0):
                self.problem(file, pline, f"{fld}.{pkey}", f"{pval!r} is not a non-negative integer")
                return None
            params[str(pkey)] = pval
        if kind.startswith("@"):
            return Mask(name, tuple(sorted(params.items())))  # checked once the column's kind is known
        problem = _mask_problem(kind, name, params)
        if problem:
            self.problem(file, line, fld, problem)
            return None
        return Mask(name, tuple(sorted(params.items())))


def _mask_problem(kind: str, name: str, params: dict[str, int]) -> str | None:
    """Why ``name`` with ``params`` is not allowed for ``kind`` (None when it is)."""
    if name in TEXT_ONLY_MASKS and kind in NUMERIC_KINDS:
        return f"{name} does not apply to {kind} (a number); use clear, partial, null or deny"
    if name != "partial":
        return None
    allowed = set(PARTIAL_DEFAULTS.get(kind, {}))
    if kind == "email":
        allowed = set()
    for p in params:
        if p not in allowed:
            return f"partial of {kind} takes {', '.join(sorted(allowed)) or 'no parameters'}, not {p}"
    if kind in USUAL_LENGTH:
        full = {**PARTIAL_DEFAULTS[kind], **params}
        hidden = USUAL_LENGTH[kind] - full["keep_first"] - full["keep_last"]
        if hidden < MIN_HIDDEN[kind]:
            return (
                f"partial of {kind} must hide at least {MIN_HIDDEN[kind]} of {USUAL_LENGTH[kind]} "
                "characters; "
                f"keep_first {full['keep_first']} + keep_last {full['keep_last']} "
                f"hides only {hidden}"
            )
    return None


def _login(reader: _Reader, file: str, parent: Any, idx: int, node: Any, role: str, fld: str) -> Login | None:
    line = _line(parent, idx)
    if isinstance(node, str):
        node = {"name": node}
    if not isinstance(node, Mapping):
        reader.problem(file, line, fld, "a login is {name: NAME, branch_id: N} or a name")
        return None
    name = node.get("name")
    if not isinstance(name, str) or not IDENT_RE.match(name):
        reader.problem(
            file,
            _line(node, "name") or line,
            f"{fld}.name",
            f"{name!r} is not a valid login name ([a-z][a-z0-9_]*, at most 48)",
        )
        return None
    branches: list[int] = []
    for key, value in node.items():
        if key == "name":
            continue
        if key == "branch_id":
            value = [value]
        elif key != "branch_ids":
            reader.problem(
                file, _line(node, key), f"{fld}.{key}", "unknown field; use name, branch_id, branch_ids"
            )
            return None
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            reader.problem(file, _line(node, key), f"{fld}.{key}", "branch ids are integers")
            return None
        branches += value
    return Login(name, role, tuple(sorted(set(branches))))


def where_line(node: Any) -> int | None:
    """Line of a node (for problems about a whole mapping)."""
    return _line(node)


def _build(reader: _Reader) -> Policy | None:
    settings = Settings(**{k: v for k, (v, _where) in reader.settings.items()})
    roles: dict[str, Role] = {}
    login_seen: dict[str, Where] = {}
    for role_name, (spec, file, _where) in reader.roles.items():
        fld = f"roles.{role_name}"
        tables_node = spec.get("tables", [])
        tables: list[str] = []
        if tables_node == "all":
            tables = list(KNOWN_TABLES)
        elif not isinstance(tables_node, list):
            reader.problem(file, _line(spec, "tables"), f"{fld}.tables", "a list of tables, or 'all'")
        else:
            for i, t in enumerate(tables_node):
                if t not in KNOWN_TABLES:
                    reader.problem(
                        file,
                        _line(tables_node, i),
                        f"{fld}.tables[{i}]",
                        f"unknown table {t!r}; known: {', '.join(KNOWN_TABLES)}",
                    )
                elif t not in tables:
                    tables.append(t)
        row_filter = None
        rf = spec.get("row_filter")
        if rf is not None:
            if not isinstance(rf, Mapping) or rf.get("by") not in ROW_FILTERS:
                by = rf.get("by") if isinstance(rf, Mapping) else rf
                line = (
                    _line(rf, "by") if isinstance(rf, Mapping) and "by" in rf else _line(spec, "row_filter")
                )
                reader.problem(
                    file,
                    line,
                    f"{fld}.row_filter.by",
                    f"{by!r} is not a row filter; use one of {', '.join(ROW_FILTERS)}",
                )
            else:
                purpose = rf.get("purpose", "")
                extra = [k for k in rf if k not in ("by", "purpose")]
                if extra:
                    reader.problem(
                        file,
                        _line(rf, extra[0]),
                        f"{fld}.row_filter.{extra[0]}",
                        "unknown field; use by, purpose",
                    )
                elif rf["by"] == "consent" and (
                    not isinstance(purpose, str) or not PURPOSE_RE.match(purpose)
                ):
                    reader.problem(
                        file,
                        _line(rf, "purpose") if "purpose" in rf else _line(rf, "by"),
                        f"{fld}.row_filter.purpose",
                        f"{purpose!r}: a consent filter needs a purpose ([a-z][a-z0-9_.-]*)",
                    )
                elif rf["by"] == "branch" and purpose:
                    reader.problem(
                        file,
                        _line(rf, "purpose"),
                        f"{fld}.row_filter.purpose",
                        "the branch filter takes no purpose",
                    )
                else:
                    row_filter = RowFilter(str(rf["by"]), str(purpose))
        logins: list[Login] = []
        lnode = spec.get("logins", [])
        if not isinstance(lnode, list):
            reader.problem(file, _line(spec, "logins"), f"{fld}.logins", "a list of logins")
            lnode = []
        for i, item in enumerate(lnode):
            login = _login(reader, file, lnode, i, item, role_name, f"{fld}.logins[{i}]")
            if login is None:
                continue
            line = _line(lnode, i)
            if login.name in login_seen or login.name in reader.roles:
                other = login_seen.get(login.name) or reader.roles[login.name][2]
                reader.problem(
                    file,
                    line,
                    f"{fld}.logins[{i}].name",
                    f"{login.name!r} is already used at {other} (a login belongs to one role)",
                )
                continue
            if row_filter is not None and row_filter.by == "branch" and not login.branch_ids:
                reader.problem(
                    file,
                    line,
                    f"{fld}.logins[{i}]",
                    "this role is filtered by branch: give the login a branch_id",
                )
                continue
            login_seen[login.name] = Where(file, line)
            logins.append(login)
        if not logins:
            logins.append(
                Login(
                    f"{role_name}_verify"[:48],
                    role_name,
                    (1,) if row_filter and row_filter.by == "branch" else (),
                )
            )
        if len(settings.masked_schema) + 1 + len(role_name) > 63:
            reader.problem(
                file,
                where_line(spec),
                fld,
                f"{settings.masked_schema}_{role_name} (the role's schema) is longer than 63 characters",
            )
        desc = spec.get("description", "")
        roles[role_name] = Role(role_name, str(desc or ""), tuple(tables), {}, {}, row_filter, tuple(logins))

    for role_name, where in reader.mask_roles:
        if role_name not in roles and role_name not in reader.roles:
            reader.problem(
                where.file,
                where.line,
                f"masks.{role_name}",
                f"unknown role; defined roles: {', '.join(reader.roles) or 'none'}",
            )

    # merge mask rules; a second different rule for one role x key is a conflict
    seen: dict[tuple[str, str], _Raw] = {}
    for rule in reader.rules:
        if rule.role not in roles:
            continue
        role = roles[rule.role]
        fld = f"masks.{rule.role}.{rule.key}"
        if "." in rule.key:
            cls = reader.classes.get(rule.key)
            if cls is None:
                if rule.mask.kind != "clear" and rule.mask.kind != "deny":
                    reader.problem(
                        rule.where.file,
                        rule.where.line,
                        fld,
                        f"{rule.key} is not classified: classify it before masking it",
                    )
                    continue
                kind = "free_text"
            else:
                kind = cls.kind
            problem = _mask_problem(kind, rule.mask.kind, dict(rule.mask.params))
            if problem:
                reader.problem(rule.where.file, rule.where.line, fld, problem)
                continue
            if rule.key.partition(".")[0] not in role.tables:
                reader.problem(
                    rule.where.file,
                    rule.where.line,
                    fld,
                    f"{rule.role} is not granted table {rule.key.partition('.')[0]}",
                )
                continue
        prev = seen.get((rule.role, rule.key))
        if prev is not None:
            if prev.mask != rule.mask:
                reader.problem(
                    rule.where.file,
                    rule.where.line,
                    fld,
                    f"conflicting rules for {rule.role} x {rule.key}: {rule.mask.label()} here, "
                    f"{prev.mask.label()} at {prev.where}",
                )
            continue
        seen[(rule.role, rule.key)] = rule
        (role.column_masks if "." in rule.key else role.kind_masks)[rule.key] = rule.mask
    return Policy(settings, dict(reader.classes), roles)


def read_policy_texts(texts: Mapping[str, str]) -> Policy:
    """Validate policies given as ``{file name: YAML text}``; :class:`PolicyError` lists every problem."""
    reader = _Reader()
    for name in sorted(texts):
        reader.read(name, texts[name])
    policy = _build(reader)
    if not reader.roles and not reader.problems:
        reader.problem(", ".join(sorted(texts)) or "(none)", None, "roles", "no role is defined")
    if reader.problems or policy is None:
        problems = sorted(reader.problems, key=lambda p: (p.file, p.line or 0, p.field))
        raise PolicyError(
            f"{len(problems)} problem(s) in the policies:\n" + "\n".join(f"  {p}" for p in problems), problems
        )
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(name.encode() + b"\0" + texts[name].encode() + b"\0")
    return Policy(policy.settings, policy.classification, policy.roles, dict(texts), digest.hexdigest())


def load_policies(directory: str | Path) -> Policy:
    """Read and validate every ``*.yml`` / ``*.yaml`` of ``directory`` (or one file)."""
    path = Path(directory)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    else:
        raise PolicyError(
            f"{path}: no such policy file or folder",
            [Problem(str(path), None, "(path)", "no such file or folder")],
        )
    if not files:
        raise PolicyError(
            f"{path}: no policy files (*.yml) found", [Problem(str(path), None, "(path)", "no *.yml files")]
        )
    texts: dict[str, str] = {}
    for f in files:
        try:
            texts[f.name] = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(
                f"{f}: cannot read: {exc}", [Problem(f.name, None, "(file)", str(exc))]
            ) from exc
    return read_policy_texts(texts)
