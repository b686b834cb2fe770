#!/usr/bin/python
"""Ansible module: the application database, its roles and the bank's schema."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dataplat_pg_setup
short_description: Create the application database, roles and schema (idempotent)
options:
  conninfo: {description: libpq conninfo reaching the primary as the superuser, required: true, type: str}
  superuser_password: {required: true, type: str, no_log: true}
  database: {required: true, type: str}
  admin_user: {required: true, type: str}
  admin_password: {required: true, type: str, no_log: true}
  app_user: {required: true, type: str}
  app_password: {required: true, type: str, no_log: true}
  schema: {type: str, default: bank}
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(argument_spec=dict(
        conninfo=dict(type="str", required=True),
        superuser_password=dict(type="str", required=True, no_log=True),
        database=dict(type="str", required=True),
        admin_user=dict(type="str", required=True),
        admin_password=dict(type="str", required=True, no_log=True),
        app_user=dict(type="str", required=True),
        app_password=dict(type="str", required=True, no_log=True),
        schema=dict(type="str", default="bank"),
    ))
    from dataplat.platform.warehouse import setup_database

    p = module.params
    try:
        result = setup_database(" ".join(p["conninfo"].split()), p["superuser_password"], p["database"],
                                p["admin_user"], p["admin_password"], p["app_user"], p["app_password"],
                                p["schema"])
    except Exception as exc:  # noqa: BLE001 - reported to Ansible with its message
        module.fail_json(msg=f"warehouse set-up failed: {type(exc).__name__}: {exc}")
        return
    module.exit_json(changed=result.changed, created=result.created)


if __name__ == "__main__":
    main()
