"""Where dataplat keeps its state, and the layered settings that decide it.

Order, later wins: built-in defaults -> inventory (``all.vars``) -> ``DATAPLAT_*``
environment -> command-line flags.

The home holds everything the platform writes: data directories, logs, pid files,
secrets (mode 0600), the placement plan of the last deploy and the artefacts of
every run (``runs/<ident>/``).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The source checkout (roles/, inventory/, bench/ live here)."""

DEFAULT_INVENTORY = PROJECT_ROOT / "inventory" / "local.yml"
ROLES_DIR = PROJECT_ROOT / "roles"

SERVICE_USER = "dataplat"
"""Unprivileged user that runs server processes when dataplat is invoked as root
(PostgreSQL refuses to run as root)."""


def default_home() -> Path:
    """The home when neither the environment nor the inventory sets one."""
    if os.geteuid() == 0:
        return Path("/var/lib/dataplat")
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "dataplat"


def resolve_home(flag: str | os.PathLike[str] | None = None, inventory_value: str | None = None) -> Path:
    """Apply the documented order: flag > ``DATAPLAT_HOME`` > inventory > default."""
    for candidate in (flag, os.environ.get("DATAPLAT_HOME"), inventory_value):
        if candidate:
            return Path(candidate).expanduser().resolve()
    return default_home()


def resolve_inventory(flag: str | os.PathLike[str] | None = None) -> Path:
    """flag > ``DATAPLAT_INVENTORY`` > the embedded default ``inventory/local.yml``."""
    value = flag or os.environ.get("DATAPLAT_INVENTORY")
    return Path(value).expanduser().resolve() if value else DEFAULT_INVENTORY


@dataclass(frozen=True)
class RunAs:
    """Who server processes run as."""

    user: str
    uid: int
    gid: int

    @classmethod
    def current(cls) -> RunAs:
        """Root runs services as :data:`SERVICE_USER`; anyone else as themself."""
        uid = os.geteuid()
        if uid == 0:
            try:
                pw = pwd.getpwnam(os.environ.get("DATAPLAT_SERVICE_USER", SERVICE_USER))
                return cls(pw.pw_name, pw.pw_uid, pw.pw_gid)
            except KeyError:
                return cls(os.environ.get("DATAPLAT_SERVICE_USER", SERVICE_USER), -1, -1)
        pw = pwd.getpwuid(uid)
        return cls(pw.pw_name, uid, os.getegid())
