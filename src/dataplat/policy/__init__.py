"""Dynamic data masking and access policies as code.

Policies are YAML files (``policies/``) that a security team writes and reviews:
column classification, masks per role (by kind or by column), row filters and table
grants. They are validated with file/line/field problems (:mod:`.loader`), compiled
to PostgreSQL (:mod:`.compiler`: group and login roles, a schema of
``security_barrier`` views that apply the masks at read time, column privileges,
row filters), applied in one transaction with a version history
(:mod:`.apply`), checked by querying as every role (:mod:`.verify`) and reported
(:mod:`.audit`). Stored data is never copied or changed.
"""
