#!/usr/bin/python
"""Ansible module: a pid-file daemon started, stopped or restarted by dataplat."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dataplat_daemon
short_description: Run a server process as a pid-file daemon (hosts without systemd)
description:
  - Idempotent: a daemon running with the same I(checksum) is left alone (changed=false);
    a dead one is started again; one running with another checksum is restarted.
  - Thin layer over dataplat.deploy.daemon; the interpreter must have dataplat installed.
options:
  name: {description: Daemon name, unique on the host., required: true, type: str}
  state: {description: started, stopped or restarted., default: started, type: str}
  argv: {description: Command line., type: list, elements: str}
  run_dir: {description: Where the pid and state files live., required: true, type: path}
  log_file: {description: Log of the process., type: path}
  cwd: {description: Working directory., type: path}
  env: {description: Extra environment., type: dict, default: {}}
  user: {description: Run as this user when the play runs as root., type: str}
  checksum: {description: Digest of the daemon's configuration., type: str, default: ""}
  ports: {description: Ports the daemon binds, mapped to the setting that chooses them., type: dict, default: {}}
  bind_address: {description: Address the ports are bound on., type: str, default: 127.0.0.1}
  stop_timeout: {description: Seconds before SIGKILL., type: float, default: 30}
  service_manager: {description: "pidfile (default) or systemd: a unit dataplat-NAME.service driven by systemctl.",
    type: str, default: pidfile}
  unit_dir: {description: Where systemd units are written., type: path, default: /etc/systemd/system}
  limit_nofile: {description: LimitNOFILE= of the systemd unit., type: int, default: 65536}
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="started", choices=["started", "stopped", "restarted"]),
            argv=dict(type="list", elements="str"),
            run_dir=dict(type="path", required=True),
            log_file=dict(type="path"),
            cwd=dict(type="path"),
            env=dict(type="dict", default={}),
            user=dict(type="str"),
            checksum=dict(type="str", default=""),
            ports=dict(type="dict", default={}),
            bind_address=dict(type="str", default="127.0.0.1"),
            stop_timeout=dict(type="float", default=30.0),
            service_manager=dict(type="str", default="pidfile", choices=["pidfile", "systemd"]),
            unit_dir=dict(type="path", default="/etc/systemd/system"),
            limit_nofile=dict(type="int", default=65536),
        ),
        required_if=[("state", "started", ["argv", "log_file"]), ("state", "restarted", ["argv", "log_file"])],
        supports_check_mode=True,
    )
    try:
        from dataplat.deploy import daemon
        from dataplat.errors import DataplatError
    except ImportError as exc:  # pragma: no cover - only on a host without dataplat
        module.fail_json(msg=f"dataplat is not installed for {module._name}'s interpreter: {exc}")
        return
    p = module.params
    run_dir = Path(p["run_dir"])
    if p["service_manager"] == "systemd":
        _systemd(module, daemon, DataplatError)
        return
    if p["state"] == "stopped":
        state = daemon.read_state(p["name"], run_dir)
        if module.check_mode:
            module.exit_json(changed=state.running)
        changed = daemon.ensure_stopped(p["name"], run_dir, timeout=p["stop_timeout"])
        module.exit_json(changed=changed, pid=state.pid)
    spec = daemon.DaemonSpec(
        name=p["name"], argv=tuple(p["argv"]), run_dir=run_dir, log_file=Path(p["log_file"]),
        cwd=Path(p["cwd"]) if p["cwd"] else None, env={k: str(v) for k, v in p["env"].items()},
        user=p["user"] or None, checksum=p["checksum"],
        ports={int(k): str(v) for k, v in p["ports"].items()}, bind_address=p["bind_address"],
    )
    try:
        if p["state"] == "restarted":
            if not module.check_mode:
                daemon.stop(spec.name, run_dir, timeout=p["stop_timeout"])
                st = daemon.start(spec)
                module.exit_json(changed=True, pid=st.pid)
            module.exit_json(changed=True)
        current = daemon.read_state(spec)
        if module.check_mode:
            module.exit_json(changed=not current.running or current.checksum != spec.checksum)
        changed, st = daemon.ensure_started(spec)
        module.exit_json(changed=changed, pid=st.pid)
    except DataplatError as exc:
        module.fail_json(msg=str(exc))


def _systemd(module: AnsibleModule, daemon, error: type[Exception]) -> None:  # type: ignore[no-untyped-def]
    """The unit path: write /etc/systemd/system/dataplat-NAME.service, drive it with systemctl."""
    from dataplat.deploy import systemd

    p = module.params
    spec = daemon.DaemonSpec(
        name=p["name"], argv=tuple(p["argv"] or ()), run_dir=Path(p["run_dir"]),
        log_file=Path(p["log_file"] or Path(p["run_dir"]) / f"{p['name']}.log"),
        cwd=Path(p["cwd"]) if p["cwd"] else None, env={k: str(v) for k, v in p["env"].items()},
        user=p["user"] or None, checksum=p["checksum"],
        ports={int(k): str(v) for k, v in p["ports"].items()}, bind_address=p["bind_address"],
    )
    try:
        st = systemd.ensure(
            spec, p["state"], unit_dir=Path(p["unit_dir"]), systemctl=module.get_bin_path("systemctl", True),
            limit_nofile=p["limit_nofile"], stop_timeout=p["stop_timeout"], check_mode=module.check_mode,
        )
    except error as exc:
        module.fail_json(msg=str(exc))
        return
    module.exit_json(changed=st.changed, unit=st.name, unit_file=str(st.path), active=st.active)


if __name__ == "__main__":
    main()
