"""Test kit of the data tests: a throw-away PostgreSQL from pgserver's binaries (also
used by bench/data_load.py --start-pg) and the parameters of the shared load.

PostgreSQL refuses to run as root: under euid 0 the server runs as the unprivileged
``dataplat`` user (created if missing) through ``runuser``.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "dataplat"
LOAD_SF = 0.002
"""Scale factor of the load shared by the integration tests (2,000 customers)."""
LOAD_SEED = 424242


def pg_bin_dir() -> Path | None:
    """``pgserver/pginstall/bin`` of the installed pgserver package, if there is one."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if (path / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


@dataclass
class TempPostgres:
    """initdb + pg_ctl start on a free 127.0.0.1 port in a temporary directory."""

    bin_dir: Path
    root: Path
    port: int
    as_user: str | None

    @property
    def conninfo(self) -> str:
        """libpq conninfo of the superuser ``postgres`` (trust authentication)."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)

    @classmethod
    def start(cls, bin_dir: Path | None = None, settings: dict[str, str] | None = None) -> TempPostgres:
        """Create and start a cluster; raise if anything fails (the log is in the message)."""
        bin_dir = bin_dir or pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError("pgserver binaries not found")
        as_user = None
        root = Path(tempfile.mkdtemp(prefix="dataplat-pg-", dir="/tmp"))
        os.chmod(root, 0o755)
        if os.geteuid() == 0:
            pw = _ensure_user()
            os.chown(root, pw.pw_uid, pw.pw_gid)
            as_user = SERVICE_USER
        pg = cls(bin_dir, root, _free_port(), as_user)
        pg._run("initdb", "-D", str(root / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                "--locale=C", "--no-sync")  # fmt: skip
        opts = {
            "listen_addresses": "127.0.0.1",
            "port": str(pg.port),
            "unix_socket_directories": str(root),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "wal_level": "minimal",
            "max_wal_senders": "0",
            "max_wal_size": "4GB",
            "shared_buffers": "256MB",
            **(settings or {}),
        }
        optstr = " ".join(f"-c {k}={v}" for k, v in opts.items())
        try:
            pg._run(
                "pg_ctl",
                "-D",
                str(root / "data"),
                "-l",
                str(root / "log"),
                "-o",
                optstr,
                "-w",
                "-t",
                "60",
                "start",
            )
        except subprocess.CalledProcessError as exc:
            log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {exc.stderr}\n{log}") from exc
        pg._wait_ready()
        return pg

    def _wait_ready(self, deadline_s: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + deadline_s
        delay = 0.05
        while True:
            try:
                psycopg.connect(self.conninfo, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def stop(self) -> None:
        """Stop the server (fast) and remove its directory."""
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop", timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
