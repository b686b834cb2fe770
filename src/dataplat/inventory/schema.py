"""The JSON Schema of an inventory and messages that say what to fix.

The schema itself is data (``inventory.schema.json`` beside this module); this
module validates a plain (JSON-like) inventory against it and turns every
``jsonschema`` error, all of them at once, into a :class:`SchemaIssue` that names
the offending path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

PathElem = str | int

# What to write instead, for values people commonly get wrong.
_ALIASES = {
    "arch": {
        "arm64": "aarch64",
        "armv8": "aarch64",
        "aarch": "aarch64",
        "amd64": "x86_64",
        "x64": "x86_64",
        "x86": "x86_64",
        "x86-64": "x86_64",
    },
    "family": {
        "openEuler": "openeuler",
        "euleros": "openeuler",
        "Kylin": "kylin",
        "kylinos": "kylin",
        "uniontech": "uos",
        "UOS": "uos",
        "rhel": "centos",
        "redhat": "centos",
    },
    "type": {"roce": "roce_v2", "rocev2": "roce_v2", "roce-v2": "roce_v2", "ib": "infiniband"},
    "kind": {"gpu": "nvidia", "cuda": "nvidia", "npu": "ascend", "huawei": "ascend"},
    "accelerator": {"gpu": "nvidia", "npu": "ascend", "none": "cpu"},
}

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}


@dataclass(frozen=True)
class SchemaIssue:
    """One schema violation: where (``path`` into the document), what, and how to fix it."""

    path: tuple[PathElem, ...]
    message: str
    hint: str


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The inventory JSON Schema (draft 2020-12)."""
    text = resources.files("dataplat.inventory").joinpath("inventory.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


def _types(expected: Any) -> str:
    names = [expected] if isinstance(expected, str) else list(expected)
    names = [n for n in names if n != "null"] or names
    return " or ".join(_TYPE_NAMES.get(n, n) for n in names)


def _issue(err: ValidationError) -> Iterator[SchemaIssue]:
    path = tuple(err.absolute_path)
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    value = err.instance
    v = err.validator
    if v == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(err.schema.get("properties", {}))
        patterns = list(err.schema.get("patternProperties", {}))
        for extra in value:
            if extra in allowed or any(re.search(p, extra) for p in patterns):
                continue
            if allowed:
                hint = f"remove it or use one of: {', '.join(allowed)}"
            else:
                hint = "remove it"
            yield SchemaIssue(path + (extra,), f"unknown key {extra!r}", hint)
        return
    if v == "type":
        message = f"expected {_types(err.validator_value)}, got {_describe(value)}"
        hint = f"write {key} as {_types(err.validator_value)}"
        numeric = err.validator_value in ("integer", "number")
        if isinstance(value, str) and numeric and value.strip().isdigit():
            hint = f"drop the quotes: {key}: {value.strip()}"
        elif err.validator_value == "object" and value is None:
            hint = f"give {key} some keys or remove it"
        yield SchemaIssue(path, message, hint)
        return
    if v == "enum":
        allowed = [str(a) for a in err.validator_value]
        alias = _ALIASES.get(str(key), {}).get(str(value)) if isinstance(value, str) else None
        message = f"{_describe(value)} is not one of {', '.join(allowed)}"
        hint = f"{key} is called {alias!r} here" if alias else f"use one of: {', '.join(allowed)}"
        yield SchemaIssue(path, message, hint)
        return
    if v == "required":
        missing = [r for r in err.validator_value if isinstance(value, dict) and r not in value]
        for name in missing:
            yield SchemaIssue(path, f"missing required key {name!r}", f"add {name}: ... here")
        return
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = err.validator_value
        words = {
            "minimum": f"at least {bound}",
            "maximum": f"at most {bound}",
            "exclusiveMinimum": f"greater than {bound}",
            "exclusiveMaximum": f"less than {bound}",
        }[v]
        if key.endswith("_port"):
            words = "a TCP port between 1 and 65535"
        yield SchemaIssue(path, f"{value!r} is out of range: must be {words}", f"set {key} to {words}")
        return
    if v == "pattern":
        yield SchemaIssue(
            path,
            f"{value!r} does not match {err.validator_value}",
            f"{key} may only use the characters of {err.validator_value}",
        )
        return
    if v in ("minLength", "minItems", "minProperties"):
        what = key or "the inventory"
        yield SchemaIssue(path, f"{what} is empty", f"give {what} a value, or remove it")
        return
    yield SchemaIssue(path, err.message, "see src/dataplat/inventory/inventory.schema.json")


def validate(document: Any) -> list[SchemaIssue]:
    """Every schema violation of ``document`` (plain dicts/lists/scalars), in document order."""
    validator = jsonschema.Draft202012Validator(load_schema())
    issues: list[SchemaIssue] = []
    for err in validator.iter_errors(document):
        issues.extend(_issue(err))
    return issues
