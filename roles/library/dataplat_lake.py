#!/usr/bin/python
"""Ansible module: the Iceberg catalog, namespace and the bank's tables exist."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dataplat_lake
short_description: Create the Iceberg namespace and tables (idempotent)
options:
  catalog_name: {required: true, type: str}
  catalog_uri: {required: true, type: str}
  warehouse: {required: true, type: str}
  namespace: {required: true, type: str}
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(argument_spec=dict(
        catalog_name=dict(type="str", required=True),
        catalog_uri=dict(type="str", required=True),
        warehouse=dict(type="str", required=True),
        namespace=dict(type="str", required=True),
    ))
    from dataplat.platform.lake import ensure_tables, open_catalog

    p = module.params
    try:
        result = ensure_tables(open_catalog(p["catalog_name"], p["catalog_uri"], p["warehouse"]), p["namespace"])
    except Exception as exc:  # noqa: BLE001 - reported to Ansible with its message
        module.fail_json(msg=f"lake set-up failed: {type(exc).__name__}: {exc}")
        return
    module.exit_json(changed=result.changed, created=result.created)


if __name__ == "__main__":
    main()
