"""What a suite gets to work with while it runs, and the errors a benchmark raises."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataplat.config import PROJECT_ROOT
from dataplat.errors import DataplatError
from dataplat.platform import endpoints

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pyiceberg.catalog import Catalog

BENCH_DIR = PROJECT_ROOT / "bench"
"""Where the shipped workloads live: ``batch/``, ``concurrent/``, ``slo/``."""

DEFAULT_SEED = 20261121
DEFAULT_STEPS = (1, 4, 16, 64)
DEFAULT_DURATION_S = 30.0


class BenchError(DataplatError):
    """A benchmark could not run (platform missing, bad workload file, pgbench failed)."""

    exit_code = 2


@dataclass
class BenchSettings:
    """What the user asked for: scale factors, concurrency steps, durations, engines."""

    sfs: tuple[float, ...] = ()
    """Scale factors to load and run at, in order; empty: use what is loaded."""
    seed: int = DEFAULT_SEED
    steps: tuple[int, ...] = DEFAULT_STEPS
    duration_s: float = DEFAULT_DURATION_S
    engines: tuple[str, ...] = ("warehouse", "lake")
    bench_schema: str = "bench"
    """Schema the batch jobs write into (warehouse) and its twin in DuckDB (lake)."""
    bank_schema: str = "bank"
    workload_dir: Path = BENCH_DIR
    jobs: tuple[str, ...] = ()
    """Batch jobs to run (empty: all, in file order)."""
    pgbench: bool = True
    """Run pgbench beside the harness at every concurrency step."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "sfs": list(self.sfs),
            "seed": self.seed,
            "steps": list(self.steps),
            "duration_s": self.duration_s,
            "engines": list(self.engines),
            "bench_schema": self.bench_schema,
            "bank_schema": self.bank_schema,
            "workload_dir": str(self.workload_dir),
            "jobs": list(self.jobs),
            "pgbench": self.pgbench,
        }


@dataclass
class BenchContext:
    """One suite's run: the platform's home, settings, a folder for raw data, a logger."""

    home: Path
    settings: BenchSettings
    raw_dir: Path
    log_fn: Callable[[str], None] = field(default=lambda line: None)
    loads: list[dict[str, Any]] = field(default_factory=list)
    """Data loads this run made (scale factor, seconds), for results.json."""

    def log(self, message: str) -> None:
        """A progress line (also kept in the run folder's ``bench.log``)."""
        self.log_fn(f"{time.strftime('%H:%M:%S')} {message}")

    def conninfo(self, role: str = "admin") -> str:
        """The warehouse's read-write conninfo (password from the pgpass file)."""
        return endpoints.warehouse_conninfo(self.home, role=role)

    def lake(self) -> tuple[Catalog, str]:
        """(catalog, namespace) of the lake."""
        return endpoints.lake_catalog(self.home)  # type: ignore[no-any-return]

    def loaded_sf(self) -> float | None:
        """The scale factor loaded in the warehouse now (None when nothing is loaded)."""
        from dataplat.data.load import warehouse_dataset

        info = warehouse_dataset(self.conninfo(), self.settings.bank_schema)
        return info.sf if info is not None and info.row_counts.get("customers") else None

    def ensure_sf(self, sf: float) -> None:
        """Load the bank at ``sf`` into the warehouse and the lake unless both already hold it."""
        from dataplat.data.load import lake_dataset, load, warehouse_dataset

        catalog, namespace = self.lake()
        wh = warehouse_dataset(self.conninfo(), self.settings.bank_schema)
        lk = lake_dataset(catalog, namespace)
        seed = self.settings.seed
        if all(d is not None and d.sf == sf and d.seed == seed for d in (wh, lk)):
            return
        self.log(f"loading the bank at SF {sf:g} (seed {seed}) into warehouse and lake")
        start = time.perf_counter()
        load(
            sf,
            seed,
            conninfo=self.conninfo(),
            catalog=catalog,
            namespace=namespace,
            schema=self.settings.bank_schema,
            progress=False,
        )
        seconds = time.perf_counter() - start
        self.loads.append({"sf": sf, "seed": seed, "seconds": round(seconds, 3)})
        self.log(f"loaded SF {sf:g} in {seconds:.1f} s")
