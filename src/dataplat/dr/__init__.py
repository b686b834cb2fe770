"""Disaster-recovery drills: inject a real fault into the deployed platform, measure, judge.

A drill is described by a scenario file (``dr/*.yml``: fault, workload, checks,
targets) of a registered *kind* (:mod:`dataplat.dr.scenario`). ``dataplat drill run``
loads it, runs it ``--repeat`` times against the platform under ``--home`` and writes
a run folder ``<home>/drills/<ident>/`` (``results.json``, ``report.html``, raw logs).
Exit codes: 0 every target met, 1 a target or check missed, 2 the drill could not run.

Kinds: ``failover`` (warehouse primary lost under a ledger workload), ``table-restore``
(one table to a point in time from base backup + WAL archive), ``lake-rollback`` (one
Iceberg table back to a snapshot), ``stream-crash`` (nats-server killed mid-publish).
With ``--target k8s`` (or ``target: k8s``) failover, stream-crash, serving-worker and
scaling run against a Kubernetes cluster, faults injected through its API
(:mod:`dataplat.dr.cluster`).
"""
