"""The supervisor's settings, HPA emission, metric windows and state file (no processes started)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dataplat.scaling.hpa import HPASpec, inflight_metric
from dataplat.scaling.supervisor import Supervisor, SupervisorConfig, format_state, main, pool_states


def test_print_hpa_emits_the_autoscaling_v2_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    behavior = tmp_path / "behavior.yml"
    behavior.write_text("scaleDown:\n  stabilizationWindowSeconds: 30\n")
    argv = [
        "--pool",
        "cpu",
        "--repo",
        str(tmp_path),
        "--state-dir",
        str(tmp_path),
        "--min",
        "2",
        "--max",
        "6",
    ]
    assert main([*argv, "--target-inflight", "4", "--behavior", str(behavior), "--print-hpa"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]) == (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "cpu",
    )
    assert doc["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "dataplat_serving_inflight_requests"},
                "target": {"type": "AverageValue", "averageValue": "4"},
            },
        }
    ]
    assert doc["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 30
    assert doc["spec"]["behavior"]["scaleUp"]["policies"][0] == {
        "type": "Pods",
        "value": 4,
        "periodSeconds": 15,
    }
    # what was emitted reads back as the same HPA, and a whole HPA is a valid --behavior file
    hpa_file = tmp_path / "hpa.yml"
    hpa_file.write_text(yaml.safe_dump(doc))
    assert main(["--pool", "cpu", "--repo", str(tmp_path), "--state-dir", str(tmp_path), "--behavior",
                 str(hpa_file), "--print-hpa"]) == 0  # fmt: skip
    assert HPASpec.from_dict(yaml.safe_load(capsys.readouterr().out)) == HPASpec.from_dict(doc)


def test_bad_settings_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--pool", "cpu", "--repo", str(tmp_path), "--state-dir", str(tmp_path), "--max", "3"]
    assert main(argv) == 2
    assert "--target-inflight" in capsys.readouterr().err
    bad = tmp_path / "b.yml"
    bad.write_text("scaleUp: {selectPolicy: Fastest}\n")
    assert main([*argv, "--target-inflight", "2", "--behavior", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"--behavior {bad}" in err and "behavior.scaleUp.selectPolicy: 'Fastest'" in err


def test_p95_window(tmp_path: Path) -> None:
    spec = HPASpec("p", 1, 3, (inflight_metric(2),))
    sup = Supervisor(
        SupervisorConfig(pool="p", repo=tmp_path, state_dir=tmp_path, spec=spec, sync_period_s=1)
    )
    now = time.monotonic()
    sup._latencies.extend([(now - 5, 9.0)] + [(now - 0.5, i / 1000) for i in range(1, 101)])
    assert sup._p95(now) == pytest.approx(0.095)  # the old 9 s sample is outside the window


def test_state_of_a_dead_supervisor_is_not_running(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    doc = {
        "pool": "gpu", "pid": dead.pid, "running": True, "current": 2, "desired": 3, "ready": 2,
        "minReplicas": 1, "maxReplicas": 4,
        "metrics": [{"name": "dataplat_serving_inflight_requests", "current": 5.2, "target": 4.0}],
        "events": [{"at": "2026-11-21T10:00:00+00:00", "type": "ScaleUp", "message": "New size: 2"}],
    }  # fmt: skip
    (tmp_path / "gpu.scaling.json").write_text(json.dumps(doc))
    [state] = pool_states(tmp_path)
    assert state["running"] is False and state["stale"] is True
    lines = format_state(state)
    assert lines[0].startswith("gpu: current 2, desired 3 (min 1, max 4), ready 2 [supervisor not running]")
    assert "ScaleUp: New size: 2" in lines[1]


def test_a_replica_is_drained_before_it_is_stopped(tmp_path: Path) -> None:
    """Scale-down order: out of routing, in-flight requests finish, then SIGTERM."""
    from dataplat.scaling.supervisor import Replica

    async def scenario() -> tuple[float, int | None, bool]:
        spec = HPASpec("p", 1, 3, (inflight_metric(2),))
        sup = Supervisor(SupervisorConfig(pool="p", repo=tmp_path, state_dir=tmp_path, spec=spec))
        # a stand-in replica process that records the SIGTERM it gets
        code = "import signal, time; signal.signal(signal.SIGTERM, lambda *a: exit(7)); time.sleep(30)"
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, start_new_session=True)
        replica = Replica("p-r1", 1, proc, time.monotonic(), state="ready")
        sup.replicas.append(replica)
        replica.begin()  # a request in flight
        loop = asyncio.get_running_loop()
        loop.call_later(0.4, replica.end)  # it finishes after 0.4 s
        replica.state = "terminating"
        assert sup._pick(set()) is None  # no longer routed
        t0 = time.monotonic()
        await sup._stop_replica(replica, "scale-down")
        return time.monotonic() - t0, proc.returncode, replica in sup.replicas

    waited, code, kept = asyncio.run(scenario())
    assert waited >= 0.39  # the in-flight request finished first
    assert code == 7  # then SIGTERM (not SIGKILL)
    assert not kept


def test_hpa_patch_merges_behaviour_and_names_bad_fields() -> None:
    from dataplat.errors import ConfigError
    from dataplat.scaling.patch import Controller, apply_patch

    base = Controller(HPASpec("p", 1, 3, (inflight_metric(2),)), 15.0, 0.1)
    patched = apply_patch(
        base,
        {
            "maxReplicas": 5,
            "syncPeriodSeconds": 1,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 3}},
        },
    )
    behavior = patched.spec.behavior.to_dict()
    assert patched.spec.maxReplicas == 5 and patched.sync_period_s == 1.0 and patched.tolerance == 0.1
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 3
    # what the patch does not name keeps the deployed value (Kubernetes' defaults here)
    assert behavior["scaleDown"]["policies"] == [{"type": "Percent", "value": 100, "periodSeconds": 15}]
    assert behavior["scaleUp"] == base.spec.behavior.to_dict()["scaleUp"]
    with pytest.raises(ConfigError) as err:
        apply_patch(base, {"minReplicas": 4, "syncPeriodSeconds": 0, "behavior": {"scaleUp": "fast"}, "x": 1})
    message = str(err.value)
    for field in ("unknown field(s) x", "syncPeriodSeconds", "behavior.scaleUp", "maxReplicas: 3 is below"):
        assert field in message, message
