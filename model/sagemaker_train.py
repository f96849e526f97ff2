"""The training job's entry point: ``model/train.py``'s fitting and packaging in SageMaker script mode.

The AWS scikit-learn 1.4-2 container (no SageMaker SDK) extracts the source bundle
(``shared/source_bundle.py``: this file at its root, beside the ``model`` and ``shared`` modules it
imports) and runs ``python sagemaker_train.py --name value ...`` with the job's hyper-parameters
(:data:`shared.training.HYPERPARAMETERS`; the container's reserved ``sagemaker_*`` ones are ignored
if they come along):

``algorithm``
    ``logistic_regression`` (default; ``model.train``'s v1 estimator) or ``gradient_boosting`` (v2's).
``C`` (logistic regression), ``max_depth``, ``n_estimators``, ``learning_rate`` (gradient boosting)
    One value each; a hyper-parameter left out keeps ``model.train``'s value, and where that is a
    grid (``C`` 0.1/1/10, ``max_depth`` 2/3) the job selects over it as ``model.train`` does: lowest
    validation log loss. A hyper-parameter of the other algorithm is an error.
``seed``
    The estimators' random state (default ``model.train.SEED``).
``model_version``
    Required: the label written into ``metrics.json`` (``v1``, ``v2``, ...), which the endpoint
    answers with.

Inputs: the channels ``SM_CHANNEL_TRAIN`` and ``SM_CHANNEL_VALIDATION``, each a directory of CSV
files with a header (the feature names in schema order, then :data:`shared.training.TARGET_COLUMN`;
``1`` = malignant). Outputs:

- ``SM_MODEL_DIR``: exactly the members of the project's ``model.tar.gz`` (``model.joblib``,
  ``schema.json``, ``metrics.json``, ``baseline.json``, ``code/...``; see ``model/train.py``), which
  SageMaker tars to ``<S3OutputPath>/<job>/output/model.tar.gz``; ``metrics.json`` holds the
  validation and training metrics (the held-out test split never reaches the job);
- stdout: one :func:`shared.training.metric_line` per metric of :data:`shared.training.METRIC_NAMES`
  (the job's metric definitions parse them);
- checkpoints in :data:`shared.training.CHECKPOINT_LOCAL_PATH` (``SAGEMAKER_BASE_DIR`` stands in for
  ``/opt/ml``): each fitted candidate of the selection grid, written as it is fitted; a restarted job
  (a managed spot interruption) restores them instead of fitting them again;
- on error: the reason in ``/opt/ml/output/failure`` (SageMaker's ``FailureReason``) and exit code 1.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from model import data, schema, train
from shared import training
from shared.model_parameters import VERSION_PATTERN

CONTAINER_ROOT = "/opt/ml"
RESERVED_PREFIX = "sagemaker_"
# hyper-parameters each algorithm accepts (beside algorithm, seed and model_version)
ALGORITHM_PARAMETERS = {
    "logistic_regression": (training.HP_C,),
    "gradient_boosting": (training.HP_MAX_DEPTH, training.HP_N_ESTIMATORS, training.HP_LEARNING_RATE),
}
VERSION_OF_ALGORITHM = {"logistic_regression": "v1", "gradient_boosting": "v2"}
MAX_FAILURE_CHARS = 1024  # SageMaker keeps the first 1,024 characters of the failure file


class JobInputError(ValueError):
    """The job was given something it cannot train on; the message names what and where."""


@dataclass(frozen=True)
class JobParameters:
    algorithm: str
    overrides: dict[str, Any]
    seed: int
    model_version: str


def container_path(path: str) -> Path:
    """A path of the container's ``/opt/ml`` tree, relocated under ``SAGEMAKER_BASE_DIR`` when set."""
    base = os.environ.get("SAGEMAKER_BASE_DIR")
    if base is None or not (path == CONTAINER_ROOT or path.startswith(CONTAINER_ROOT + "/")):
        return Path(path)
    return Path(base) / Path(path).relative_to(CONTAINER_ROOT)


# ---- hyper-parameters ---------------------------------------------------------------------------


def _positive_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise JobInputError(f"hyper-parameter {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise JobInputError(f"hyper-parameter {name!r} must be a finite number > 0, got {value!r}")
    return number


def _int(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise JobInputError(f"hyper-parameter {name!r} must be an integer, got {value!r}") from None
    if number < minimum:
        raise JobInputError(f"hyper-parameter {name!r} must be >= {minimum}, got {value!r}")
    return number


def _learning_rate(name: str, value: str) -> float:
    rate = _positive_float(name, value)
    if rate > 1:
        raise JobInputError(f"hyper-parameter {name!r} must be in (0, 1], got {value!r}")
    return rate


PARSERS = {
    training.HP_C: _positive_float,
    training.HP_MAX_DEPTH: lambda name, value: _int(name, value, 1),
    training.HP_N_ESTIMATORS: lambda name, value: _int(name, value, 1),
    training.HP_LEARNING_RATE: _learning_rate,
}


def parse_hyperparameters(argv: Sequence[str]) -> JobParameters:
    """``--name value`` pairs as the container passes them; ``sagemaker_*`` names are skipped."""
    given: dict[str, str] = {}
    args = list(argv)
    while args:
        flag = args.pop(0)
        if not flag.startswith("--") or len(flag) == 2:
            raise JobInputError(f"expected a hyper-parameter as '--name value', got {flag!r}")
        name = flag[2:]
        if not args:
            raise JobInputError(f"hyper-parameter {name!r} has no value")
        value = args.pop(0)
        if name.startswith(RESERVED_PREFIX):
            continue
        if name not in training.HYPERPARAMETERS:
            raise JobInputError(
                f"unknown hyper-parameter {name!r}; expected {', '.join(training.HYPERPARAMETERS)}"
            )
        if name in given:
            raise JobInputError(f"hyper-parameter {name!r} is given twice")
        given[name] = value
    algorithm = given.pop(training.HP_ALGORITHM, "logistic_regression")
    if algorithm not in training.ALGORITHMS:
        raise JobInputError(
            f"hyper-parameter 'algorithm' must be one of {', '.join(training.ALGORITHMS)}, got {algorithm!r}"
        )
    version = given.pop(training.HP_MODEL_VERSION, None)
    if version is None:
        raise JobInputError("hyper-parameter 'model_version' is required (the label metrics.json carries)")
    if not VERSION_PATTERN.match(version):
        raise JobInputError(f"hyper-parameter 'model_version' must look like v1, v2, ..., got {version!r}")
    seed = _int(training.HP_SEED, given.pop(training.HP_SEED), 0) if training.HP_SEED in given else train.SEED
    overrides = {}
    for name, value in given.items():
        if name not in ALGORITHM_PARAMETERS[algorithm]:
            other = next(alg for alg, names in ALGORITHM_PARAMETERS.items() if name in names)
            raise JobInputError(f"hyper-parameter {name!r} applies to {other}, not to {algorithm}")
        overrides[name] = PARSERS[name](name, value)
    return JobParameters(algorithm, overrides, seed, version)


def candidate_spec(parameters: JobParameters) -> train.VersionSpec:
    """``model.train``'s spec for the algorithm, its candidates overridden by the given values."""
    spec = train.VERSIONS[VERSION_OF_ALGORITHM[parameters.algorithm]]
    candidates: list[dict[str, Any]] = []
    for params in spec.candidates:
        candidate = {**params, **parameters.overrides}
        if candidate not in candidates:
            candidates.append(candidate)
    return train.seeded_spec(spec, candidates, parameters.seed)


# ---- channels -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Channel:
    feature_names: tuple[str, ...]
    split: data.Split
    files: tuple[str, ...]


def _read_csv(path: Path, channel: str) -> tuple[tuple[str, ...], list[list[float]], list[int]]:
    where = f"channel {channel!r} file {path.name}"
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise JobInputError(f"{where} is empty; expected a header row")
        header = [name.strip() for name in header]
        if header[-1] != training.TARGET_COLUMN or len(header) < 2:
            raise JobInputError(
                f"{where}: the header's last column must be {training.TARGET_COLUMN!r} after the "
                f"features, got {header[-1]!r}"
            )
        features = tuple(header[:-1])
        bad = [name for name in features if not name.isidentifier()]
        if bad:
            raise JobInputError(f"{where}: feature names must be identifiers, got {bad[0]!r}")
        if len(set(features)) != len(features) or training.TARGET_COLUMN in features:
            raise JobInputError(f"{where}: the header repeats a column name")
        rows: list[list[float]] = []
        labels: list[int] = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise JobInputError(f"{where} line {line}: {len(row)} values, the header has {len(header)}")
            values = []
            for name, cell in zip(features, row[:-1], strict=True):
                try:
                    value = float(cell)
                except ValueError:
                    raise JobInputError(f"{where} line {line}: {name} is not a number ({cell!r})") from None
                if not math.isfinite(value):
                    raise JobInputError(f"{where} line {line}: {name} is not finite ({cell!r})")
                values.append(value)
            if row[-1].strip() not in {"0", "1"}:
                raise JobInputError(
                    f"{where} line {line}: {training.TARGET_COLUMN} must be 0 or 1 (1 = malignant), "
                    f"got {row[-1]!r}"
                )
            rows.append(values)
            labels.append(int(row[-1]))
    return features, rows, labels


def read_channel(channel: str) -> Channel:
    """Every CSV file of a channel's directory (sorted by path), all with the same header."""
    variable = f"SM_CHANNEL_{channel.upper()}"
    directory = os.environ.get(variable)
    if directory is None:
        raise JobInputError(f"missing channel {channel!r}: {variable} is not set")
    root = Path(directory)
    if not root.is_dir():
        raise JobInputError(f"channel {channel!r}: {variable}={directory} is not a directory")
    files = sorted(path for path in root.rglob("*") if path.is_file())
    if not files:
        raise JobInputError(f"channel {channel!r} holds no files ({directory})")
    names: tuple[str, ...] | None = None
    rows: list[list[float]] = []
    labels: list[int] = []
    for path in files:
        features, file_rows, file_labels = _read_csv(path, channel)
        if names is not None and features != names:
            raise JobInputError(
                f"channel {channel!r} file {path.name}: its header differs from {files[0].name}'s"
            )
        names = features
        rows.extend(file_rows)
        labels.extend(file_labels)
    if not rows or names is None:
        raise JobInputError(f"channel {channel!r} has a header but no rows")
    split = data.Split(np.asarray(rows, dtype=np.float64), np.asarray(labels, dtype=np.int64))
    return Channel(names, split, tuple(path.relative_to(root).as_posix() for path in files))


def read_channels() -> tuple[Channel, Channel]:
    train_channel = read_channel(training.TRAIN_CHANNEL)
    validation_channel = read_channel(training.VALIDATION_CHANNEL)
    if validation_channel.feature_names != train_channel.feature_names:
        raise JobInputError("channels 'train' and 'validation' name different features (or order)")
    for name, channel in (
        (training.TRAIN_CHANNEL, train_channel),
        (training.VALIDATION_CHANNEL, validation_channel),
    ):
        present = set(channel.split.labels.tolist())
        if present != {0, 1}:
            raise JobInputError(
                f"channel {name!r} holds only class {present.pop()} rows; both classes (0, 1) are needed"
            )
    return train_channel, validation_channel


# ---- checkpoints --------------------------------------------------------------------------------


class CheckpointStore:
    """Fitted candidates as ``candidate-{index}.joblib`` in the checkpoint directory.

    Each file holds the candidate's algorithm, hyper-parameters and seed beside the estimator; a file
    written for other values (an earlier job's, say) is not restored. Files are written beside the
    directory and renamed into it, so a synced checkpoint is never half-written.
    """

    def __init__(self, directory: Path, algorithm: str, seed: int) -> None:
        self.directory, self.algorithm, self.seed = directory, algorithm, seed
        self.restored: list[int] = []
        self.fitted: list[int] = []

    def _path(self, index: int) -> Path:
        return self.directory / f"candidate-{index}.joblib"

    def _key(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "seed": self.seed, "hyperparameters": dict(params)}

    def load(self, index: int, params: Mapping[str, Any]) -> Any | None:
        path = self._path(index)
        if not path.is_file():
            return None
        try:
            saved = joblib.load(path)
        except Exception as err:  # an unreadable checkpoint is refitted, and said so
            print(f"checkpoint: {path.name} is unreadable ({type(err).__name__}); fitting again", flush=True)
            return None
        if not isinstance(saved, dict) or saved.get("key") != self._key(params):
            print(f"checkpoint: {path.name} is for other hyper-parameters; fitting again", flush=True)
            return None
        self.restored.append(index)
        print(f"checkpoint: candidate {index} {dict(params)} restored from {path.name}", flush=True)
        return saved["estimator"]

    def save(self, index: int, params: Mapping[str, Any], estimator: Any) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".candidate-", dir=self.directory.parent)
        os.close(handle)
        joblib.dump({"key": self._key(params), "estimator": estimator}, temporary)
        os.replace(temporary, self._path(index))
        self.fitted.append(index)
        print(
            f"checkpoint: candidate {index} {dict(params)} fitted, saved to {self._path(index).name}",
            flush=True,
        )


# ---- the job ------------------------------------------------------------------------------------


def job_metrics(estimator: Any, train_split: data.Split, validation_split: data.Split) -> dict[str, float]:
    """The values behind :data:`shared.training.METRIC_NAMES`."""
    validation = train.classification_metrics(estimator, validation_split)
    return {
        training.METRIC_VALIDATION_ROC_AUC: validation["roc_auc"],
        training.METRIC_VALIDATION_LOG_LOSS: validation["log_loss"],
        training.METRIC_VALIDATION_RECALL: validation["recall"],
        training.METRIC_TRAIN_LOG_LOSS: train.classification_metrics(estimator, train_split)["log_loss"],
    }


def run(argv: Sequence[str]) -> dict[str, float]:
    """Train under the container contract; returns the printed metrics."""
    parameters = parse_hyperparameters(argv)
    model_dir = Path(os.environ.get("SM_MODEL_DIR", str(container_path(f"{CONTAINER_ROOT}/model"))))
    train_channel, validation_channel = read_channels()
    feature_names = train_channel.feature_names
    try:
        feature_schema = schema.build_schema(feature_names, train_channel.split.features.tolist())
    except ValueError as err:
        raise JobInputError(f"channel 'train': {err}") from None
    spec = candidate_spec(parameters)
    store = CheckpointStore(
        container_path(training.CHECKPOINT_LOCAL_PATH), parameters.algorithm, parameters.seed
    )
    fitted = train.fit_candidates(
        parameters.model_version, spec, train_channel.split, validation_channel.split, store
    )
    metrics_document = {
        **train.selection_metrics(fitted, parameters.seed),
        "validation_metrics": train.classification_metrics(fitted.estimator, validation_channel.split),
        "train_metrics": train.classification_metrics(fitted.estimator, train_channel.split),
        "n_train": len(train_channel.split),
        "n_validation": len(validation_channel.split),
        "class_names": list(data.CLASS_NAMES),
        "dataset": {
            "source": "SageMaker training channels",
            "channels": {
                training.TRAIN_CHANNEL: list(train_channel.files),
                training.VALIDATION_CHANNEL: list(validation_channel.files),
            },
            "target_column": training.TARGET_COLUMN,
        },
        "checkpoints": {"restored_candidates": store.restored, "fitted_candidates": store.fitted},
        "training_job": os.environ.get("TRAINING_JOB_NAME"),
        "trained_at": None,
    }
    members = train.model_members(
        fitted.estimator,
        feature_schema,
        metrics_document,
        train.baseline_document(fitted, feature_names, train_channel.split),
    )
    for name, payload in members.items():
        path = model_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    metrics = job_metrics(fitted.estimator, train_channel.split, validation_channel.split)
    for name in training.METRIC_NAMES:
        print(training.metric_line(name, metrics[name]), flush=True)
    return metrics


def write_failure(reason: str) -> None:
    path = container_path(f"{CONTAINER_ROOT}/output/failure")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reason[:MAX_FAILURE_CHARS], encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except JobInputError as err:
        print(f"training failed: {err}", file=sys.stderr, flush=True)
        write_failure(str(err))
        return 1
    except Exception as err:
        traceback.print_exc()
        write_failure(f"{type(err).__name__}: {err}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
