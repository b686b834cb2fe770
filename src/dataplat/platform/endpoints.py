"""Where the deployed platform's components answer, read from its home.

``dataplat up`` writes ``<home>/platform.json``: the placement plan and the resolved
settings (database, users, lake catalog, streams). Everything that talks to the
platform (status, data load, benchmarks, drills) starts here, so nobody re-reads
the inventory or guesses ports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplat.errors import NotDeployedError

PLATFORM_FILE = "platform.json"


@dataclass(frozen=True)
class Platform:
    """The deployed platform as ``dataplat up`` recorded it."""

    home: Path
    instances: tuple[dict[str, Any], ...]
    settings: dict[str, Any]
    inventory: str

    def by_component(self, component: str) -> list[dict[str, Any]]:
        return [i for i in self.instances if i["component"] == component]

    @property
    def pgpass(self) -> Path:
        return self.home / "secrets" / "pgpass"

    @property
    def service_pgpass(self) -> Path:
        """The app user's password file, readable by the service user (decision service, exporters)."""
        return self.home / "secrets" / "service.pgpass"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"


def write_platform(home: Path, plan: dict[str, Any], settings: dict[str, Any], inventory: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / PLATFORM_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"inventory": str(inventory), "plan": plan, "settings": settings}, indent=2))
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def load_platform(home: Path) -> Platform:
    """The recorded platform; :class:`NotDeployedError` when ``dataplat up`` never ran here."""
    path = Path(home) / PLATFORM_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotDeployedError(
            f"no platform is deployed under {home} ({path} is missing); run `dataplat up` first, "
            f"or point --home / DATAPLAT_HOME at the home of a deployed platform"
        ) from None
    return Platform(
        home=Path(home),
        instances=tuple(doc["plan"]["instances"]),
        settings=doc["settings"],
        inventory=doc.get("inventory", ""),
    )


def _libpq_value(value: str) -> str:
    if value and all(c.isalnum() or c in "._-/,:" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(
    platform: Platform,
    members: list[dict[str, Any]],
    role: str = "admin",
    read_write: bool = True,
    database: str | None = None,
    passfile: Path | None = None,
) -> str:
    """A libpq conninfo for ``members`` (one or several hosts) as ``role`` (admin | app)."""
    wh = platform.settings["warehouse"]
    user = wh["admin_user"] if role == "admin" else wh["app_user"] if role == "app" else role
    parts = {
        "host": ",".join(m["address"] for m in members),
        "port": ",".join(str(m["ports"]["pg"]) for m in members),
        "dbname": database or wh["database"],
        "user": user,
        "passfile": str(passfile or platform.pgpass),
        "connect_timeout": "5",
    }
    if read_write and len(members) > 1:
        parts["target_session_attrs"] = "read-write"
    return " ".join(f"{k}={_libpq_value(v)}" for k, v in parts.items())


def warehouse_conninfo(home: Path, role: str = "admin") -> str:
    """The cluster's multi-host, read-write conninfo for ``role`` (password from the pgpass file)."""
    platform = load_platform(home)
    return conninfo(platform, platform.by_component("warehouse"), role=role)


def service_conninfo(home: Path) -> str:
    """The cluster's read-write conninfo as the app user, for processes running as the service user."""
    platform = load_platform(home)
    members = platform.by_component("warehouse")
    return conninfo(platform, members, role="app", passfile=platform.service_pgpass)


def patroni_urls(platform: Platform) -> list[str]:
    return [f"http://{m['address']}:{m['ports']['rest']}" for m in platform.by_component("warehouse")]


def nats_servers(platform: Platform) -> list[str]:
    return [f"nats://{n['address']}:{n['ports']['client']}" for n in platform.by_component("stream")]


def nats_monitor_urls(platform: Platform) -> list[str]:
    return [f"http://{n['address']}:{n['ports']['monitor']}" for n in platform.by_component("stream")]


def lake_catalog(home: Path):
    """(catalog, namespace) of the lake."""
    from dataplat.platform.lake import open_catalog

    lake = load_platform(home).settings["lake"]
    return open_catalog(lake["catalog_name"], lake["catalog_uri"], lake["warehouse"]), lake["namespace"]
