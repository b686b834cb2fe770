"""The built-in drill kinds: what each understands in a scenario file."""

from __future__ import annotations

from dataplat.dr.scenario import DrillKind, Setting, register_kind

FAILOVER = register_kind(
    DrillKind(
        name="failover",
        run="dataplat.dr.failover:run_repetition",
        help="warehouse primary lost under a ledger workload; Patroni fails over",
        faults=("postmaster-kill", "host-loss", "switchover"),
        fault_settings={
            "restart_delay_s": Setting(
                float,
                0.0,
                help="host-loss: seconds after the new leader is seen before the lost member's "
                "daemon is started again (the host coming back)",
            ),
        },
        workload_settings={
            "clients": Setting(int, 4, help="concurrent client threads"),
            "accounts": Setting(int, 100, help="accounts in dr.ledger_accounts"),
            "initial_balance": Setting(int, 1000),
            "before_s": Setting(float, 3.0, help="load before the fault"),
            "after_s": Setting(float, 3.0, help="load after the cluster recovered"),
            "schema": Setting(str, "dr"),
        },
        checks=("rpo", "invariant", "in_doubt", "fencing", "rejoin", "status"),
        metrics=("rto_s", "rpo_commits", "rejoin_s", "promotion_s"),  # promotion_s: target k8s
        timeouts={"failover_s": 60.0, "rejoin_s": 180.0, "healthy_s": 120.0},
        target_variables=("ttl", "loop_wait", "retry_timeout"),
    )
)

TABLE_RESTORE = register_kind(
    DrillKind(
        name="table-restore",
        run="dataplat.dr.restore:run_repetition",
        help="one table back to a point in time from base backup + WAL archive, through a scratch instance",
        faults=("sql-mistake",),
        fault_settings={
            "table": Setting(str, "bank.campaigns", help="schema.table to damage and restore"),
            "sql": Setting(
                str,
                "UPDATE {table} SET status = 'deleted-by-mistake'",
                help="the mistake; {table} is replaced by the quoted table name",
            ),
        },
        workload_settings={
            "others": Setting(
                str,
                "schema",
                choices=("schema", "none"),
                help="which other tables must stay unchanged: every other table of the same schema, or none",
            ),
            "min_rows": Setting(int, 1, help="the drill cannot run when the table has fewer rows"),
        },
        checks=("restored_equal", "others_unchanged"),
        metrics=("restore_s",),
        timeouts={"archive_s": 60.0, "recovery_s": 300.0},
    )
)

LAKE_ROLLBACK = register_kind(
    DrillKind(
        name="lake-rollback",
        run="dataplat.dr.lake:run_repetition",
        help="one Iceberg table rolled back to the snapshot before a bad batch; snapshot expiry",
        faults=("bad-batch",),
        fault_settings={
            "table": Setting(str, "dr_ledger_batches", help="lake table the drill creates and damages"),
            "good_batches": Setting(int, 3),
            "rows_per_batch": Setting(int, 1000),
        },
        workload_settings={
            "keep_last": Setting(int, 3, help="retention: snapshots of the current branch always kept"),
            "max_age_s": Setting(float, 0.0, help="retention: snapshots younger than this are kept"),
        },
        checks=("rolled_back", "others_untouched", "retention"),
        metrics=("rollback_s",),
        timeouts={},
    )
)

STREAM_CRASH = register_kind(
    DrillKind(
        name="stream-crash",
        run="dataplat.dr.streamcrash:run_repetition",
        help="nats-server killed with kill -9 mid-publish; every acknowledged message still there",
        faults=("broker-kill",),
        fault_settings={"node": Setting(str, "", help="stream node to kill (default: the first)")},
        workload_settings={
            "stream": Setting(str, "DR_CRASH"),
            "subject": Setting(str, "dr.crash.events"),
            "before_s": Setting(float, 2.0),
            "after_s": Setting(float, 2.0),
            "payload_bytes": Setting(int, 256),
        },
        checks=("acked_present", "consumer_no_gaps"),
        metrics=("outage_s", "lost_acked", "replacement_s"),  # replacement_s: target k8s
        timeouts={"restart_s": 60.0, "drain_s": 60.0},
    )
)

SERVING_WORKER = register_kind(
    DrillKind(
        name="serving-worker",
        run="dataplat.dr.servingworker:run_repetition",
        help="a serving worker killed under decision load; the pool replaces it; errors against a budget",
        faults=("worker-kill",),
        fault_settings={
            "replica": Setting(str, "", help="serving replica whose worker is killed (default: first)")
        },
        workload_settings={
            "via": Setting(
                str,
                "decision",
                choices=("decision", "pool"),
                help="decision: POST /v1/decisions on the decision service; pool: inference direct",
            ),
            "clients": Setting(int, 4, help="closed-loop clients"),
            "before_s": Setting(float, 2.0),
            "after_s": Setting(float, 2.0),
            "request_timeout_s": Setting(float, 2.0),
            "error_budget": Setting(float, 0.01, help="failed requests / requests allowed"),
        },
        checks=("worker_replaced", "error_budget"),
        metrics=("error_ratio", "failed", "degraded", "replacement_s", "requests"),
        timeouts={"replace_s": 30.0},
    )
)

_NONE_OR_FLOAT = (float, type(None))

SCALING = register_kind(
    DrillKind(
        name="scaling",
        run="dataplat.dr.scaling:run_repetition",
        help="a step load (low -> high -> low users) with Locust; the HPA scales out and in; "
        "reaction times, p99 recovery and errors per transition",
        faults=("step-load",),
        fault_settings={
            "kill": Setting(
                str,
                "none",
                choices=("none", "pool-replica", "decision-worker"),
                help="kill -9 one replica during the high step (the supervisor must replace it)",
            ),
            "kill_at_s": Setting(float, 5.0, help="seconds after the step up"),
        },
        workload_settings={
            "via": Setting(
                str,
                "decision",
                choices=("decision", "pool"),
                help="decision: POST /v1/decisions (the service scales, it scores through the pool); "
                "pool: inference straight to the serving pool",
            ),
            "low_users": Setting(int, 2, help="users before and after the step (closed loop, no wait)"),
            "high_users": Setting(int, 32, help="users during the step"),
            "spawn_rate": Setting(float, 50.0, help="users started or stopped per second"),
            "low_s": Setting(float, 20.0, help="seconds of low load before the step"),
            "high_s": Setting(float, 60.0, help="seconds of high load"),
            "after_s": Setting(float, 360.0, help="seconds of low load after the step down"),
            "p99_slo_ms": Setting(float, 100.0, help="p99 SLO: the time until p99 is back under it"),
            "settle_s": Setting(int, 3, help="seconds p99 must stay under the SLO to count as back"),
            "locust_processes": Setting(int, 1, help="Locust processes"),
            "request_timeout_s": Setting(float, 10.0),
            "sync_period_s": Setting(
                _NONE_OR_FLOAT, None, help="HPA patch for the drill: syncPeriodSeconds (empty: as deployed)"
            ),
            "scale_up_window_s": Setting(
                _NONE_OR_FLOAT, None, help="HPA patch: behavior.scaleUp.stabilizationWindowSeconds"
            ),
            "scale_down_window_s": Setting(
                _NONE_OR_FLOAT, None, help="HPA patch: behavior.scaleDown.stabilizationWindowSeconds"
            ),
        },
        checks=("scaled_out", "scaled_in", "no_errors", "replica_replaced"),
        metrics=(
            "scale_out_reaction_s",
            "p99_recovery_s",
            "scale_in_s",
            "errors",
            "errors_scale_out",
            "errors_scale_in",
            "errors_kill",
            "replacement_s",
            "max_replicas",
            "requests",
            "scaled_ready_s",  # target k8s: scale subresource patched -> replicas ready
            "scaled_back_s",
        ),
        timeouts={"settle_s": 60.0, "scale_in_s": 120.0, "replace_s": 30.0, "patch_s": 10.0},
    )
)
