"""The propensity model: features, training, ONNX export and the model repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from serving_testkit import TEST_SEED, TEST_SF

from dataplat.serving.model import (
    CLASSES,
    FEATURE_NAMES,
    ModelError,
    ModelRepository,
    ModelVersion,
    OnnxModel,
    TrainedModel,
    bank_tables,
    build_features,
    load,
    to_onnx,
    train,
)


def test_features_cover_every_customer_and_class() -> None:
    tables = bank_tables(TEST_SF, TEST_SEED)
    fs = build_features(tables)
    assert fs.X.shape == (tables["customers"].num_rows, len(FEATURE_NAMES))
    assert fs.X.dtype == np.float32 and np.isfinite(fs.X).all()
    assert set(np.unique(fs.y)) == set(range(len(CLASSES)))
    assert np.all(np.diff(fs.customer_ids) > 0)
    col = FEATURE_NAMES.index
    # one-hot segment, booleans, non-negative counts
    assert np.all(fs.X[:, [col("segment_mass"), col("segment_affluent"), col("segment_private")]].sum(1) == 1)
    assert np.all(fs.X[:, col("n_accounts")] >= 1)
    assert set(np.unique(fs.X[:, col("payroll_customer")])) <= {0.0, 1.0}


def test_onnx_predictions_equal_scikit_learn(trained: TrainedModel, published: ModelVersion) -> None:
    expected = trained.estimator.predict_proba(trained.X_test)
    model = OnnxModel(published)
    out = model.run(trained.X_test)
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    np.testing.assert_array_equal(out["label"], trained.estimator.predict(trained.X_test))
    assert out["probabilities"].shape == (len(trained.X_test), len(CLASSES))


def test_training_is_deterministic(trained: TrainedModel) -> None:
    again = train(TEST_SF, TEST_SEED)
    assert to_onnx(again) == to_onnx(trained)
    assert again.metrics == trained.metrics
    # and metrics beat guessing by the majority class on the held-out split
    assert trained.metrics["auc_macro_ovr"] > 0.6
    assert 0.0 < trained.metrics["accuracy"] <= 1.0


def test_repository_layout_and_versions(
    trained: TrainedModel, published: ModelVersion, tmp_path: Path
) -> None:
    root = published.path.parents[1]
    assert (root / "propensity" / "config.pbtxt").read_text().startswith('name: "propensity"')
    assert published.onnx_path == root / "propensity" / "1" / "model.onnx"
    meta = json.loads((published.path / "metadata.json").read_text())
    assert meta["feature_names"] == list(FEATURE_NAMES) and meta["classes"] == list(CLASSES)
    assert meta["version"] == "1" and meta["trained_at"] == "2026-11-21T02:00:00+00:00"
    assert {"accuracy", "auc_macro_ovr", "auc_any_product", "log_loss"} <= set(meta["metrics"])
    assert meta["data"]["sf"] == TEST_SF and meta["data"]["seed"] == TEST_SEED

    repo = ModelRepository(tmp_path)
    repo.publish(trained)
    v2 = repo.publish(trained)
    assert v2.version == "2" and repo.versions("propensity") == ["1", "2"]
    assert repo.get("propensity").version == "2"
    assert load(tmp_path, version="1").version.version == "1"
    with pytest.raises(ModelError, match="already exists"):
        repo.publish(trained, version="2")
    with pytest.raises(ModelError, match="no version 9"):
        repo.get("propensity", "9")
    with pytest.raises(ModelError, match="has no version"):
        repo.get("churn")
