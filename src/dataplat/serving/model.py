"""The propensity model: features, training, ONNX export and the model repository.

Which product a customer is likely to take next: ``none``, ``deposit``,
``wealth_management``, ``fund`` or ``insurance``. The label is the category of the
customer's most recent holding that started within :data:`LABEL_WINDOW_DAYS` before the
data set's as-of date (``none`` when there is none); the features describe the customer
as of the start of that window, so the label does not leak into them: the customer row
(age, tenure, segment, risk level, consent, status), deposit balances, the last 30 days
of transactions (payroll, large inflows, money moved to other banks, card spend), the
holdings that had started before the window and the marketing contacts.

The model is a scikit-learn pipeline exported to ONNX with skl2onnx and published to a
model repository laid out like Triton's, so the same directory serves a local pool
(:mod:`dataplat.serving.server`) and a Triton pool::

    <repo>/<model>/config.pbtxt             Triton model configuration
    <repo>/<model>/<version>/model.onnx     the graph: input ``features`` [N, F] FP32,
                                            outputs ``label`` [N] INT64, ``probabilities`` [N, C] FP32
    <repo>/<model>/<version>/metadata.json  feature names, classes, version, training date,
                                            data set, metrics on the held-out split

Everything is deterministic for a given ``(sf, seed)``: the data, the split, the
estimator and the ONNX bytes (only ``trained_at`` in the metadata changes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataplat.data.generate import AS_OF, DEFAULT_SEED, WINDOW_DAYS, generate
from dataplat.errors import DataplatError

MODEL_NAME = "propensity"
"""The name the decision service asks the pools for."""

CLASSES: tuple[str, ...] = ("none", "deposit", "wealth_management", "fund", "insurance")
"""Class index -> product category (the ``label`` output is an index into this)."""

LABEL_WINDOW_DAYS = 60
"""A holding that started this many days before as-of or later is a product 'taken'."""

INPUT_NAME = "features"
LABEL_OUTPUT = "label"
PROBA_OUTPUT = "probabilities"

_SEGMENTS = ("mass", "affluent", "private")
_PRODUCT_CATEGORIES = CLASSES[1:]

FEATURE_NAMES: tuple[str, ...] = (
    "age_years",
    "tenure_years",
    "segment_mass",
    "segment_affluent",
    "segment_private",
    "risk_level",
    "marketing_consent",
    "dormant",
    "gender_male",
    "n_accounts",
    "log_balance_current",
    "log_balance_savings",
    "log_balance_time_deposit",
    "payroll_customer",
    "log_payroll_30d",
    "log_large_inflow_30d",
    "n_large_inflow_30d",
    "log_transfer_out_other_bank_30d",
    "n_transfer_out_other_bank_30d",
    "log_card_spend_30d",
    "n_txn_30d",
    "log_credit_30d",
    "log_debit_30d",
    "n_holdings_before",
    "log_holdings_amount_before",
    "held_deposit_before",
    "held_wealth_management_before",
    "held_fund_before",
    "held_insurance_before",
    "days_since_last_holding",
    "n_contacts_30d",
    "n_converted_contacts_30d",
)
"""The model's input columns, in order (``features`` is [N, len(FEATURE_NAMES)] FP32)."""


class ModelError(DataplatError):
    """A model repository entry is missing, malformed, or cannot be loaded."""


# --- data and features ----------------------------------------------------------------


def bank_tables(sf: float = 0.01, seed: int = DEFAULT_SEED) -> dict[str, pa.Table]:
    """The synthetic bank at ``(sf, seed)``, generated in memory (no database needed)."""
    parts: dict[str, list[pa.RecordBatch]] = {}
    for name, batch in generate(sf, seed):
        parts.setdefault(name, []).append(batch)
    return {name: pa.Table.from_batches(batches) for name, batches in parts.items()}


@dataclass(frozen=True)
class FeatureSet:
    """One row per customer: identifiers, the feature matrix and the label."""

    customer_ids: np.ndarray
    """int64 [N]"""
    X: np.ndarray
    """float32 [N, len(FEATURE_NAMES)]"""
    y: np.ndarray
    """int64 [N], an index into :data:`CLASSES`"""


def _np(table: pa.Table, column: str, dtype: Any = None) -> np.ndarray:
    col = table[column]
    if pa.types.is_decimal(col.type):
        col = pc.cast(col, pa.float64())
    elif pa.types.is_date(col.type):
        col = pc.cast(col, pa.int32())
    elif pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.int64())
    arr = col.to_numpy(zero_copy_only=False)
    return arr.astype(dtype) if dtype is not None else arr


def _days(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def build_features(
    tables: Mapping[str, pa.Table],
    *,
    as_of: dt.date = AS_OF,
    label_window_days: int = LABEL_WINDOW_DAYS,
) -> FeatureSet:
    """Features and labels for every customer of ``tables`` (see the module docstring)."""
    cust = tables["customers"]
    cid = _np(cust, "customer_id", np.int64)
    order = np.argsort(cid, kind="stable")
    cid = cid[order]
    n = len(cid)

    def rows(ids: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(cid, ids)
        if len(ids) and (idx.max(initial=0) >= n or not np.array_equal(cid[np.minimum(idx, n - 1)], ids)):
            raise ModelError("a table references customers that are not in the customers table")
        return idx

    def per_customer(ids: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(rows(ids), weights=weights, minlength=n).astype(np.float64)

    cutoff = _days(as_of) - label_window_days
    X = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float64)
    col = {name: i for i, name in enumerate(FEATURE_NAMES)}

    # customers
    birth = _np(cust, "birth_date", np.int64)[order]
    opened = _np(cust, "opened_at", np.int64)[order]
    segment = np.asarray(cust["segment"].to_pylist(), dtype=object)[order]
    X[:, col["age_years"]] = (cutoff - birth) / 365.25
    X[:, col["tenure_years"]] = np.maximum(cutoff - opened, 0) / 365.25
    for s in _SEGMENTS:
        X[:, col[f"segment_{s}"]] = segment == s
    X[:, col["risk_level"]] = _np(cust, "risk_level", np.float64)[order]
    X[:, col["marketing_consent"]] = _np(cust, "marketing_consent", bool)[order]
    X[:, col["dormant"]] = np.asarray(cust["status"].to_pylist(), dtype=object)[order] == "dormant"
    X[:, col["gender_male"]] = np.asarray(cust["gender"].to_pylist(), dtype=object)[order] == "M"

    # accounts
    acc = tables["accounts"]
    a_cust = _np(acc, "customer_id", np.int64)
    a_type = np.asarray(acc["type"].to_pylist(), dtype=object)
    a_bal = _np(acc, "balance", np.float64)
    X[:, col["n_accounts"]] = per_customer(a_cust)
    for t in ("current", "savings", "time_deposit"):
        m = a_type == t
        X[:, col[f"log_balance_{t}"]] = np.log1p(per_customer(a_cust[m], a_bal[m]))

    # transactions (the generator's 30-day window)
    txn = tables["transactions"]
    t_cust = _np(txn, "customer_id", np.int64)
    t_kind = np.asarray(txn["kind"].to_pylist(), dtype=object)
    t_amt = _np(txn, "amount", np.float64)
    t_credit = np.asarray(txn["direction"].to_pylist(), dtype=object) == "credit"
    for kind, log_name, count_name in (
        ("payroll_credit", "log_payroll_30d", None),
        ("large_inflow", "log_large_inflow_30d", "n_large_inflow_30d"),
        ("transfer_out_other_bank", "log_transfer_out_other_bank_30d", "n_transfer_out_other_bank_30d"),
        ("card_spend", "log_card_spend_30d", None),
    ):
        m = t_kind == kind
        X[:, col[log_name]] = np.log1p(per_customer(t_cust[m], t_amt[m]))
        if count_name:
            X[:, col[count_name]] = per_customer(t_cust[m])
    X[:, col["payroll_customer"]] = X[:, col["log_payroll_30d"]] > 0
    X[:, col["n_txn_30d"]] = per_customer(t_cust)
    X[:, col["log_credit_30d"]] = np.log1p(per_customer(t_cust[t_credit], t_amt[t_credit]))
    X[:, col["log_debit_30d"]] = np.log1p(per_customer(t_cust[~t_credit], t_amt[~t_credit]))

    # holdings: before the window -> features; inside it -> the label
    hold = tables["holdings"]
    prod = tables["products"]
    product_ids = _np(prod, "product_id", np.int64).tolist()
    category = dict(zip(product_ids, prod["category"].to_pylist(), strict=True))
    cat_index = {c: i for i, c in enumerate(CLASSES)}
    h_cust = _np(hold, "customer_id", np.int64)
    h_cat = np.array([cat_index[category[p]] for p in _np(hold, "product_id", np.int64).tolist()], np.int64)
    h_start = _np(hold, "start_date", np.int64)
    h_amt = _np(hold, "amount", np.float64)
    before = h_start < cutoff
    X[:, col["n_holdings_before"]] = per_customer(h_cust[before])
    X[:, col["log_holdings_amount_before"]] = np.log1p(per_customer(h_cust[before], h_amt[before]))
    for i, c in enumerate(_PRODUCT_CATEGORIES, start=1):
        m = before & (h_cat == i)
        X[:, col[f"held_{c}_before"]] = per_customer(h_cust[m]) > 0
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, rows(h_cust[before]), h_start[before])
    X[:, col["days_since_last_holding"]] = np.where(last >= 0, np.minimum(cutoff - last, 3650), 3650)

    y = np.zeros(n, dtype=np.int64)
    inside = np.flatnonzero(~before & (h_start <= _days(as_of)))
    # latest start wins; ties broken by the higher holding id (lexsort: last key is primary)
    inside = inside[np.lexsort((_np(hold, "holding_id", np.int64)[inside], h_start[inside]))]
    y[rows(h_cust[inside])] = h_cat[inside]

    # marketing contacts in the generator's window
    con = tables.get("contact_history")
    if con is not None and con.num_rows:
        c_cust = _np(con, "customer_id", np.int64)
        c_ts_days = _np(con, "ts", np.int64) // 86_400_000_000
        recent = c_ts_days >= _days(as_of) - WINDOW_DAYS
        conv = np.asarray(con["outcome"].to_pylist(), dtype=object) == "converted"
        X[:, col["n_contacts_30d"]] = per_customer(c_cust[recent])
        X[:, col["n_converted_contacts_30d"]] = per_customer(c_cust[recent & conv])

    return FeatureSet(customer_ids=cid, X=X.astype(np.float32), y=y)


# --- training -------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A fitted estimator with what its metadata needs."""

    estimator: Any
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]
    metrics: dict[str, float]
    params: dict[str, Any]
    data: dict[str, Any]
    X_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def evaluate(proba: np.ndarray, y: np.ndarray, n_classes: int = len(CLASSES)) -> dict[str, float]:
    """Accuracy, macro one-vs-rest AUC, log loss and the AUC of 'takes any product'."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    metrics = {
        "accuracy": float(accuracy_score(y, proba.argmax(axis=1))),
        "log_loss": float(log_loss(y, proba, labels=list(range(n_classes)))),
        "n_test": float(len(y)),
    }
    present = [c for c in range(n_classes) if 0 < (y == c).sum() < len(y)]
    aucs = [roc_auc_score(y == c, proba[:, c]) for c in present]
    metrics["auc_macro_ovr"] = float(np.mean(aucs)) if aucs else float("nan")
    if 0 < (y > 0).sum() < len(y):
        metrics["auc_any_product"] = float(roc_auc_score(y > 0, 1.0 - proba[:, 0]))
    metrics["base_rate_none"] = float((y == 0).mean())
    return metrics


def train(
    sf: float = 0.01,
    seed: int = DEFAULT_SEED,
    *,
    test_fraction: float = 0.25,
    n_estimators: int = 100,
    max_depth: int = 8,
    tables: Mapping[str, pa.Table] | None = None,
) -> TrainedModel:
    """Fit the propensity model on the synthetic bank ``(sf, seed)``.

    A :class:`~sklearn.ensemble.RandomForestClassifier` (fixed seed, one job, so the
    trees are the same on every machine) on :func:`build_features`; metrics are computed
    on a held-out split of ``test_fraction`` drawn with ``seed``. (skl2onnx 1.20 cannot
    convert scikit-learn 1.9's HistGradientBoostingClassifier, and on this data set the
    forest scores as well.)
    """
    from sklearn.ensemble import RandomForestClassifier

    if tables is None:
        tables = bank_tables(sf, seed)
    fs = build_features(tables)
    train_idx, test_idx = _split(len(fs.y), test_fraction, seed)
    params = {
        "n_estimators": n_estimators,
        "max_depth": max_depth,
        "min_samples_leaf": 5,
        "n_jobs": 1,
        "random_state": seed % (2**32),
    }
    est = RandomForestClassifier(**params)
    est.fit(fs.X[train_idx], fs.y[train_idx])
    if list(est.classes_) != list(range(len(CLASSES))):
        raise ModelError(
            f"the training data holds only classes {list(est.classes_)} of {len(CLASSES)}; "
            "use a larger scale factor"
        )
    X_test, y_test = fs.X[test_idx], fs.y[test_idx]
    return TrainedModel(
        estimator=est,
        feature_names=FEATURE_NAMES,
        classes=CLASSES,
        metrics=evaluate(est.predict_proba(X_test), y_test),
        params={"estimator": "RandomForestClassifier", **params, "test_fraction": test_fraction},
        data={
            "generator": "dataplat.data.generate",
            "sf": sf,
            "seed": seed,
            "as_of": AS_OF.isoformat(),
            "label_window_days": LABEL_WINDOW_DAYS,
            "n_train": int(len(train_idx)),
            "n_test": int(len(test_idx)),
            "class_counts": {c: int((fs.y == i).sum()) for i, c in enumerate(CLASSES)},
        },
        X_test=X_test,
        y_test=y_test,
    )


def to_onnx(trained: TrainedModel, opset: int = 17) -> bytes:
    """The ONNX graph: ``features`` [N, F] FP32 -> ``label`` [N] INT64, ``probabilities`` [N, C] FP32."""
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = skl_to_onnx(
        trained.estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, len(trained.feature_names)]))],
        options={id(trained.estimator): {"zipmap": False}},
        target_opset={"": opset, "ai.onnx.ml": 3},
        final_types=None,
        naming="propensity_",
    )
    renames = {onx.graph.output[0].name: LABEL_OUTPUT, onx.graph.output[1].name: PROBA_OUTPUT}
    for node in onx.graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
    for out in onx.graph.output:
        out.name = renames.get(out.name, out.name)
    onx.doc_string = "dataplat propensity model: " + ", ".join(trained.classes)
    return onx.SerializeToString()


# --- model repository -----------------------------------------------------------------


@dataclass(frozen=True)
class ModelMetadata:
    """``<repo>/<model>/<version>/metadata.json``."""

    name: str
    version: str
    feature_names: tuple[str, ...]
    classes: tuple[str, ...]
    input_name: str
    outputs: tuple[str, ...]
    trained_at: str
    metrics: dict[str, float]
    params: dict[str, Any]
    data: dict[str, Any]
    framework: str = "onnx"

    def to_json(self) -> str:
        """The metadata as indented JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse :meth:`to_json`'s output."""
        doc = json.loads(text)
        for key in ("feature_names", "classes", "outputs"):
            doc[key] = tuple(doc[key])
        return cls(**doc)


@dataclass(frozen=True)
class ModelVersion:
    """One published version: where its files are and what its metadata says."""

    name: str
    version: str
    path: Path
    metadata: ModelMetadata

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"


def _triton_config(name: str, n_features: int, n_classes: int, max_batch_size: int = 1024) -> str:
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        f'input [ {{ name: "{INPUT_NAME}" data_type: TYPE_FP32 dims: [ {n_features} ] }} ]\n'
        "output [\n"
        f'  {{ name: "{LABEL_OUTPUT}" data_type: TYPE_INT64 dims: [ 1 ] reshape: {{ shape: [ ] }} }},\n'
        f'  {{ name: "{PROBA_OUTPUT}" data_type: TYPE_FP32 dims: [ {n_classes} ] }}\n'
        "]\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
        "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
    )


class ModelRepository:
    """A directory of models, Triton's layout (see the module docstring).

    Versions are positive integers; the latest is the highest. Publishing writes into a
    temporary directory and renames it, so a server never sees half a version.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def models(self) -> list[str]:
        """Names of the models that have at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        """Published versions of ``name``, oldest first."""
        d = self.root / name
        if not d.is_dir():
            return []
        found = [p.name for p in d.iterdir() if p.name.isdigit() and (p / "model.onnx").is_file()]
        return sorted(found, key=int)

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """A version of ``name`` (the latest when ``version`` is None); :class:`ModelError` if absent."""
        versions = self.versions(name)
        if not versions:
            raise ModelError(f"model {name!r} has no version in {self.root}")
        v = versions[-1] if version is None else str(version)
        if v not in versions:
            raise ModelError(f"model {name!r} has no version {v} in {self.root} (has {', '.join(versions)})")
        path = self.root / name / v
        try:
            meta = ModelMetadata.from_json((path / "metadata.json").read_text())
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"{path / 'metadata.json'} is missing or malformed: {exc}") from exc
        return ModelVersion(name, v, path, meta)

    def publish(
        self,
        trained: TrainedModel,
        name: str = MODEL_NAME,
        version: str | None = None,
        trained_at: dt.datetime | None = None,
    ) -> ModelVersion:
        """Export ``trained`` to ONNX and write it as a new version (next integer by default)."""
        existing = self.versions(name)
        v = str(version) if version is not None else str(int(existing[-1]) + 1 if existing else 1)
        if not v.isdigit() or int(v) < 1:
            raise ModelError(f"model version must be a positive integer, got {v!r}")
        if v in existing:
            raise ModelError(f"model {name!r} version {v} already exists in {self.root}")
        when = (trained_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        meta = ModelMetadata(
            name=name,
            version=v,
            feature_names=tuple(trained.feature_names),
            classes=tuple(trained.classes),
            input_name=INPUT_NAME,
            outputs=(LABEL_OUTPUT, PROBA_OUTPUT),
            trained_at=when.isoformat(timespec="seconds"),
            metrics=dict(trained.metrics),
            params=dict(trained.params),
            data=dict(trained.data),
        )
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "config.pbtxt").write_text(
            _triton_config(name, len(trained.feature_names), len(trained.classes))
        )
        tmp = model_dir / f".{v}.tmp"
        tmp.mkdir(parents=True, exist_ok=False)
        (tmp / "model.onnx").write_bytes(to_onnx(trained))
        (tmp / "metadata.json").write_text(meta.to_json() + "\n")
        tmp.rename(model_dir / v)
        return ModelVersion(name, v, model_dir / v, meta)


def train_and_publish(
    repo: str | os.PathLike[str],
    sf: float = 0.01,
    seed: int = DEFAULT_SEED,
    name: str = MODEL_NAME,
    version: str | None = None,
) -> ModelVersion:
    """Train on ``(sf, seed)`` and publish the result to ``repo``."""
    return ModelRepository(repo).publish(train(sf, seed), name=name, version=version)


# --- inference ------------------------------------------------------------------------


class OnnxModel:
    """A loaded version: an ONNX Runtime session on CPU plus its metadata."""

    def __init__(self, version: ModelVersion, intra_op_threads: int = 1) -> None:
        import onnxruntime as ort

        self.version = version
        self.metadata = version.metadata
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(
                str(version.onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own, untyped errors
            raise ModelError(f"cannot load {version.onnx_path}: {exc}") from exc
        self.n_features = len(self.metadata.feature_names)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for ``X`` ([N, F], cast to float32)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        values = self.session.run(self.output_names, {self.metadata.input_name: X})
        return dict(zip(self.output_names, values, strict=True))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C] (float32)."""
        return self.run(X)[PROBA_OUTPUT]


def load(repo: str | os.PathLike[str], name: str = MODEL_NAME, version: str | None = None) -> OnnxModel:
    """Load a version (the latest by default) from ``repo``."""
    return OnnxModel(ModelRepository(repo).get(name, version))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dataplat.serving.model --repo DIR [--sf SF] [--seed N]``: train and publish."""
    parser = argparse.ArgumentParser(prog="python -m dataplat.serving.model", description=main.__doc__)
    parser.add_argument("--repo", required=True, help="model repository directory")
    parser.add_argument("--sf", type=float, default=0.01, help="scale factor of the training data")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--name", default=MODEL_NAME)
    parser.add_argument("--version", default=None, help="default: the next integer")
    args = parser.parse_args(argv)
    mv = train_and_publish(args.repo, args.sf, args.seed, args.name, args.version)
    print(json.dumps({"path": str(mv.path), "version": mv.version, "metrics": mv.metadata.metrics}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
