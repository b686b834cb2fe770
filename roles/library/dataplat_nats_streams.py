#!/usr/bin/python
"""Ansible module: the platform's JetStream streams exist with their configuration."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dataplat_nats_streams
short_description: Create or update JetStream streams (idempotent)
options:
  servers: {description: nats:// URLs of the stream nodes, required: true, type: list, elements: str}
  streams: {description: "[{name, subjects, max_age_s, replicas}]", required: true, type: list, elements: dict}
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(argument_spec=dict(
        servers=dict(type="list", elements="str", required=True),
        streams=dict(type="list", elements="dict", required=True),
    ))
    from dataplat.platform.stream import StreamSpec, ensure_streams

    try:
        specs = [StreamSpec.from_dict(s) for s in module.params["streams"]]
        changes = ensure_streams(module.params["servers"], specs)
    except Exception as exc:  # noqa: BLE001 - reported to Ansible with its message
        module.fail_json(msg=f"JetStream set-up failed: {type(exc).__name__}: {exc}")
        return
    module.exit_json(changed=bool(changes), changes=changes)


if __name__ == "__main__":
    main()
