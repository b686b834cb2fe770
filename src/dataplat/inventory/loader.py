"""Load an Ansible YAML inventory, validate it, and say where every problem is.

The file is parsed with ruamel.yaml in round-trip mode, which records the line and
column of every key, so each :class:`~dataplat.inventory.model.Problem` points at
``FILE:LINE:COL`` and the dotted field path. Validation collects everything at
once: the JSON Schema (every violation), then semantic checks (unknown groups,
contradictions between claims, settings that cannot work), then placement
(ports bound twice, serving pools without matching accelerators, ...).

Variables are merged as Ansible does (``hash_behaviour=replace``): role defaults
< ``all`` < parent groups < child groups (same depth: ``ansible_group_priority``,
then name) < host variables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from dataplat.config import ROLES_DIR
from dataplat.errors import InventoryError
from dataplat.inventory import schema as _schema
from dataplat.inventory.model import (
    ARCHES,
    IMPLICIT_GROUPS,
    KNOWN_GROUPS,
    Host,
    Inventory,
    InventoryParseError,
    PathElem,
    Problem,
    dotted,
    position,
)
from dataplat.inventory.placement import plan as _plan
from dataplat.yamldoc import plain

__all__ = ["load_inventory", "validate_inventory", "load_role_defaults", "expand_host_pattern"]

ROCE_MTUS = (1024, 2048, 4096, 9000)
IB_MTUS = (256, 512, 1024, 2048, 4096)

# cpu_model substrings that settle the architecture.
_CPU_ARCH = (
    ("kunpeng", "aarch64"),
    ("phytium", "aarch64"),
    ("feiteng", "aarch64"),
    ("ft-2000", "aarch64"),
    ("s2500", "aarch64"),
    ("ampere", "aarch64"),
    ("graviton", "aarch64"),
    ("yitian", "aarch64"),
    ("hygon", "x86_64"),
    ("zhaoxin", "x86_64"),
    ("intel", "x86_64"),
    ("xeon", "x86_64"),
    ("amd", "x86_64"),
    ("epyc", "x86_64"),
)

_RANGE = re.compile(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::(\d+))?\]")


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def expand_host_pattern(name: str) -> list[str]:
    """Expand Ansible host ranges: ``kp-wh-[1:3]`` -> kp-wh-1..3, ``n[01:10:2]``, ``r[a:c]``."""
    m = _RANGE.search(name)
    if not m:
        return [name]
    start, end, step = m.group(1), m.group(2), int(m.group(3) or 1)
    head, tail = name[: m.start()], name[m.end() :]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    elif len(start) == 1 and len(end) == 1 and start.isalpha() and end.isalpha():
        values = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        return [name]
    out: list[str] = []
    for v in values:
        out.extend(expand_host_pattern(head + v + tail))
    return out


def _read(path: Path, file: str) -> Any:
    """Parse ``path``; raise :class:`InventoryParseError` when it cannot be read as YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        problem = Problem(
            "error",
            file,
            0,
            0,
            "",
            "inventory file not found",
            "pass an existing file with -i, or set DATAPLAT_INVENTORY",
        )
        raise InventoryParseError(f"{file}: inventory file not found", [problem]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        problem = Problem(
            "error", file, 0, 0, "", f"cannot read the inventory: {exc}", "make the file readable UTF-8 text"
        )
        raise InventoryParseError(f"{file}: cannot read the inventory: {exc}", [problem]) from exc
    try:
        tree = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        what = exc.problem or "invalid YAML"
        if exc.context:
            ctx = exc.context_mark
            started = f" started at line {ctx.line + 1}, column {ctx.column + 1}" if ctx is not None else ""
            what = f"{what} ({exc.context}{started})"
        hint = "fix the YAML syntax here (indentation, a missing ':' or closing bracket, tabs)"
        if "duplicate key" in what:
            hint = "keep one of the two keys; YAML mappings cannot repeat a key"
        problem = Problem("error", file, line, col, "", f"YAML syntax error: {what}", hint)
        raise InventoryParseError(problem.render(), [problem]) from exc
    except YAMLError as exc:
        problem = Problem("error", file, 0, 0, "", f"YAML error: {exc}", "fix the YAML syntax")
        raise InventoryParseError(problem.render(), [problem]) from exc
    if tree is None:
        problem = Problem(
            "error",
            file,
            1,
            1,
            "",
            "the inventory is empty",
            "start from inventory/local.yml or inventory/examples/",
        )
        raise InventoryParseError(problem.render(), [problem])
    if not isinstance(tree, Mapping):
        kind = "a list" if isinstance(tree, list) else f"the scalar {str(tree)[:40]!r}"
        problem = Problem(
            "error",
            file,
            1,
            1,
            "",
            f"the inventory must be a mapping of groups, not {kind}",
            "start the file with `all:` and put hosts and children under it",
        )
        raise InventoryParseError(problem.render(), [problem])
    return tree


def load_role_defaults(
    roles_dir: Path = ROLES_DIR,
) -> tuple[dict[str, Any], dict[str, tuple[str, tuple]], dict[str, Any]]:
    """Every role's ``defaults/main.yml`` merged: (values, var -> (file, path), file -> tree)."""
    values: dict[str, Any] = {}
    sources: dict[str, tuple[str, tuple]] = {}
    trees: dict[str, Any] = {}
    for path in sorted(Path(roles_dir).glob("*/defaults/main.yml")):
        try:
            tree = _yaml().load(path.read_text(encoding="utf-8"))
        except (OSError, YAMLError) as exc:
            raise InventoryError(f"role defaults {path} cannot be read: {exc}") from exc
        if not isinstance(tree, Mapping):
            continue
        trees[str(path)] = tree
        for key, value in tree.items():
            values[str(key)] = plain(value)
            sources[str(key)] = (str(path), (str(key),))
    return values, sources, trees


@dataclass
class _Group:
    name: str
    definitions: list[tuple[PathElem, ...]] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    var_layers: list[tuple[Mapping[str, Any], tuple[PathElem, ...]]] = field(default_factory=list)


class _Builder:
    """Walks the tree into groups, host definitions and variable layers."""

    def __init__(self, tree: Mapping[str, Any], invalid: set[tuple[PathElem, ...]]) -> None:
        self.invalid = invalid
        self.groups: dict[str, _Group] = {"all": _Group("all")}
        self.host_layers: dict[str, list[tuple[Mapping[str, Any], tuple[PathElem, ...]]]] = {}
        self.host_order: list[str] = []
        self.host_paths: dict[str, tuple[PathElem, ...]] = {}
        for key, node in tree.items():
            key = str(key)
            if key == "all":
                self._group("all", node, ("all",), None)
            else:
                self._group(key, node, (key,), "all")

    def _group(self, name: str, node: Any, path: tuple[PathElem, ...], parent: str | None) -> None:
        g = self.groups.setdefault(name, _Group(name))
        g.definitions.append(path)
        if parent is not None and parent not in g.parents:
            g.parents.append(parent)
            if name not in self.groups[parent].children:
                self.groups[parent].children.append(name)
        if not isinstance(node, Mapping):
            return
        hosts = node.get("hosts")
        if isinstance(hosts, Mapping):
            for raw_name, hvars in hosts.items():
                for hname in expand_host_pattern(str(raw_name)):
                    if hname not in g.hosts:
                        g.hosts.append(hname)
                    if hname not in self.host_layers:
                        self.host_layers[hname] = []
                        self.host_order.append(hname)
                        self.host_paths[hname] = (*path, "hosts", str(raw_name))
                    if isinstance(hvars, Mapping):
                        self.host_layers[hname].append((hvars, (*path, "hosts", str(raw_name))))
        gvars = node.get("vars")
        if isinstance(gvars, Mapping):
            g.var_layers.append((gvars, (*path, "vars")))
        children = node.get("children")
        if isinstance(children, Mapping):
            for cname, cnode in children.items():
                self._group(str(cname), cnode, (*path, "children", str(cname)), name)

    def ancestors(self, name: str) -> list[str]:
        seen: list[str] = []
        todo = list(self.groups[name].parents)
        while todo:
            g = todo.pop(0)
            if g in seen or g not in self.groups:
                continue
            seen.append(g)
            todo.extend(self.groups[g].parents)
        return seen

    def depth(self, name: str, _stack: tuple[str, ...] = ()) -> int:
        if name == "all":
            return 0
        if name in _stack:  # a cycle: Ansible refuses it; keep going to report the rest
            return len(_stack)
        parents = self.groups[name].parents or ["all"]
        return 1 + max(self.depth(p, (*_stack, name)) for p in parents)

    def members(self, name: str, _seen: frozenset[str] = frozenset()) -> list[str]:
        if name == "all":
            return list(self.host_order)
        g = self.groups[name]
        out = list(g.hosts)
        for child in g.children:
            if child in _seen:
                continue
            for h in self.members(child, _seen | {name}):
                if h not in out:
                    out.append(h)
        return out

    def valid_items(self, layer: Mapping[str, Any], path: tuple[PathElem, ...]) -> Iterable[tuple[str, Any]]:
        """The variables of a layer minus those the schema rejected (their defaults apply)."""
        for key, value in layer.items():
            if (*path, str(key)) in self.invalid:
                continue
            yield str(key), value


def _priority(layers: list[tuple[Mapping[str, Any], tuple[PathElem, ...]]]) -> int:
    value = 1
    for layer, _ in layers:
        raw = layer.get("ansible_group_priority")
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
    return value


def _invalid_var_paths(issues: list[_schema.SchemaIssue]) -> set[tuple[PathElem, ...]]:
    """Paths of variables (keys right under ``vars`` or a host) that hold an invalid value."""
    out: set[tuple[PathElem, ...]] = set()
    for issue in issues:
        p = issue.path
        for i in range(len(p) - 1):
            if p[i] == "vars" and i + 1 < len(p):
                out.add(tuple(p[: i + 2]))
                break
            if p[i] == "hosts" and i + 2 < len(p):
                out.add(tuple(p[: i + 3]))
                break
    return out


def validate_inventory(path: str | os.PathLike[str]) -> tuple[Inventory | None, list[Problem]]:
    """Load and check ``path``; return the inventory (None when placement was impossible) and
    every problem found, errors, warnings and notes, sorted by file and line.

    Raises :class:`InventoryParseError` only when the file cannot be parsed at all.
    """
    file = str(path)
    tree = _read(Path(path), file)
    problems: list[Problem] = []

    data = plain(tree)
    issues = _schema.validate(data)
    for issue in issues:
        line, col = position(tree, issue.path)
        problems.append(Problem("error", file, line, col, dotted(issue.path), issue.message, issue.hint))

    invalid_paths = _invalid_var_paths(issues)
    builder = _Builder(tree, invalid_paths)
    defaults, default_sources, default_trees = load_role_defaults()

    # all.vars as the inventory sets them
    all_vars: dict[str, Any] = {}
    for layer, lpath in builder.groups["all"].var_layers:
        all_vars.update({k: plain(v) for k, v in builder.valid_items(layer, lpath)})

    problems.extend(_check_groups(builder, all_vars, file, tree))
    if Path(file).parent.joinpath("group_vars").is_dir() or Path(file).parent.joinpath("host_vars").is_dir():
        problems.append(
            Problem(
                "warning",
                file,
                1,
                1,
                "",
                "group_vars/ or host_vars/ beside the inventory are not read by "
                "dataplat, so its checks and placement do not see them",
                "move those variables into the inventory file (all.vars, group vars, host vars)",
            )
        )

    # merged host variables
    hosts: dict[str, Host] = {}
    var_sources: dict[str, dict[str, tuple[str, tuple[PathElem, ...]]]] = {}
    for hname in builder.host_order:
        direct = [g for g, grp in builder.groups.items() if hname in grp.hosts and g != "all"]
        member_of: list[str] = []
        for g in direct:
            for a in [g, *builder.ancestors(g)]:
                if a not in member_of and a != "all":
                    member_of.append(a)
        if not member_of:
            member_of = ["ungrouped"]
        ordered = sorted(
            (g for g in member_of if g in builder.groups),
            key=lambda g: (builder.depth(g), _priority(builder.groups[g].var_layers), g),
        )
        values = dict(defaults)
        sources: dict[str, tuple[str, tuple[PathElem, ...]]] = dict(default_sources)
        for gname in ["all", *ordered]:
            for layer, lpath in builder.groups[gname].var_layers:
                for k, v in builder.valid_items(layer, lpath):
                    values[k] = plain(v)
                    sources[k] = (file, (*lpath, k))
        for layer, lpath in builder.host_layers[hname]:
            for k, v in builder.valid_items(layer, lpath):
                values[k] = plain(v)
                sources[k] = (file, (*lpath, k))
        hosts[hname] = Host(hname, values, tuple(member_of))
        var_sources[hname] = sources

    groups: dict[str, list[str]] = {"all": list(builder.host_order)}
    for gname in builder.groups:
        if gname != "all":
            groups[gname] = builder.members(gname)
    groups["ungrouped"] = [h for h, host in hosts.items() if host.groups == ("ungrouped",)]

    inventory = Inventory(
        path=Path(path),
        hosts=hosts,
        groups=groups,
        all_vars=all_vars,
        var_sources=var_sources,
        trees={file: tree, **default_trees},
        group_sources={g: (file, grp.definitions[0]) for g, grp in builder.groups.items() if grp.definitions},
        host_sources={h: (file, p) for h, p in builder.host_paths.items()},
        invalid_vars=frozenset(str(p[-1]) for p in invalid_paths),
    )
    problems.extend(_check_hosts(inventory))
    result_plan = _plan(inventory)
    problems.extend(result_plan.problems)

    problems = list(dict.fromkeys(problems))
    order = {"error": 0, "warning": 1, "info": 2}
    problems.sort(key=lambda p: (p.file != file, p.file, p.line, p.column, order[p.severity]))
    inventory.problems = [p for p in problems if not p.is_error]
    return inventory, problems


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Load and validate the inventory at ``path``.

    Raises :class:`InventoryParseError` when it cannot be parsed, and
    :class:`~dataplat.errors.InventoryError` (``.problems`` lists every problem)
    when anything is wrong; warnings are kept in ``Inventory.problems``.
    """
    inventory, problems = validate_inventory(path)
    errors = [p for p in problems if p.is_error]
    if errors or inventory is None:
        lines = "\n".join(p.render() for p in errors)
        raise InventoryError(f"{path}: {len(errors)} error(s) in the inventory:\n{lines}", problems)
    return inventory


def _check_groups(builder: _Builder, all_vars: Mapping[str, Any], file: str, tree: Any) -> list[Problem]:
    problems: list[Problem] = []
    extra = all_vars.get("dataplat_extra_groups") or []
    allowed = set(KNOWN_GROUPS) | set(IMPLICIT_GROUPS) | {str(g) for g in extra}
    for name, group in builder.groups.items():
        if name in allowed:
            continue
        where = group.definitions[0]
        line, col = position(tree, where)
        problems.append(
            Problem(
                "error",
                file,
                line,
                col,
                dotted(where),
                f"unknown group {name!r}",
                f"use one of {', '.join(KNOWN_GROUPS)}; to keep a group of your own, list it in "
                f"all.vars.dataplat_extra_groups",
            )
        )
    for name, group in builder.groups.items():
        if name in builder.ancestors(name):
            where = group.definitions[-1]
            line, col = position(tree, where)
            problems.append(
                Problem(
                    "error",
                    file,
                    line,
                    col,
                    dotted(where),
                    f"group {name!r} is its own ancestor",
                    "remove the cycle in children",
                )
            )
    for name in builder.host_order:
        if name in builder.groups and name not in IMPLICIT_GROUPS:
            where = builder.groups[name].definitions[0]
            line, col = position(tree, where)
            problems.append(
                Problem(
                    "warning",
                    file,
                    line,
                    col,
                    dotted(where),
                    f"{name!r} is both a host and a group; Ansible patterns become ambiguous",
                    "rename the host or the group",
                )
            )
    return problems


def _check_hosts(inv: Inventory) -> list[Problem]:
    problems: list[Problem] = []
    for name, host in inv.hosts.items():
        v = host.vars
        arch = v.get("arch")
        model = v.get("cpu_model")
        if isinstance(model, str) and arch in ARCHES:
            lowered = model.lower()
            implied = next((a for key, a in _CPU_ARCH if key in lowered), None)
            if implied is not None and implied != arch:
                problems.append(
                    inv.origin(name, "arch").problem(
                        "error",
                        f"host {name}: cpu_model {model!r} is an {implied} CPU but arch says {arch}",
                        f"set arch: {implied}, or correct cpu_model",
                    )
                )
        nics = v.get("nics") or []
        seen_nics: set[str] = set()
        seen_devs: set[str] = set()
        for i, nic in enumerate(nics if isinstance(nics, list) else []):
            if not isinstance(nic, Mapping):
                continue
            nic_name = str(nic.get("name", ""))
            if nic_name in seen_nics:
                problems.append(
                    inv.origin(name, "nics", i, "name").problem(
                        "error", f"host {name}: NIC {nic_name!r} is declared twice", "declare each NIC once"
                    )
                )
            seen_nics.add(nic_name)
            rdma = nic.get("rdma")
            if not isinstance(rdma, Mapping):
                continue
            device = str(rdma.get("device", ""))
            if device in seen_devs:
                problems.append(
                    inv.origin(name, "nics", i, "rdma", "device").problem(
                        "error",
                        f"host {name}: RDMA device {device!r} is declared on two NICs",
                        "each NIC has its own RDMA device (mlx5_0, mlx5_1, ...)",
                    )
                )
            seen_devs.add(device)
            kind = rdma.get("type")
            mtu = rdma.get("mtu")
            if isinstance(mtu, int) and not isinstance(mtu, bool):
                allowed = ROCE_MTUS if kind == "roce_v2" else IB_MTUS if kind == "infiniband" else ()
                if allowed and mtu not in allowed:
                    problems.append(
                        inv.origin(name, "nics", i, "rdma", "mtu").problem(
                            "error",
                            f"host {name}: MTU {mtu} is not valid for {kind} on {device}",
                            f"use one of {', '.join(map(str, allowed))} (RoCE fabrics usually 4096)",
                        )
                    )
            if kind == "roce_v2" and "pfc_priority" not in rdma and rdma.get("ecn") is not True:
                problems.append(
                    inv.origin(name, "nics", i, "rdma").problem(
                        "warning",
                        f"host {name}: RoCEv2 on {device} has neither PFC nor ECN: the fabric is "
                        "lossy under congestion",
                        "set pfc_priority (usually 3) and ecn: true as the switches do",
                    )
                )
            if kind == "infiniband" and "pfc_priority" in rdma:
                problems.append(
                    inv.origin(name, "nics", i, "rdma", "pfc_priority").problem(
                        "warning",
                        f"host {name}: pfc_priority has no meaning on InfiniBand ({device})",
                        "remove pfc_priority, or set type: roce_v2 if this is an Ethernet fabric",
                    )
                )
    # platform-wide settings
    if inv.hosts:
        first = next(iter(inv.hosts))
        wh = inv.hosts_of("warehouse")
        ref = wh[0].name if wh else first
        if inv.var(ref, "warehouse_dcs") == "etcd3" and not inv.var(ref, "warehouse_etcd_hosts"):
            problems.append(
                inv.origin(ref, "warehouse_dcs").problem(
                    "error",
                    "warehouse_dcs is etcd3 but warehouse_etcd_hosts is empty",
                    "list the etcd endpoints in warehouse_etcd_hosts (host:2379), or use warehouse_dcs: raft",
                )
            )
    return problems
