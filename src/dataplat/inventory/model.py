"""The inventory as data: problems, hosts and the loaded inventory.

These are small records with no I/O; :mod:`dataplat.inventory.loader` builds them
from an Ansible YAML inventory and :mod:`dataplat.inventory.placement` plans
component instances from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dataplat.errors import InventoryError

Severity = Literal["error", "warning", "info"]

SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

KNOWN_GROUPS: tuple[str, ...] = ("warehouse", "lake", "stream", "serving", "decision", "loadgen")
"""Groups dataplat gives a meaning to; any other group must be listed in ``dataplat_extra_groups``."""

IMPLICIT_GROUPS: tuple[str, ...] = ("all", "ungrouped")

ARCHES: tuple[str, ...] = ("x86_64", "aarch64")


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth knowing) about an inventory, with where it is.

    ``line`` and ``column`` are 1-based (0 when unknown); ``field`` is the dotted
    path of the offending key, e.g. ``all.children.warehouse.hosts.kp-wh-1.arch``.
    """

    severity: Severity
    file: str
    line: int
    column: int
    field: str
    message: str
    hint: str = ""

    def render(self) -> str:
        """``FILE:LINE:COL: FIELD: message (fix: hint)``."""
        where = f"{self.file}:{self.line}:{self.column}"
        text = f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        return f"{text} (fix: {self.hint})" if self.hint else text

    def __str__(self) -> str:
        return self.render()

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able mapping with every field."""
        return {
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Problem:
        """Inverse of :meth:`to_dict`."""
        return cls(
            severity=d["severity"],
            file=str(d.get("file", "")),
            line=int(d.get("line", 0)),
            column=int(d.get("column", 0)),
            field=str(d.get("field", "")),
            message=str(d.get("message", "")),
            hint=str(d.get("hint", "")),
        )


@dataclass(frozen=True)
class Origin:
    """Where a value was set: file, 1-based line and column, dotted field path."""

    file: str
    line: int
    column: int
    field: str

    def problem(self, severity: Severity, message: str, hint: str = "") -> Problem:
        """A :class:`Problem` located here."""
        return Problem(severity, self.file, self.line, self.column, self.field, message, hint)


@dataclass(frozen=True)
class Host:
    """One inventory host.

    ``vars`` are merged with Ansible's precedence: role defaults < ``all`` <
    parent groups < child groups < host vars. ``groups`` lists the groups the host
    belongs to (directly or through a child group), ``all`` excluded.
    """

    name: str
    vars: Mapping[str, Any]
    groups: tuple[str, ...]

    @property
    def address(self) -> str:
        """``ansible_host`` when set, else the inventory name."""
        value = self.vars.get("ansible_host")
        return str(value) if value else self.name


PathElem = str | int


def dotted(path: Sequence[PathElem]) -> str:
    """``("all", "hosts", "h1", "nics", 0, "name")`` -> ``all.hosts.h1.nics[0].name``."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += f".{elem}" if out else str(elem)
    return out


def position(tree: Any, path: Sequence[PathElem]) -> tuple[int, int]:
    """1-based (line, column) of the key or item at ``path`` in a ruamel round-trip tree.

    Falls back to the deepest part of ``path`` that exists; (1, 1) for the document.
    """
    best = (1, 1)
    node = tree
    for elem in path:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, Mapping) and elem in node:
                if lc is not None:
                    line, col = lc.key(elem)
                    best = (line + 1, col + 1)
                node = node[elem]
            elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
                if lc is not None:
                    line, col = lc.item(elem)
                    best = (line + 1, col + 1)
                node = node[elem]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    return best


@dataclass
class Inventory:
    """A validated inventory.

    ``groups`` maps every group (``all`` and ``ungrouped`` included) to its hosts,
    in inventory order, hosts of child groups included. ``problems`` keeps the
    warnings and notes found while loading (errors make loading fail).
    ``all_vars`` holds what the inventory itself sets under ``all.vars``.
    """

    path: Path
    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    all_vars: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    var_sources: dict[str, dict[str, tuple[str, tuple[PathElem, ...]]]] = field(default_factory=dict)
    """host -> variable -> (file, path of the key in that file) of the value that won."""
    trees: dict[str, Any] = field(default_factory=dict, repr=False)
    """file -> parsed ruamel tree, to locate values inside variables."""
    group_sources: dict[str, tuple[str, tuple[PathElem, ...]]] = field(default_factory=dict)
    """group -> (file, path) of its first definition."""
    host_sources: dict[str, tuple[str, tuple[PathElem, ...]]] = field(default_factory=dict)
    """host -> (file, path) of its first appearance."""
    invalid_vars: frozenset[str] = frozenset()
    """Variables whose value the schema rejected somewhere (already reported; checks that depend
    on them are skipped so one mistake is not reported twice)."""

    def var(self, host: str, name: str, default: Any = None) -> Any:
        """The effective value of variable ``name`` for ``host`` (``default`` when unset)."""
        h = self.hosts.get(host)
        if h is None:
            raise KeyError(f"no host {host!r} in inventory {self.path}")
        return h.vars.get(name, default)

    def declared(self, host: str | None, name: str, default: Any = None) -> Any:
        """Like :meth:`var`, but only a value the inventory itself sets (role defaults ignored).

        With ``host`` None: the value ``all.vars`` sets. Use it for settings whose role
        default is a placeholder that the CLI resolves (e.g. ``dataplat_home``).
        """
        if host is None:
            return self.all_vars.get(name, default)
        source = self.var_sources.get(host, {}).get(name)
        if source is None or source[0] != str(self.path):
            return default
        return self.hosts[host].vars.get(name, default)

    def origin(self, host: str | None, name: str, *sub: PathElem) -> Origin:
        """Where the value of ``name`` seen by ``host`` (or by any host, when None) was set.

        ``sub`` goes further into the value, e.g. ``origin(h, "nics", 0, "rdma", "mtu")``.
        """
        source = None
        if host is not None:
            source = self.var_sources.get(host, {}).get(name)
        if source is None:
            source = next((s[name] for s in self.var_sources.values() if name in s), None)
        if source is None:
            if name in self.all_vars:
                source = (str(self.path), ("all", "vars", name))
            else:
                return Origin(str(self.path), 0, 0, dotted((name, *sub)))
        file, path = source
        full = (*path, *sub)
        line, col = position(self.trees.get(file), full)
        return Origin(file, line, col, dotted(full))

    def group_origin(self, group: str) -> Origin:
        """Where ``group`` is first defined (the inventory's first line when it is not)."""
        source = self.group_sources.get(group)
        if source is None:
            return Origin(str(self.path), 1, 1, f"all.children.{group}")
        file, path = source
        line, col = position(self.trees.get(file), path)
        return Origin(file, line, col, dotted(path))

    def host_origin(self, host: str) -> Origin:
        """Where ``host`` first appears in the inventory."""
        source = self.host_sources.get(host)
        if source is None:
            return Origin(str(self.path), 1, 1, host)
        file, path = source
        line, col = position(self.trees.get(file), path)
        return Origin(file, line, col, dotted(path))

    def in_inventory(self, origin: Origin) -> bool:
        """Whether ``origin`` is in the inventory file (not in role defaults)."""
        return origin.file == str(self.path) and origin.line > 0

    def hosts_of(self, group: str) -> list[Host]:
        """The hosts of ``group`` (empty when the group does not exist)."""
        return [self.hosts[h] for h in self.groups.get(group, []) if h in self.hosts]


class InventoryParseError(InventoryError):
    """The inventory file cannot be read or parsed as YAML at all (exit code 2)."""

    exit_code = 2
