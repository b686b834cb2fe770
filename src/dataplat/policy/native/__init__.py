"""The C masks (PostgreSQL extension ``dataplat_mask``): build, install, detect.

The SQL mask functions cost about a quarter of a microsecond per masked value (ten or so
built-in calls each) and two SHA-256 passes through SQL per token; the C versions do one
pass and one allocation. They compute exactly what the SQL functions and the Python
reference in :mod:`dataplat.policy.masks` compute, and the views do not change: the
wrappers in schema ``dataplat_policy`` call the C functions when the extension is
installed in the warehouse, the SQL bodies otherwise.

``install`` compiles ``dataplat_mask.c`` against the server's headers (``pg_config
--includedir-server``) with the C compiler (``$CC``, ``cc`` or ``gcc``) and copies the
library, control file and script into the server's directories, each only when its
bytes differ (idempotent). The extension is ``trusted``, so the warehouse admin that
applies the policies creates it without being a superuser. A server without a compiler
or headers keeps the SQL masks; ``install`` says why.

``python -m dataplat.policy.native install --pg-config PATH [--json]``: exit 0 installed
or unchanged, 3 when it cannot be built here (the reason is printed), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["EXTENSION", "NativeUnavailable", "InstallResult", "install", "main"]

EXTENSION = "dataplat_mask"
VERSION = "1.0"
HERE = Path(__file__).resolve().parent
SOURCE = HERE / f"{EXTENSION}.c"
CONTROL = HERE / f"{EXTENSION}.control"
SCRIPT = HERE / f"{EXTENSION}--{VERSION}.sql"
CFLAGS = ("-O2", "-fPIC", "-shared", "-Wall", "-Wmissing-prototypes", "-fno-strict-aliasing", "-fwrapv")


class NativeUnavailable(Exception):
    """The C masks cannot be built or installed for this server (the reason is the message)."""


@dataclass
class InstallResult:
    """What ``install`` did: the files written (empty: all were current) and where."""

    library: str
    control: str
    script: str
    written: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether any file was written."""
        return bool(self.written)


def _pg_config(pg_config: Path, *flags: str) -> list[str]:
    try:
        out = subprocess.run(
            [str(pg_config), *flags], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except FileNotFoundError as exc:
        raise NativeUnavailable(f"{pg_config}: not found") from exc
    except subprocess.CalledProcessError as exc:
        raise NativeUnavailable(f"{pg_config} {' '.join(flags)} failed: {exc.stderr.strip()}") from exc
    return [line.strip() for line in out.splitlines() if line.strip()]


def _compiler() -> str:
    cc = os.environ.get("CC", "").strip()
    if cc:
        if not shutil.which(cc.split()[0]):
            raise NativeUnavailable(f"CC={cc}: no such compiler")
        return cc
    for cc in ("cc", "gcc"):
        if shutil.which(cc):
            return cc
    raise NativeUnavailable("no C compiler (set CC, or install gcc) to build the C masks")


def _put(path: Path, data: bytes, mode: int, written: list[str]) -> None:
    """Write ``data`` to ``path`` atomically unless it already holds exactly that."""
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)
    written.append(str(path))


def build(pg_config: Path, out: Path) -> None:
    """Compile the extension's library for the server of ``pg_config`` into ``out``."""
    (include,) = _pg_config(pg_config, "--includedir-server")
    if not (Path(include) / "postgres.h").is_file():
        raise NativeUnavailable(f"no server headers at {include} (install the PostgreSQL server dev package)")
    cmd = [*_compiler().split(), *CFLAGS, f"-I{include}", "-o", str(out), str(SOURCE)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise NativeUnavailable(f"compiling {SOURCE.name} failed: {proc.stderr.strip()[-2000:]}")


def install(pg_config: Path | str) -> InstallResult:
    """Build and install ``dataplat_mask`` into the server of ``pg_config`` (idempotent)."""
    pg_config = Path(pg_config)
    libdir, sharedir = _pg_config(pg_config, "--pkglibdir", "--sharedir")
    ext_dir = Path(sharedir) / "extension"
    if not ext_dir.is_dir():
        raise NativeUnavailable(f"{ext_dir}: no extension folder in this server's share directory")
    for d in (Path(libdir), ext_dir):
        if not os.access(d, os.W_OK):
            raise NativeUnavailable(f"{d}: not writable by this user")
    result = InstallResult(
        library=str(Path(libdir) / f"{EXTENSION}.so"),
        control=str(ext_dir / CONTROL.name),
        script=str(ext_dir / SCRIPT.name),
    )
    with tempfile.TemporaryDirectory(prefix="dataplat-mask-") as tmp:
        lib = Path(tmp) / f"{EXTENSION}.so"
        build(pg_config, lib)
        _put(Path(result.library), lib.read_bytes(), 0o755, result.written)
    _put(Path(result.control), CONTROL.read_bytes(), 0o644, result.written)
    _put(Path(result.script), SCRIPT.read_bytes(), 0o644, result.written)
    return result


def source_digest() -> str:
    """Digest of what ``install`` would build (source, control file, script)."""
    h = hashlib.sha256()
    for p in (SOURCE, CONTROL, SCRIPT):
        h.update(p.read_bytes())
    return h.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dataplat.policy.native install --pg-config PATH [--json]``."""
    p = argparse.ArgumentParser(prog="python -m dataplat.policy.native", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("install", help="build and install the dataplat_mask extension")
    i.add_argument("--pg-config", required=True, help="pg_config of the server to install into")
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    try:
        result = install(args.pg_config)
    except NativeUnavailable as exc:
        doc = {"installed": False, "changed": False, "reason": str(exc)}
        print(json.dumps(doc) if args.json else f"dataplat_mask not installed, SQL masks stay: {exc}")
        return 3
    doc = {"installed": True, "changed": result.changed, "digest": source_digest(), **asdict(result)}
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"dataplat_mask {'installed' if result.changed else 'up to date'}: {result.library}")
    return 0
