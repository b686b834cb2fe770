"""systemd units of ``dataplat_service_manager: systemd``.

systemd is not PID 1 on the machines that run these tests (``/proc/1/comm`` is not
``systemd``), so no unit can really run here: the unit text is checked line by line and
with ``systemd-analyze verify`` where that binary exists, and the module's systemd path
is run for real through ansible-runner with a fake ``systemctl`` on PATH that records its
calls and keeps the active/enabled state in files (a stand-in for systemd, not for our code).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataplat.deploy.daemon import DaemonSpec
from dataplat.deploy.runner import run_playbook
from dataplat.deploy.systemd import quote_arg, render_unit

FAKE_SYSTEMCTL = """#!/bin/sh
# fake systemctl: records every call, keeps state in $FAKE_SYSTEMD_STATE
state="$FAKE_SYSTEMD_STATE"
echo "$*" >> "$state/calls"
case "$1" in
  is-active) [ -e "$state/active-$3" ] ;;
  is-enabled) [ -e "$state/enabled-$3" ] ;;
  enable) touch "$state/enabled-$2" ;;
  start|restart) touch "$state/active-$2" ;;
  stop) rm -f "$state/active-$2" ;;
  daemon-reload) : ;;
  *) exit 1 ;;
esac
"""


def spec(tmp_path: Path, **kw: object) -> DaemonSpec:
    base: dict = dict(
        name="stream-0",
        argv=(sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"),
        run_dir=tmp_path / "run",
        log_file=tmp_path / "log" / "stream-0.log",
        cwd=tmp_path,
        env={"NATS_OPTS": "a b", "PCT": "50%"},
        user="dataplat",
        checksum="abc123",
    )
    base.update(kw)
    return DaemonSpec(**base)


def test_unit_content(tmp_path: Path) -> None:
    text = render_unit(spec(tmp_path), limit_nofile=131072)
    lines = text.splitlines()
    assert lines[0] == "# Managed by dataplat: stream-0; configuration checksum abc123"
    assert "User=dataplat" in lines and "Restart=on-failure" in lines and "LimitNOFILE=131072" in lines
    assert f"ExecStart={sys.executable} -m http.server --bind 127.0.0.1 0" in lines
    assert 'Environment="NATS_OPTS=a b"' in lines and "Environment=PCT=50%%" in lines
    assert "Environment=LANG=C.UTF-8" in lines
    assert f"StandardOutput=append:{tmp_path}/log/stream-0.log" in lines
    assert f"WorkingDirectory={tmp_path}" in lines
    assert lines[lines.index("[Install]") + 1] == "WantedBy=multi-user.target"
    assert quote_arg('say "hi" $HOME') == '"say \\"hi\\" $$HOME"'


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / "dataplat-stream-0.service"
    unit.write_text(render_unit(spec(tmp_path, user=None)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify loads the unit without a running systemd; it must find nothing to complain about in it
    complaints = [line for line in proc.stderr.splitlines() if unit.name in line]
    assert proc.returncode == 0 and not complaints, proc.stderr


@pytest.fixture
def fake_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir, state = tmp_path / "bin", tmp_path / "systemd-state"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", str(state))
    return state


def _play(tmp_path: Path, argv: list[str], manager: str = "systemd") -> Path:
    play = tmp_path / "daemon.yml"
    play.write_text(
        "- hosts: all\n"
        "  gather_facts: false\n"
        "  module_defaults:\n"
        "    dataplat_daemon:\n"
        "      service_manager: \"{{ dataplat_service_manager | default('pidfile') }}\"\n"
        "  tasks:\n"
        "    - dataplat_daemon:\n"
        "        name: demo\n"
        f"        argv: {argv!r}\n"
        f"        run_dir: {tmp_path}/run\n"
        f"        log_file: {tmp_path}/log/demo.log\n"
        f"        unit_dir: {tmp_path}/units\n"
        "        env: {DEMO: '1'}\n"
        "        checksum: c1\n"
    )
    inv = tmp_path / "inv.yml"
    inv.write_text(
        "all:\n  vars:\n    ansible_connection: local\n"
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        f"    dataplat_service_manager: {manager}\n"
        "  hosts:\n    localhost: {}\n"
    )
    return inv


def test_module_systemd_path_is_idempotent(tmp_path: Path, fake_systemd: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    inv = _play(tmp_path, argv)
    first = run_playbook(tmp_path / "daemon.yml", inv, tmp_path / "home")
    assert first.ok and first.changed == 1, first.failures
    unit = tmp_path / "units" / "dataplat-demo.service"
    assert "Restart=on-failure" in unit.read_text() and "Environment=DEMO=1" in unit.read_text()
    calls = (fake_systemd / "calls").read_text().splitlines()
    assert calls == [
        "is-active --quiet dataplat-demo.service",
        "daemon-reload",
        "is-enabled --quiet dataplat-demo.service",
        "enable dataplat-demo.service",
        "start dataplat-demo.service",
    ]
    assert not (tmp_path / "run" / "demo.pid").exists()  # no pid-file daemon on this path

    again = run_playbook(tmp_path / "daemon.yml", inv, tmp_path / "home")
    assert again.ok and again.changed == 0
    assert (fake_systemd / "calls").read_text().splitlines()[len(calls) :] == [
        "is-active --quiet dataplat-demo.service",
        "is-enabled --quiet dataplat-demo.service",
    ]

    _play(tmp_path, [*argv, "changed"])
    changed = run_playbook(tmp_path / "daemon.yml", inv, tmp_path / "home")
    assert changed.ok and changed.changed == 1
    tail = (fake_systemd / "calls").read_text().splitlines()[-2:]
    assert tail == ["is-enabled --quiet dataplat-demo.service", "restart dataplat-demo.service"]
    assert "changed" in unit.read_text()


def test_module_default_stays_pidfile(tmp_path: Path, fake_systemd: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    inv = _play(tmp_path, argv, manager="pidfile")
    result = run_playbook(tmp_path / "daemon.yml", inv, tmp_path / "home")
    try:
        assert result.ok and result.changed == 1
        assert (tmp_path / "run" / "demo.pid").exists()
        assert not (tmp_path / "units").exists() and not (fake_systemd / "calls").exists()
    finally:
        from dataplat.deploy.daemon import stop

        stop("demo", tmp_path / "run", timeout=5)
