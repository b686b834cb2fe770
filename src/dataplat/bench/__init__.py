"""Benchmarks: the bank's workloads against the deployed platform, judged against SLO files.

``dataplat bench run --suite SUITE`` runs one registered suite (:mod:`dataplat.bench.suites`)
or all available ones and leaves a run folder ``<home>/bench/<timestamp>-<suite>/`` with
``results.json`` (schema ``dataplat.bench/v1``, see :mod:`dataplat.bench.results`), the raw
data (pgbench logs, HdrHistograms, per-job timings) and ``report.html``.

Suites: ``batch`` (the nightly SQL jobs of ``bench/batch/`` on the warehouse and on the
lake, with invariant checks), ``concurrent`` (the queries of ``bench/concurrent/`` at
concurrency steps, with pgbench beside as the yardstick) and ``decisions`` (a slot for
the real-time decision suite, not available yet). Targets come from SLO files
(:mod:`dataplat.bench.slo`); exit codes: 0 every target met, 1 something missed, 2 could
not run.
"""
