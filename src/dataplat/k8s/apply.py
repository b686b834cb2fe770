"""What applying rendered objects to a cluster would change (the future ``up --target k8s --dry-run``).

:func:`plan_apply` compares the desired objects with the live ones (as the kubernetes
client returns them, e.g. ``ApiClient().sanitize_for_serialization(obj)`` or dynamic
client ``.to_dict()``) the way server-side apply sees them: only the fields dataplat
sets are compared, so fields the API server or controllers fill in (``status``,
``metadata.uid``, defaulted fields, ``managedFields``) are not changes. Objects of the
platform (label ``app.kubernetes.io/part-of: dataplat``) that are live but no longer
rendered are listed for pruning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Change", "ApplyDiff", "FieldChange", "plan_apply", "object_key"]

Action = Literal["create", "update", "unchanged", "prune"]

Key = tuple[str, str, str, str]

PART_OF = ("app.kubernetes.io/part-of", "dataplat")


def object_key(obj: Mapping[str, Any]) -> Key:
    """(apiVersion, kind, namespace, name) of an object."""
    meta = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(meta.get("namespace") or ""),
        str(meta.get("name", "")),
    )


@dataclass(frozen=True)
class FieldChange:
    """One field that differs: its dotted path, the live value and the desired one (None: absent)."""

    path: str
    live: Any
    desired: Any

    def render(self) -> str:
        """``path: live -> desired``."""
        return f"{self.path}: {self.live!r} -> {self.desired!r}"


@dataclass(frozen=True)
class Change:
    """What happens to one object."""

    action: Action
    key: Key
    fields: tuple[FieldChange, ...] = ()

    @property
    def label(self) -> str:
        api, kind, ns, name = self.key
        return f"{kind}/{name}" + (f" -n {ns}" if ns else "") + f" ({api})"


@dataclass
class ApplyDiff:
    """Every change an apply would make, in apply order (prunes last)."""

    changes: list[Change] = field(default_factory=list)

    def of(self, action: Action) -> list[Change]:
        """The changes with ``action``."""
        return [c for c in self.changes if c.action == action]

    @property
    def empty(self) -> bool:
        """Nothing would change."""
        return all(c.action == "unchanged" for c in self.changes)

    def summary(self) -> dict[str, int]:
        """Count of changes per action."""
        out = {"create": 0, "update": 0, "unchanged": 0, "prune": 0}
        for c in self.changes:
            out[c.action] += 1
        return out

    def render(self) -> str:
        """Human-readable diff, one object a line, changed fields indented below."""
        sign = {"create": "+", "update": "~", "unchanged": "=", "prune": "-"}
        lines: list[str] = []
        for c in self.changes:
            lines.append(f"{sign[c.action]} {c.action:9} {c.label}")
            lines.extend(f"      {f.render()}" for f in c.fields)
        s = self.summary()
        lines.append(
            f"{s['create']} to create, {s['update']} to update, {s['prune']} to prune, "
            f"{s['unchanged']} unchanged"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "summary": self.summary(),
            "changes": [
                {
                    "action": c.action,
                    "apiVersion": c.key[0],
                    "kind": c.key[1],
                    "namespace": c.key[2],
                    "name": c.key[3],
                    "fields": [{"path": f.path, "live": f.live, "desired": f.desired} for f in c.fields],
                }
                for c in self.changes
            ],
        }


_IGNORED_TOP = {"status"}
_IGNORED_META = {
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "ownerReferences",
    "finalizers",
}


def _normalize(value: Any) -> Any:
    """Quantities and numbers the API server rewrites compare equal (``"2"`` and ``2``)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


def _diff(desired: Any, live: Any, path: str, out: list[FieldChange]) -> None:
    if isinstance(desired, Mapping):
        live_map = live if isinstance(live, Mapping) else {}
        if not isinstance(live, Mapping) and live is not None:
            out.append(FieldChange(path, live, desired))
            return
        for key, value in desired.items():
            if path == "" and key in _IGNORED_TOP:
                continue
            if path == "metadata" and key in _IGNORED_META:
                continue
            sub = f"{path}.{key}" if path else str(key)
            if key not in live_map:
                out.append(FieldChange(sub, None, value))
            else:
                _diff(value, live_map[key], sub, out)
        return
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            out.append(FieldChange(path, live, desired))
            return
        before = len(out)
        for i, (d, lv) in enumerate(zip(desired, live, strict=True)):
            _diff(d, lv, f"{path}[{i}]", out)
        if len(out) > before:  # report a list element by element, it reads better than the whole list
            return
        return
    if _normalize(desired) != _normalize(live):
        out.append(FieldChange(path, live, desired))


def plan_apply(objects: Iterable[Mapping[str, Any]], live_objects: Iterable[Mapping[str, Any]]) -> ApplyDiff:
    """The changes applying ``objects`` over ``live_objects`` would make.

    An object is *created* when no live object has its key, *updated* when a field
    dataplat sets differs from the live value (fields only the live object has are
    ignored, as with server-side apply), *unchanged* otherwise; a live object labelled
    as part of dataplat whose key is not among ``objects`` is *pruned*.
    """
    live = {object_key(o): o for o in live_objects}
    diff = ApplyDiff()
    wanted: set[Key] = set()
    for obj in objects:
        key = object_key(obj)
        wanted.add(key)
        current = live.get(key)
        if current is None:
            diff.changes.append(Change("create", key))
            continue
        changes: list[FieldChange] = []
        _diff(obj, current, "", changes)
        diff.changes.append(Change("update" if changes else "unchanged", key, tuple(changes)))
    for key, obj in live.items():
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if key not in wanted and labels.get(PART_OF[0]) == PART_OF[1]:
            diff.changes.append(Change("prune", key))
    return diff
