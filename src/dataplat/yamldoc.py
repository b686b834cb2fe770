"""YAML documents users write (inventories, scenarios, SLOs, policies, strategies).

They are read with ruamel.yaml's round-trip loader, which keeps the line and column
of every key, so that every error can name the file, line and field. :func:`plain`
turns such a tree into plain dicts, lists and scalars once it has been checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError


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


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a YAML document a user wrote: where, which field, what."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


def line_of(node: Any, key: Any = None) -> int | None:
    """1-based line of ``node`` (or of ``key`` inside a mapping / index inside a list)."""
    try:
        if key is not None and isinstance(node, CommentedMap):
            return int(node.lc.key(key)[0]) + 1
        if key is not None and isinstance(node, CommentedSeq):
            return int(node.lc.item(key)[0]) + 1
        return int(node.lc.line) + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


def load_mapping(path: Path, what: str, error: Callable[..., Exception], shape: str) -> CommentedMap:
    """Read ``path`` as a round-trip YAML mapping, or raise ``error(message, problems)``.

    ``what`` names the kind of file in messages ("scenario", "SLO file"); ``shape`` says
    what the top-level mapping must hold.
    """
    fname = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"cannot read {what} {fname}: {exc.strerror or exc}") from None
    try:
        doc = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise error(
            f"{what} {fname} is not valid YAML",
            [Problem(fname, line, "(file)", str(getattr(exc, "problem", exc)))],
        ) from None
    if not isinstance(doc, CommentedMap):
        raise error(
            f"{what} {fname} is invalid", [Problem(fname, 1, "(file)", f"must be a mapping with {shape}")]
        )
    return doc
