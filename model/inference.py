"""SageMaker scikit-learn inference entry point (``code/inference.py`` in every model archive).

The SageMaker scikit-learn container (image ``1.4-2``: Python 3.10, scikit-learn 1.4.2) extracts
``model.tar.gz`` into ``/opt/ml/model``, imports ``code/inference.py`` as the top-level module
``inference`` and calls, per request::

    model = model_fn("/opt/ml/model")                       # once, at start-up
    rows = input_fn(request_body, request_content_type)    # parse the body
    prediction = predict_fn(rows, model)                    # validate against schema.json, predict
    body, content_type = output_fn(prediction, accept)      # serialize

The project's model server (``model.server``) calls the same four functions of the same file, so a
model behaves alike locally and on SageMaker.

Self-contained by design: this file imports only the standard library, numpy and joblib (joblib
unpickles the scikit-learn estimator), plus its sibling ``schema.py`` — the archive ships
``model/schema.py`` unchanged as ``code/schema.py``, and this module loads it by file path next to
itself, which works identically in the package (``model/``) and in the container's ``code/``
directory, whatever is on ``sys.path``. Keep the syntax Python 3.10 compatible. (In the package this
makes a second, private instance of ``model.schema``: catch ``inference.RequestError``, the class the
handlers raise, rather than ``model.schema.RequestError``.)

Requests
    ``application/json``: the shapes documented in ``schema.py`` — canonical
    ``{"instances": [{feature: number, ...}, ...]}``; rows as arrays in schema order; or a single
    ``{"features": {...}}``. ``text/csv``: one row per line, the feature values in schema order, no
    header; or a first line naming the features (every cell an identifier that is not a number), in
    which case the columns may come in any order. Row numbers in error messages are 0-based and count
    data rows only. A ``charset`` parameter other than UTF-8 is not supported.

Responses
    ``application/json`` only (``Accept`` absent, ``*/*``, ``application/*`` or ``application/json``)::

        {"predictions": [{"label": 1, "probability": 0.97, "probabilities": [0.03, 0.97]}, ...],
         "model_version": "v2"}

    ``label`` is the predicted class (``1 = malignant``), ``probability`` the probability of the
    positive class, ``probabilities`` one per class in label order; ``model_version`` comes from
    ``metrics.json``.

Errors
    Client errors are ``ValueError`` subclasses with a ``status_code`` and a message safe to return:
    ``RequestError`` (400, payload rejected by the schema; names row, feature and reason),
    ``UnsupportedContentTypeError`` (415) and ``UnsupportedAcceptError`` (406). The project's server
    maps them to those statuses; the SageMaker container reports an exception raised by a handler
    function as an error response carrying its message.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

JSON_CONTENT_TYPE = "application/json"
CSV_CONTENT_TYPE = "text/csv"
_ACCEPT_JSON = frozenset({JSON_CONTENT_TYPE, "application/*", "*/*"})
_MAX_ECHO_CHARS = 60


def _load_sibling(file_name: str) -> ModuleType:
    """Import the file ``file_name`` next to this one under a name unique to its path."""
    path = Path(__file__).resolve().with_name(file_name)
    digest = hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:16]
    name = f"_mlpipeline_{path.stem}_{digest}"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file_name} next to {Path(__file__).name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module through sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


if TYPE_CHECKING:
    from . import schema as feature_schema
else:
    feature_schema = _load_sibling("schema.py")

RequestError = feature_schema.RequestError


class UnsupportedContentTypeError(RequestError):
    """The request's Content-Type is not one this model reads (HTTP 415)."""

    status_code = 415


class UnsupportedAcceptError(RequestError):
    """The request's Accept excludes every type this model writes (HTTP 406)."""

    status_code = 406


class ModelLoadError(RuntimeError):
    """The model directory is incomplete or inconsistent (a deployment error, not a request error)."""


@dataclass(frozen=True)
class LoadedModel:
    """What ``model_fn`` returns: the estimator and the facts needed to validate and label."""

    estimator: Any
    schema: feature_schema.FeatureSchema
    model_version: str
    class_labels: tuple[int, ...]
    positive_column: int


def model_fn(model_dir: str) -> LoadedModel:
    """Load ``model.joblib``, ``schema.json`` and ``metrics.json`` from the extracted archive."""
    root = Path(model_dir)
    try:
        metrics = json.loads((root / "metrics.json").read_text(encoding="utf-8"))
        schema = feature_schema.FeatureSchema.from_json((root / "schema.json").read_text(encoding="utf-8"))
        estimator = joblib.load(root / "model.joblib")
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model directory {root} lacks {Path(str(exc.filename)).name}") from exc
    except ValueError as exc:
        raise ModelLoadError(f"model directory {root} holds an unreadable file: {exc}") from exc
    version = metrics.get("model_version")
    if not isinstance(version, str) or not version:
        raise ModelLoadError("metrics.json has no model_version")
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features != len(schema.features):
        raise ModelLoadError(
            f"the estimator takes {n_features} features, schema.json lists {len(schema.features)}"
        )
    labels = tuple(int(label) for label in estimator.classes_)
    positive = metrics.get("positive_class")
    if positive not in labels:
        raise ModelLoadError(f"metrics.json positive_class {positive!r} is not one of the classes {labels}")
    return LoadedModel(
        estimator=estimator,
        schema=schema,
        model_version=version,
        class_labels=labels,
        positive_column=labels.index(positive),
    )


def input_fn(request_body: bytes | str, request_content_type: str | None) -> list[object]:
    """Parse a JSON or CSV body into rows (objects by feature name, or arrays in schema order).

    Only the envelope is checked here (the container gives ``input_fn`` no model); ``predict_fn``
    validates the rows against the model's schema.
    """
    media_type = _media_type(request_content_type)
    if media_type not in (JSON_CONTENT_TYPE, CSV_CONTENT_TYPE):
        shown = _echo(request_content_type) if request_content_type else "none"
        raise UnsupportedContentTypeError(
            f"unsupported Content-Type {shown}; send {JSON_CONTENT_TYPE} or {CSV_CONTENT_TYPE}"
        )
    text = _decode(request_body)
    if not text.strip():
        raise RequestError("the request body is empty; send at least one row of features")
    if media_type == JSON_CONTENT_TYPE:
        return _rows_from_json(text)
    return _rows_from_csv(text)


def predict_fn(input_data: list[object], model: LoadedModel) -> dict[str, Any]:
    """Validate the rows against the schema and predict; raises ``RequestError`` for bad rows."""
    vectors = model.schema.to_vectors(input_data)
    matrix = np.asarray(vectors, dtype=np.float64)
    probabilities = np.asarray(model.estimator.predict_proba(matrix), dtype=np.float64)
    winners = probabilities.argmax(axis=1)
    predictions = [
        {
            "label": model.class_labels[int(winner)],
            "probability": float(row[model.positive_column]),
            "probabilities": [float(value) for value in row],
        }
        for winner, row in zip(winners, probabilities, strict=True)
    ]
    return {"predictions": predictions, "model_version": model.model_version}


def output_fn(prediction: dict[str, Any], accept: str | None) -> tuple[str, str]:
    """Serialize as JSON; returns ``(body, content_type)`` as the container expects."""
    content_type = _negotiate(accept)
    return json.dumps(prediction, allow_nan=False, separators=(",", ":")), content_type


# ---- helpers ------------------------------------------------------------------------------------


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _negotiate(accept: str | None) -> str:
    if accept is None or not accept.strip():
        return JSON_CONTENT_TYPE
    for part in accept.split(","):
        media, *params = part.split(";")
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and media.strip().lower() in _ACCEPT_JSON:
            return JSON_CONTENT_TYPE
    raise UnsupportedAcceptError(
        f"cannot produce Accept {_echo(accept)}; this model returns {JSON_CONTENT_TYPE}"
    )


def _decode(body: bytes | str) -> str:
    if isinstance(body, str):
        return body
    try:
        return bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RequestError("the request body is not valid UTF-8 text") from None


def _rows_from_json(text: str) -> list[object]:
    return feature_schema.rows_from_document(feature_schema.parse_json(text))


def _rows_from_csv(text: str) -> list[object]:
    try:
        lines = [
            [cell.strip() for cell in line]
            for line in csv.reader(io.StringIO(text))
            if any(cell.strip() for cell in line)
        ]
    except csv.Error as exc:
        raise RequestError(f"the CSV body could not be parsed: {exc}") from None
    if not lines:
        raise RequestError("the CSV body has no rows; send one row of comma-separated numbers per line")
    if not all(_is_header_cell(cell) for cell in lines[0]):
        return [[_csv_value(cell) for cell in line] for line in lines]
    header, data = lines[0], lines[1:]
    if not data:
        raise RequestError("the CSV body has a header line but no data rows")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise RequestError(f"the CSV header repeats {', '.join(_echo(name) for name in duplicates[:5])}")
    rows: list[object] = []
    for index, line in enumerate(data):
        if len(line) != len(header):
            raise RequestError(
                f"CSV row {index} has {len(line)} values but the header names {len(header)} columns"
            )
        rows.append({name: _csv_value(cell) for name, cell in zip(header, line, strict=True)})
    return rows


def _is_header_cell(cell: str) -> bool:
    if not cell.isidentifier():
        return False
    try:
        float(cell)  # "nan", "inf" and "infinity" are identifiers and numbers
    except ValueError:
        return True
    return False


def _csv_value(cell: str) -> float | str | None:
    if not cell:
        return None
    try:
        return float(cell)
    except ValueError:
        return cell


def _echo(value: str) -> str:
    text = json.dumps(value)
    return text if len(text) <= _MAX_ECHO_CHARS else text[: _MAX_ECHO_CHARS - 3] + "..."
