"""The validated policy: small immutable records, and the kinds and masks they use."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dataplat.errors import ConfigError, DataplatError
from dataplat.yamldoc import Problem

KINDS: tuple[str, ...] = (
    "name",
    "id_card",
    "mobile",
    "bank_card",
    "email",
    "address",
    "balance",
    "free_text",
)
"""Kinds of personal financial information a column can hold."""

TEXT_KINDS = frozenset(KINDS) - {"balance"}
NUMERIC_KINDS = frozenset({"balance"})

MASKS: tuple[str, ...] = ("clear", "partial", "token", "hash", "null", "deny")
"""What a role gets for a column: the value, a bank display format, a keyed token (24 hex
digits, stable so joins work), a keyed full HMAC-SHA256, NULL, or no privilege at all."""

TEXT_ONLY_MASKS = frozenset({"token", "hash"})

LEVELS = range(1, 6)
"""Sensitivity levels 1 (public) .. 5 (most sensitive), after JR/T 0197-2020."""

ROW_FILTERS: tuple[str, ...] = ("branch", "consent")
"""``branch``: rows of customers of the login's branch(es) (``dataplat_policy.login_branches``);
``consent``: rows of customers with a live consent for the role and purpose
(``dataplat_policy.consents``)."""

IDENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
"""Names that become SQL identifiers (roles, logins, schemas): lower-case letters, digits
and ``_``; anything else is refused at validation (and quoted anyway when compiled)."""

PURPOSE_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")

# default parameters of ``partial`` per kind, and what a policy may not go beyond
PARTIAL_DEFAULTS: dict[str, dict[str, int]] = {
    "name": {"keep_first": 1, "keep_last": 0},
    "id_card": {"keep_first": 4, "keep_last": 4},
    "mobile": {"keep_first": 3, "keep_last": 4},
    "bank_card": {"keep_first": 6, "keep_last": 4},
    "email": {"keep_first": 1, "keep_last": 0},
    "address": {"keep_first": 6, "keep_last": 0},
    "free_text": {},
    "balance": {"round_to": 10000},
}
MIN_HIDDEN: dict[str, int] = {"id_card": 8, "mobile": 4, "bank_card": 6, "name": 1, "address": 1, "email": 0}
"""``partial`` must hide at least this many characters of the usual length of the kind."""
USUAL_LENGTH: dict[str, int] = {"id_card": 18, "mobile": 11, "bank_card": 16}


class PolicyError(ConfigError):
    """The policies do not validate; ``problems`` lists every :class:`Problem` found."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class PolicyApplyError(DataplatError):
    """Compiled policies could not be applied (the previous ones stay in force)."""


@dataclass(frozen=True)
class Where:
    """Where a rule was written (for conflict messages)."""

    file: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Mask:
    """A mask and its parameters (``keep_first``, ``keep_last``, ``round_to``)."""

    kind: str
    params: tuple[tuple[str, int], ...] = ()

    def param(self, name: str, default: int = 0) -> int:
        """A parameter's value, or ``default``."""
        return dict(self.params).get(name, default)

    def label(self) -> str:
        """``partial(keep_first=4,keep_last=4)`` style, for diffs and audits."""
        if not self.params:
            return self.kind
        return f"{self.kind}(" + ",".join(f"{k}={v}" for k, v in self.params) + ")"


@dataclass(frozen=True)
class ColumnClass:
    """A classified column: its kind and sensitivity level."""

    table: str
    column: str
    kind: str
    level: int
    where: Where

    @property
    def key(self) -> str:
        """``table.column``."""
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class Login:
    """A LOGIN member of a policy role (tests, verify, real users)."""

    name: str
    role: str
    branch_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class RowFilter:
    """Which rows a role sees: ``by`` one of :data:`ROW_FILTERS`."""

    by: str
    purpose: str = ""

    def label(self) -> str:
        """Human label (``branch`` / ``consent:purpose``)."""
        return f"{self.by}:{self.purpose}" if self.purpose else self.by


@dataclass(frozen=True)
class Role:
    """A policy role: tables it may read, its masks, its row filter, its logins."""

    name: str
    description: str
    tables: tuple[str, ...]
    kind_masks: dict[str, Mask]
    column_masks: dict[str, Mask]
    row_filter: RowFilter | None
    logins: tuple[Login, ...]


@dataclass(frozen=True)
class Settings:
    """Schemas and the default for classified columns a role has no rule for."""

    source_schema: str = "bank"
    masked_schema: str = "bank_masked"
    default_mask: str = "deny"


@dataclass(frozen=True)
class Policy:
    """Every policy file of a folder, merged and validated."""

    settings: Settings
    classification: dict[str, ColumnClass]
    roles: dict[str, Role]
    sources: dict[str, str] = field(default_factory=dict)
    """file name -> YAML text, as read."""
    source_sha256: str = ""

    def classified(self, table: str, column: str) -> ColumnClass | None:
        """The classification of ``table.column``, if any."""
        return self.classification.get(f"{table}.{column}")

    def mask_for(self, role: str, table: str, column: str) -> Mask:
        """What ``role`` gets for ``table.column``: deny outside its tables, clear for
        unclassified columns, else the column rule, the kind rule, or the default."""
        r = self.roles[role]
        if table not in r.tables:
            return Mask("deny")
        cls = self.classified(table, column)
        if cls is None:
            return Mask("clear")
        key = f"{table}.{column}"
        if key in r.column_masks:
            return r.column_masks[key]
        if cls.kind in r.kind_masks:
            return r.kind_masks[cls.kind]
        return Mask(self.settings.default_mask)

    @property
    def logins(self) -> tuple[Login, ...]:
        """Every login of every role."""
        return tuple(login for r in self.roles.values() for login in r.logins)
