"""Chart values with the origin of every value, and their validation.

A component's values are layered, later wins:

1. ``charts/<component>/values.yaml`` (the chart's defaults);
2. what the inventory says about the platform (placement plan, ``serving_pools``,
   ``decision_min_replicas`` ... see :mod:`dataplat.k8s.render`);
3. ``all.vars.k8s_values.<component>`` in the inventory: any chart value, set by hand.

Every leaf remembers where it was set (an :class:`~dataplat.inventory.model.Origin`:
the inventory's file, line and dotted field, or the chart's ``values.yaml``), so a
value that ``charts/<component>/values.schema.json`` rejects is reported where the
user wrote it, not in a rendered manifest.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from dataplat.errors import ConfigError
from dataplat.inventory.model import Origin, PathElem, Problem, dotted, position
from dataplat.yamldoc import plain

__all__ = ["Values", "load_chart_values", "validate_values"]

Path_ = tuple[PathElem, ...]


def _leaves(value: Any, prefix: Path_ = ()) -> list[Path_]:
    """Paths of every leaf (scalars, empty containers) and of every container, under ``prefix``."""
    out: list[Path_] = [prefix]
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.extend(_leaves(v, (*prefix, str(k))))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_leaves(v, (*prefix, i)))
    return out


@dataclass
class Values:
    """The values of one chart, each with where it was set.

    ``origins`` maps a path inside ``data`` to the origin of the value there; the
    origin of a path is that of its longest prefix that has one (see :meth:`origin_of`).
    """

    component: str
    data: dict[str, Any]
    origins: dict[Path_, Origin] = field(default_factory=dict)
    default_origin: Origin | None = None

    def get(self, *path: PathElem, default: Any = None) -> Any:
        """The value at ``path`` (``default`` when a part is missing)."""
        node: Any = self.data
        for elem in path:
            if isinstance(node, Mapping) and elem in node:
                node = node[elem]
            elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
                node = node[elem]
            else:
                return default
        return node

    def set(self, path: Sequence[PathElem], value: Any, origin: Origin | None) -> None:
        """Set ``path`` to ``value`` (creating mappings on the way) and record ``origin`` for it
        and everything inside it; earlier origins below ``path`` are forgotten."""
        if not path:
            raise ValueError("empty path")
        node: Any = self.data
        for elem in path[:-1]:
            if isinstance(node, dict):
                nxt = node.get(elem)
                if not isinstance(nxt, (dict, list)):
                    nxt = {}
                    node[elem] = nxt
                node = nxt
            else:
                node = node[elem]
        node[path[-1]] = copy.deepcopy(value)
        full = tuple(path)
        for p in [p for p in self.origins if p[: len(full)] == full]:
            del self.origins[p]
        if origin is not None:
            self.origins[full] = origin

    def merge(self, overrides: Mapping[str, Any], origin_at: Any, prefix: Path_ = ()) -> None:
        """Deep-merge ``overrides`` (mappings merge, anything else replaces); ``origin_at(path)``
        gives the origin of the override at ``path`` (relative to the component)."""
        for key, value in overrides.items():
            path = (*prefix, str(key))
            current = self.get(*path)
            if isinstance(value, Mapping) and isinstance(current, Mapping):
                self.merge(value, origin_at, path)
            else:
                self.set(path, value, None)
                for sub in _leaves(value):
                    self.origins[(*path, *sub)] = origin_at((*path, *sub))

    def origin_of(self, path: Sequence[PathElem]) -> Origin:
        """Where the value at ``path`` (or the closest enclosing value) was set."""
        full = tuple(path)
        for n in range(len(full), -1, -1):
            origin = self.origins.get(full[:n])
            if origin is not None:
                return origin
        if self.default_origin is not None:
            return self.default_origin
        return Origin("", 0, 0, f"{self.component}.{dotted(full)}" if full else self.component)


def load_chart_values(charts_dir: Path, component: str) -> Values:
    """``charts/<component>/values.yaml`` with the line of every value (an empty set when absent)."""
    path = Path(charts_dir) / component / "values.yaml"
    file = str(path)
    if not path.exists():
        return Values(component, {}, {}, Origin(file, 0, 0, component))
    try:
        tree = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise ConfigError(f"{file}: the chart's values cannot be read: {exc}") from exc
    data = plain(tree) if tree is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the chart's values must be a mapping")
    origins: dict[Path_, Origin] = {}
    for p in _leaves(data):
        line, col = position(tree, p)
        origins[p] = Origin(file, line, col, dotted(p) if p else component)
    return Values(component, data, origins, Origin(file, 1, 1, component))


def load_schema(charts_dir: Path, component: str) -> dict[str, Any] | None:
    """``charts/<component>/values.schema.json`` (None when the chart has none)."""
    path = Path(charts_dir) / component / "values.schema.json"
    if not path.exists():
        return None
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: the chart's values schema cannot be read: {exc}") from exc
    jsonschema.Draft202012Validator.check_schema(schema)
    return dict(schema)


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator in ("anyOf", "oneOf") and error.context:
        # the alternative that says something (not "is not of type 'null'")
        candidates = [e for e in error.context if e.validator != "type"] or list(error.context)
        return _message(candidates[0])
    if error.validator == "not":
        desc = error.schema.get("description") if isinstance(error.schema, Mapping) else None
        return f"{error.instance!r} is not allowed" + (f" ({desc})" if desc else "")
    return error.message


def _hint(error: jsonschema.ValidationError) -> str:
    for err in (error, *error.context):
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        if schema.get("x-hint"):
            return str(schema["x-hint"])
    return ""


def validate_values(values: Values, schema: Mapping[str, Any] | None) -> list[Problem]:
    """Every value ``schema`` rejects, as a problem located where the value was set."""
    if schema is None:
        return []
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[Problem] = []
    for error in sorted(validator.iter_errors(values.data), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(error.absolute_path)
        where = f"{values.component}.{dotted(path)}" if path else values.component
        origin = values.origin_of(path)
        hint = (
            _hint(error) or f"fix the value, or the chart value {where} it sets (charts/{values.component})"
        )
        problems.append(origin.problem("error", f"k8s value {where}: {_message(error)}", hint))
    return problems
