"""Train the model versions and package each as a SageMaker scikit-learn model archive.

``python -m model.train --output DIR [--versions v1,v2] [--trained-at 2024-05-17T12:00:00Z]``

Versions (two algorithms, so the ModelA/ModelB A/B test compares something real):

* ``v1``: ``Pipeline(StandardScaler, LogisticRegression)`` (lbfgs), ``C`` chosen from 0.1/1/10;
* ``v2``: ``GradientBoostingClassifier`` (150 trees, learning rate 0.1), ``max_depth`` from 2/3.

Each candidate is fitted on the training split; the one with the lowest validation log loss wins
(ties: the first listed); metrics are measured on the held-out test split (``model.data``). Seeds are
fixed; each version trains in well under a second.

Output per version::

    DIR/{version}/model.tar.gz         the model archive (below)
    DIR/{version}/manifest.json        sha256 and size of model.tar.gz, sha256 of each member, metrics
    DIR/{version}/request-schema.json  draft-04 JSON Schema of the request body (API Gateway model)

``model.tar.gz`` has the layout the SageMaker scikit-learn container expects (extracted into
``/opt/ml/model``)::

    model.joblib           the fitted estimator (joblib; unpickles with scikit-learn 1.4.2)
    schema.json            feature schema (``model.schema``)
    metrics.json           model_version, algorithm, hyper-parameters, model selection, test and
                           validation metrics (accuracy, precision, recall, f1, roc_auc, log_loss;
                           positive class 1 = malignant), split sizes, library versions, trained_at
    baseline.json          training statistics per feature for drift detection (below)
    code/inference.py      the entry point (``model/inference.py``, byte for byte)
    code/schema.py         its validation logic (``model/schema.py``, byte for byte)
    code/requirements.txt  comments only: the image already has every dependency, and the endpoint
                           has no internet access, so the container's ``pip install -r`` of this file
                           must have nothing to download

``baseline.json``: ``feature_names`` in schema order and, per feature, the training mean, population
standard deviation, min, max, quantiles at ``quantile_levels``, and a histogram whose interior
``edges`` are the distinct training deciles (10 %..90 %; fewer when deciles coincide). Bins are
``(-inf, e0), [e0, e1), ..., [e_last, +inf)`` — a value ``v`` falls into bin
``searchsorted(edges, v, side="right")`` — so the open ends catch production values outside the
training range; ``counts`` and ``proportions`` describe the training split, ready for a PSI
(histogram) or KS drift statistic; ``sample`` holds the sorted training values themselves (341 per
feature), for the drift monitor's two-sample KS test. ``prediction`` holds the same for the positive-class
probability on the training split, with fixed edges 0.1..0.9.

Reproducible: without ``--trained-at`` (``trained_at`` is then null) re-training in the same
environment writes byte-identical archives — members sorted, mtime fixed at 1980-01-01 (ZIP-based
tools such as the container's ``pip install`` reject earlier timestamps), uid/gid 0, no user or
group names, gzip header mtime 0 and no file name.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import joblib
import numpy as np
import sklearn
from numpy.typing import NDArray
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from model import data, schema
from shared import archive

SEED = 7
ARCHIVE_NAME = "model.tar.gz"
ARCHIVE_MTIME = archive.ARCHIVE_MTIME  # every member's mtime (shared.archive makes the archive)
deterministic_tar_gz = archive.deterministic_tar_gz
BASELINE_FORMAT_VERSION = 1
QUANTILE_LEVELS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
DECILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PREDICTION_EDGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CODE_FILES = ("inference.py", "schema.py")
REQUIREMENTS_TXT = (
    "# Intentionally lists no packages. The SageMaker scikit-learn 1.4-2 image already provides\n"
    "# scikit-learn 1.4.2, numpy, scipy and joblib, and the endpoint runs without internet access,\n"
    "# so the container's `pip install -r requirements.txt` must have nothing to download.\n"
)


@dataclass(frozen=True)
class VersionSpec:
    """A version's algorithm, its candidate hyper-parameters and how to build an estimator from them."""

    algorithm: str
    estimator: str
    candidates: tuple[dict[str, Any], ...]
    build: Callable[[Mapping[str, Any]], Any]


def _logistic_regression(params: Mapping[str, Any], seed: int = SEED) -> Pipeline:
    return Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "classifier",
                LogisticRegression(
                    C=params["C"], solver=params["solver"], max_iter=params["max_iter"], random_state=seed
                ),
            ),
        ]
    )


def _gradient_boosting(params: Mapping[str, Any], seed: int = SEED) -> GradientBoostingClassifier:
    return GradientBoostingClassifier(random_state=seed, **params)


BUILDERS: dict[str, Callable[..., Any]] = {
    "logistic_regression": _logistic_regression,
    "gradient_boosting": _gradient_boosting,
}


def seeded_spec(spec: VersionSpec, candidates: Sequence[Mapping[str, Any]], seed: int) -> VersionSpec:
    """``spec`` with other candidates and its estimators seeded with ``seed`` (script mode's jobs)."""
    return VersionSpec(
        algorithm=spec.algorithm,
        estimator=spec.estimator,
        candidates=tuple(dict(params) for params in candidates),
        build=functools.partial(BUILDERS[spec.algorithm], seed=seed),
    )


VERSIONS: dict[str, VersionSpec] = {
    "v1": VersionSpec(
        algorithm="logistic_regression",
        estimator="Pipeline(StandardScaler, LogisticRegression)",
        candidates=tuple({"C": c, "solver": "lbfgs", "max_iter": 1000} for c in (0.1, 1.0, 10.0)),
        build=_logistic_regression,
    ),
    "v2": VersionSpec(
        algorithm="gradient_boosting",
        estimator="GradientBoostingClassifier",
        candidates=tuple(
            {"n_estimators": 150, "learning_rate": 0.1, "max_depth": depth, "subsample": 1.0}
            for depth in (2, 3)
        ),
        build=_gradient_boosting,
    ),
}


@dataclass(frozen=True)
class FittedVersion:
    version: str
    spec: VersionSpec
    estimator: Any
    hyperparameters: dict[str, Any]
    selection: list[dict[str, Any]]


class CandidateStore(Protocol):
    """Where fitted candidates are kept between attempts (script mode's checkpoints)."""

    def load(self, index: int, params: Mapping[str, Any]) -> Any | None:
        """The candidate fitted earlier with exactly ``params``, or None."""

    def save(self, index: int, params: Mapping[str, Any], estimator: Any) -> None: ...


@dataclass(frozen=True)
class Artifact:
    version: str
    archive: Path
    manifest: dict[str, Any]


def classification_metrics(estimator: Any, split: data.Split) -> dict[str, float]:
    """Accuracy, precision, recall, f1 (positive class 1), ROC AUC and log loss on one split."""
    probabilities = estimator.predict_proba(split.features)
    positive = probabilities[:, list(estimator.classes_).index(data.POSITIVE_CLASS)]
    predicted = estimator.classes_[probabilities.argmax(axis=1)]
    return {
        "accuracy": float(accuracy_score(split.labels, predicted)),
        "precision": float(precision_score(split.labels, predicted, pos_label=data.POSITIVE_CLASS)),
        "recall": float(recall_score(split.labels, predicted, pos_label=data.POSITIVE_CLASS)),
        "f1": float(f1_score(split.labels, predicted, pos_label=data.POSITIVE_CLASS)),
        "roc_auc": float(roc_auc_score(split.labels, positive)),
        "log_loss": float(log_loss(split.labels, probabilities, labels=estimator.classes_)),
    }


def fit_version(version: str, dataset: data.Dataset) -> FittedVersion:
    """Fit every candidate of a version on the training split; keep the best on validation."""
    return fit_candidates(version, VERSIONS[version], dataset.train, dataset.validation)


def fit_candidates(
    version: str,
    spec: VersionSpec,
    train_split: data.Split,
    validation_split: data.Split,
    store: CandidateStore | None = None,
) -> FittedVersion:
    """Fit each candidate of ``spec`` (or take it from ``store``); keep the lowest validation log loss."""
    scored = []
    for index, params in enumerate(spec.candidates):
        estimator = store.load(index, params) if store is not None else None
        if estimator is None:
            estimator = spec.build(params).fit(train_split.features, train_split.labels)
            if store is not None:
                store.save(index, params, estimator)
        scored.append((classification_metrics(estimator, validation_split), params, estimator))
    _, best_params, best_estimator = min(scored, key=lambda item: item[0]["log_loss"])
    selection = [
        {
            "hyperparameters": dict(params),
            "validation_log_loss": metrics["log_loss"],
            "validation_accuracy": metrics["accuracy"],
        }
        for metrics, params, _ in scored
    ]
    return FittedVersion(version, spec, best_estimator, dict(best_params), selection)


def _histogram(values: NDArray[np.float64], edges: Sequence[float]) -> dict[str, Any]:
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    return {
        "edges": [float(edge) for edge in edges],
        "counts": [int(count) for count in counts],
        "proportions": [float(count) / len(values) for count in counts],
    }


def _statistics(values: NDArray[np.float64], edges: Sequence[float]) -> dict[str, Any]:
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "quantiles": [float(q) for q in np.quantile(values, QUANTILE_LEVELS)],
        "histogram": _histogram(values, edges),
    }


def build_baseline(fitted: FittedVersion, dataset: data.Dataset) -> dict[str, Any]:
    """Training-split statistics per feature and of the predicted probability (module docstring)."""
    return baseline_document(fitted, dataset.feature_names, dataset.train)


def baseline_document(
    fitted: FittedVersion, feature_names: Sequence[str], train_split: data.Split
) -> dict[str, Any]:
    """``baseline.json`` from the training split the version was fitted on."""
    features = train_split.features
    per_feature = {}
    for column, name in enumerate(feature_names):
        values = features[:, column]
        edges = [float(edge) for edge in np.unique(np.quantile(values, DECILES))]
        # the sorted training values: the drift monitor's two-sample KS test compares with them
        per_feature[name] = {**_statistics(values, edges), "sample": sorted(float(v) for v in values)}
    probabilities = fitted.estimator.predict_proba(features)
    positive = probabilities[:, list(fitted.estimator.classes_).index(data.POSITIVE_CLASS)]
    return {
        "format_version": BASELINE_FORMAT_VERSION,
        "model_version": fitted.version,
        "source": "training split",
        "n": len(train_split),
        "quantile_levels": list(QUANTILE_LEVELS),
        "feature_names": list(feature_names),
        "histogram_bins": "(-inf, e0), [e0, e1), ..., [e_last, +inf): searchsorted(edges, v, side='right')",
        "features": per_feature,
        "prediction": {"positive_probability": _statistics(positive, PREDICTION_EDGES)},
    }


def selection_metrics(fitted: FittedVersion, seed: int) -> dict[str, Any]:
    """The part of ``metrics.json`` that says what was fitted and how it was chosen."""
    return {
        "model_version": fitted.version,
        "algorithm": fitted.spec.algorithm,
        "estimator": fitted.spec.estimator,
        "hyperparameters": fitted.hyperparameters,
        "random_state": seed,
        "model_selection": {"criterion": "lowest validation log loss", "candidates": fitted.selection},
        "positive_class": data.POSITIVE_CLASS,
        "library_versions": {
            "python": ".".join(platform.python_version_tuple()[:2]),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
        },
    }


def build_metrics(fitted: FittedVersion, dataset: data.Dataset, trained_at: str | None) -> dict[str, Any]:
    return {
        **selection_metrics(fitted, SEED),
        "test_metrics": classification_metrics(fitted.estimator, dataset.test),
        "validation_metrics": classification_metrics(fitted.estimator, dataset.validation),
        "n_train": len(dataset.train),
        "n_validation": len(dataset.validation),
        "n_test": len(dataset.test),
        "majority_class_rate": dataset.majority_class_rate,
        "class_names": list(dataset.class_names),
        "dataset": {
            "name": data.DATASET_NAME,
            "source": data.DATASET_SOURCE,
            "split_seed": data.SPLIT_SEED,
            "test_fraction": data.TEST_FRACTION,
            "validation_fraction_of_rest": data.VALIDATION_FRACTION_OF_REST,
        },
        "trained_at": trained_at,
    }


def json_bytes(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def archive_members(
    fitted: FittedVersion, dataset: data.Dataset, feature_schema: schema.FeatureSchema, trained_at: str | None
) -> dict[str, bytes]:
    """The files of ``model.tar.gz`` by archive path."""
    return model_members(
        fitted.estimator,
        feature_schema,
        build_metrics(fitted, dataset, trained_at),
        build_baseline(fitted, dataset),
    )


def model_members(
    estimator: Any,
    feature_schema: schema.FeatureSchema,
    metrics: Mapping[str, Any],
    baseline: Mapping[str, Any],
) -> dict[str, bytes]:
    """The archive's members (module docstring) from the estimator and its documents."""
    model_bytes = io.BytesIO()
    joblib.dump(estimator, model_bytes)
    package_dir = Path(__file__).resolve().parent
    members = {
        "model.joblib": model_bytes.getvalue(),
        "schema.json": feature_schema.to_json().encode("utf-8"),
        "metrics.json": json_bytes(metrics),
        "baseline.json": json_bytes(baseline),
        "code/requirements.txt": REQUIREMENTS_TXT.encode("utf-8"),
    }
    for name in CODE_FILES:
        members[f"code/{name}"] = (package_dir / name).read_bytes()
    return members


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def train(
    output: Path,
    versions: Sequence[str] = tuple(VERSIONS),
    trained_at: str | None = None,
    max_rows: int = schema.DEFAULT_MAX_ROWS,
) -> list[Artifact]:
    """Train ``versions`` into ``output/{version}/`` (module docstring); returns what was written."""
    unknown = [version for version in versions if version not in VERSIONS]
    if unknown:
        raise ValueError(f"unknown version(s) {', '.join(unknown)}; known: {', '.join(VERSIONS)}")
    dataset = data.load_dataset()
    feature_schema = schema.build_schema(dataset.feature_names, dataset.train.features.tolist())
    artifacts = []
    for version in versions:
        fitted = fit_version(version, dataset)
        members = archive_members(fitted, dataset, feature_schema, trained_at)
        archive = deterministic_tar_gz(members)
        metrics = json.loads(members["metrics.json"])
        manifest = {
            "model_version": version,
            "artifact": ARCHIVE_NAME,
            "sha256": _sha256(archive),
            "size_bytes": len(archive),
            "members": {name: _sha256(payload) for name, payload in sorted(members.items())},
            "algorithm": metrics["algorithm"],
            "hyperparameters": metrics["hyperparameters"],
            "test_metrics": metrics["test_metrics"],
            "library_versions": metrics["library_versions"],
            "trained_at": trained_at,
        }
        directory = output / version
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ARCHIVE_NAME).write_bytes(archive)
        (directory / "manifest.json").write_bytes(json_bytes(manifest))
        (directory / "request-schema.json").write_bytes(
            json_bytes(schema.request_json_schema(feature_schema, max_rows))
        )
        artifacts.append(Artifact(version, directory / ARCHIVE_NAME, manifest))
    return artifacts


def _parse_versions(value: str) -> list[str]:
    versions = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [version for version in versions if version not in VERSIONS]
    if not versions or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {', '.join(VERSIONS)}, got {value!r}"
        )
    return list(dict.fromkeys(versions))


def _parse_timestamp(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 timestamp, got {value!r}") from None
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="directory for {version}/model.tar.gz")
    parser.add_argument("--versions", type=_parse_versions, default=list(VERSIONS), help="e.g. v1,v2")
    parser.add_argument(
        "--trained-at", type=_parse_timestamp, default=None, help="recorded in metrics (default: none)"
    )
    parser.add_argument("--max-rows", type=int, default=schema.DEFAULT_MAX_ROWS, help="rows per API request")
    args = parser.parse_args(argv)
    if args.max_rows < 1:
        parser.error("--max-rows must be >= 1")
    for artifact in train(args.output, args.versions, args.trained_at, args.max_rows):
        metrics = artifact.manifest["test_metrics"]
        sys.stdout.write(
            f"{artifact.version}: {artifact.manifest['algorithm']} accuracy={metrics['accuracy']:.4f} "
            f"roc_auc={metrics['roc_auc']:.4f} sha256={artifact.manifest['sha256']} -> {artifact.archive}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
