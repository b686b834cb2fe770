"""YAML documents users write (inventories, scenarios, SLOs, policies, strategies).

They are read with ruamel.yaml's round-trip loader, which keeps the line and column
of every key, so that every error can name the file, line and field. :func:`plain`
turns such a tree into plain dicts, lists and scalars once it has been checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def plain(node: Any) -> Any:
    """A ruamel tree as plain dicts, lists and scalars (for jsonschema, JSON and models)."""
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node
