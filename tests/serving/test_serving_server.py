"""The OIP server as a real process: health, metadata, inference, errors, metrics, shedding."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from serving_testkit import ServerProcess, start_server

from dataplat.serving.client import InferenceRejected, OipClient, encode_infer_request
from dataplat.serving.model import CLASSES, FEATURE_NAMES, ModelVersion, OnnxModel, TrainedModel


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_and_metadata(server: ServerProcess) -> None:
    async def run() -> None:
        async with OipClient(server.url, timeout_s=2) as c:
            assert await c.live() and await c.ready()
            assert await c.model_ready("propensity") and await c.model_ready("propensity", "1")
            assert not await c.model_ready("churn")
            assert not await c.model_ready("propensity", "7")
            meta = await c.model_metadata("propensity")
            assert meta["name"] == "propensity" and meta["versions"] == ["1"]
            assert meta["inputs"] == [
                {"name": "features", "datatype": "FP32", "shape": [-1, len(FEATURE_NAMES)]}
            ]
            assert meta["parameters"]["feature_names"] == list(FEATURE_NAMES)
            assert meta["parameters"]["classes"] == list(CLASSES)

    asyncio.run(run())


def test_infer_matches_local_model(
    server: ServerProcess, trained: TrainedModel, published: ModelVersion
) -> None:
    X = trained.X_test[:50]
    expected = OnnxModel(published).run(X)

    async def run() -> None:
        async with OipClient(server.url, timeout_s=5) as c:
            res = await c.infer("propensity", X, request_id="req-1")
            assert res.model_name == "propensity" and res.model_version == "1" and res.request_id == "req-1"
            np.testing.assert_allclose(res.outputs["probabilities"], expected["probabilities"], atol=1e-6)
            np.testing.assert_array_equal(res.outputs["label"], expected["label"])
            one = await c.infer("propensity", X[0], version="1", outputs=["probabilities"])
            assert list(one.outputs) == ["probabilities"] and one.outputs["probabilities"].shape == (
                1,
                len(CLASSES),
            )

    asyncio.run(run())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"inputs": []}', "inputs"),
        (b'{"inputs": [{"name": "x", "shape": [1, 32], "datatype": "FP32", "data": []}]}', "inputs[0].name"),
        (b'{"inputs": [{"name": "features", "shape": [1, 32], "datatype": "BYTES", "data": []}]}',
         "inputs[0].datatype"),
        (b'{"inputs": [{"name": "features", "shape": [1, 31], "datatype": "FP32", "data": []}]}',
         "inputs[0].shape"),
        (b'{"inputs": [{"name": "features", "shape": [2, 32], "datatype": "FP32", "data": [1.0]}]}',
         "inputs[0].data"),
        (b'{"inputs": [{"name": "features", "shape": [1, 32], "datatype": "FP32", "data": ["a"]}]}',
         "inputs[0].data"),
    ],
)  # fmt: skip
def test_malformed_request_names_the_field(server: ServerProcess, body: bytes, field: str) -> None:
    status, doc = _post(f"{server.url}/v2/models/propensity/infer", body)
    assert status == 400, doc
    assert doc["field"] == field and doc["error"]


def test_errors_through_the_client_and_unknown_routes(server: ServerProcess) -> None:
    async def run() -> None:
        async with OipClient(server.url, timeout_s=2) as c:
            with pytest.raises(InferenceRejected) as info:
                await c.infer("propensity", np.zeros((1, 5)))
            assert info.value.status == 400 and info.value.field == "inputs[0].shape"

    asyncio.run(run())
    status, doc = _post(f"{server.url}/v2/models/churn/infer", encode_infer_request(np.zeros((1, 32))))
    assert status == 404 and "churn" in doc["error"]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.url}/v2/models/propensity/infer", timeout=5)
    assert info.value.code == 405


def test_metrics(server: ServerProcess) -> None:
    _post(f"{server.url}/v2/models/propensity/infer", encode_infer_request(np.zeros((1, 32))))
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'dataplat_serving_requests_total{model="propensity",pool="serving-main",status="200"}' in text
    assert "dataplat_serving_request_duration_seconds_bucket" in text
    assert "dataplat_serving_inflight_requests" in text


def test_load_shedding_past_the_inflight_bound(published: ModelVersion, work: Path) -> None:
    """One worker, at most 2 in flight: a burst of large batches gets 503s, not a queue."""
    srv = start_server(published.path.parents[1], work, "serving-shed", workers=1, max_inflight=2)
    body = encode_infer_request(np.random.default_rng(1).random((3000, len(FEATURE_NAMES))))

    async def burst() -> list[int]:
        async with aiohttp.ClientSession() as s:

            async def one() -> int:
                async with s.post(f"{srv.url}/v2/models/propensity/infer", data=body,
                                  timeout=aiohttp.ClientTimeout(total=30)) as r:  # fmt: skip
                    if r.status == 503:
                        assert r.headers["Retry-After"] == "1"
                        assert "overloaded" in (await r.json())["error"]
                    return r.status

            return await asyncio.gather(*(one() for _ in range(12)))

    try:
        statuses = asyncio.run(burst())
        assert set(statuses) <= {200, 503}
        assert statuses.count(503) >= 1 and statuses.count(200) >= 2, statuses
        with urllib.request.urlopen(f"{srv.url}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert f'dataplat_serving_shed_total{{pool="serving-shed"}} {float(statuses.count(503))}' in text
    finally:
        srv.stop()


def test_a_killed_worker_is_replaced(server: ServerProcess) -> None:
    workers = server.worker_pids()
    assert len(workers) == 2, server.log()
    os.kill(workers[0], signal.SIGKILL)
    body = encode_infer_request(np.zeros((1, 32)))
    # the surviving worker answers meanwhile
    assert all(_post(f"{server.url}/v2/models/propensity/infer", body)[0] == 200 for _ in range(5))
    deadline = time.monotonic() + 20
    delay = 0.1
    while True:
        now = server.worker_pids()
        if len(now) == 2 and workers[0] not in now:
            break
        assert time.monotonic() < deadline, f"worker not replaced: {now}\n{server.log()}"
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
