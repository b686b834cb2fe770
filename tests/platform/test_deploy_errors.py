"""`dataplat up` refuses bad input before changing anything, and names what to fix."""

from __future__ import annotations

import shutil
import socket

import pytest
import yaml
from helpers import PORT_BLOCK, free_port_block, ports_of_block, shared_tmpdir, write_test_inventory

from dataplat.cli import main
from dataplat.deploy.api import up


def test_port_in_use_is_named_with_its_setting(capsys):
    work = shared_tmpdir("dataplat-port-")
    home = work / "home"
    base = free_port_block(PORT_BLOCK)
    inventory = write_test_inventory(work, home, base)
    witness_port = ports_of_block(base)["warehouse_witness_raft_port"]
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", witness_port))
    squatter.listen()
    try:
        result = up(inventory)
        assert not result.ok
        messages = " ".join(f["msg"] for f in result.run.failures)
        assert f"port {witness_port} on 127.0.0.1 is already in use" in messages
        assert "warehouse_witness_raft_port" in messages
        # nothing of ours was left running
        assert not list((home / "run").glob("*.pid"))
    finally:
        squatter.close()
        shutil.rmtree(work, ignore_errors=True)


def test_invalid_inventory_stops_up_before_anything_changes(capsys):
    work = shared_tmpdir("dataplat-badinv-")
    home = work / "home"
    inventory = write_test_inventory(work, home, free_port_block(PORT_BLOCK))
    doc = yaml.safe_load(inventory.read_text())
    doc["all"]["children"]["warehous"] = {"hosts": {"localhost": {}}}
    doc["all"]["vars"]["stream_client_port"] = "not-a-port"
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        rc = main(["up", "-i", str(inventory)])
        err = capsys.readouterr().err
        assert rc != 0
        assert "warehous" in err and "stream_client_port" in err
        assert str(inventory) in err
        assert not home.exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("argv", [["status"], ["down"]])
def test_commands_on_a_missing_platform_say_so(tmp_path, capsys, argv):
    rc = main([*argv, "--home", str(tmp_path / "nothing-here")])
    assert rc == 1
    assert "run `dataplat up` first" in capsys.readouterr().err
