"""No root needed: the whole life cycle as an ordinary user.

Runs only when the suite runs as root (it creates the ordinary user); when the suite
itself runs as an ordinary user, every other platform test already covers this.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PORT_BLOCK, free_port_block, shared_tmpdir, write_test_inventory

pytestmark = [
    pytest.mark.platform,
    pytest.mark.skipif(os.geteuid() != 0, reason="the suite already runs as an ordinary user"),
]

USER = "dataplat-tester"


def _as_user(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    dataplat = str(Path(sys.executable).parent / "dataplat")
    return subprocess.run(
        ["runuser", "-u", USER, "--", dataplat, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/tmp",
        env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
    )


def test_up_status_down_as_an_ordinary_user():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True
        )
    work = shared_tmpdir("dataplat-user-")
    shutil.chown(work, USER)
    home = work / "home"
    inventory = write_test_inventory(work, home, free_port_block(PORT_BLOCK))
    try:
        up = _as_user("up", "-i", str(inventory), "--json")
        assert up.returncode == 0, up.stderr[-3000:]
        status = _as_user("status", "-i", str(inventory), "--json", timeout=60)
        doc = json.loads(status.stdout)
        assert status.returncode == 0 and doc["healthy"], doc
        owner = pwd.getpwuid((home / "warehouse" / "pg0" / "pgdata").stat().st_uid).pw_name
        assert owner == USER
        assert {m["role"] for m in doc["warehouse"]["members"]} == {"leader", "sync_standby", "replica"}
    finally:
        down = _as_user("down", "-i", str(inventory), "--purge", "--json")
        shutil.rmtree(work, ignore_errors=True)
    assert down.returncode == 0, down.stderr[-3000:]
    assert not home.exists()
