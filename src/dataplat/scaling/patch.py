"""Patching a running supervisor's HPA, as ``kubectl patch hpa`` does in a cluster.

A drill (or a person) writes a patch next to the supervisor's state file and sends the
supervisor SIGHUP; the supervisor applies it over the HPA it was started with and says so
in its state and events. Removing the patch and sending SIGHUP again restores the deployed
HPA. The patch is JSON (or YAML) with Kubernetes' names::

    {"minReplicas": 1, "maxReplicas": 4,
     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}},
     "syncPeriodSeconds": 1, "tolerance": 0.1}

``behavior`` is merged into the deployed behaviour key by key (a partial ``scaleDown``
keeps the deployed ``scaleUp``); ``syncPeriodSeconds`` and ``tolerance`` are the
controller's flags ``--horizontal-pod-autoscaler-sync-period`` and
``--horizontal-pod-autoscaler-tolerance``. A supervisor removes a leftover patch when it
starts: a patch lives as long as the supervisor that applied it.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dataplat.errors import ConfigError
from dataplat.scaling.hpa import HPABehavior, HPASpec

__all__ = ["Controller", "apply_patch", "clear_patch", "patch_path", "read_patch", "send_patch"]

PATCH_FIELDS = ("minReplicas", "maxReplicas", "behavior", "syncPeriodSeconds", "tolerance")


@dataclass(frozen=True)
class Controller:
    """What one supervisor's HPA loop runs with: the HPA and the controller's two flags."""

    spec: HPASpec
    sync_period_s: float
    tolerance: float


def patch_path(state_dir: Path, name: str) -> Path:
    """Where the patch of the supervisor ``name`` goes (beside ``<name>.scaling.json``)."""
    return Path(state_dir) / f"{name}.hpa-patch.json"


def _merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_patch(base: Controller, doc: Mapping[str, Any]) -> Controller:
    """``base`` with ``doc`` applied; :class:`ConfigError` naming every bad field."""
    problems: list[str] = []
    unknown = sorted(set(doc) - set(PATCH_FIELDS))
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)} (known: {', '.join(PATCH_FIELDS)})")
    spec = base.spec
    changes: dict[str, Any] = {}
    for key in ("minReplicas", "maxReplicas"):
        if key in doc:
            value = doc[key]
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{key}: must be an integer, got {value!r}")
            else:
                changes[key] = value
    behavior = spec.behavior
    if "behavior" in doc:
        if not isinstance(doc["behavior"], Mapping):
            problems.append("behavior: must be a mapping with scaleUp and/or scaleDown")
        else:
            try:
                behavior = HPABehavior.from_dict(_merge(spec.behavior.to_dict(), doc["behavior"]))
            except ConfigError as exc:
                problems.append(str(exc))
    sync, tolerance = base.sync_period_s, base.tolerance
    for key in ("syncPeriodSeconds", "tolerance"):
        if key in doc:
            value = doc[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                problems.append(f"{key}: must be a number >= 0, got {value!r}")
            elif key == "syncPeriodSeconds":
                if value <= 0:
                    problems.append(f"{key}: must be above 0, got {value!r}")
                sync = float(value)
            else:
                tolerance = float(value)
    new_spec = replace(spec, behavior=behavior, **changes)
    problems += new_spec.validate()
    if problems:
        raise ConfigError("invalid HPA patch:\n  " + "\n  ".join(problems))
    return Controller(new_spec, sync, tolerance)


def read_patch(state_dir: Path, name: str) -> dict[str, Any] | None:
    """The patch waiting for ``name`` (None when there is none); ConfigError when unreadable."""
    path = patch_path(state_dir, name)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the HPA patch {path}: {exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the HPA patch {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"the HPA patch {path} must be a JSON object")
    return doc


def clear_patch(state_dir: Path, name: str) -> None:
    """Remove the patch of ``name`` (no error when there is none)."""
    try:
        patch_path(state_dir, name).unlink()
    except FileNotFoundError:
        pass


def send_patch(state_dir: Path, name: str, pid: int, doc: Mapping[str, Any] | None) -> None:
    """Write ``doc`` as the patch of ``name`` (None: remove it) and tell the supervisor (SIGHUP)."""
    path = patch_path(state_dir, name)
    if doc is None:
        clear_patch(state_dir, name)
    else:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(dict(doc), indent=1) + "\n")
        tmp.chmod(0o644)
        tmp.replace(path)
    os.kill(pid, signal.SIGHUP)
