"""Feature schema of a model version: derivation, JSON round trip, request parsing and validation.

One copy of this file serves three places, so it imports only the Python standard library:

* training (``model.train``) derives the schema from the training split and writes it as
  ``schema.json`` into the model archive;
* the inference entry point (``model/inference.py``, shipped as ``code/inference.py``) loads it as
  its sibling file — the archive carries this exact file as ``code/schema.py`` — and validates every
  request inside the SageMaker scikit-learn container (Python 3.10, no project packages);
* the API Lambda can validate requests against ``schema.json`` without scikit-learn or numpy.

Keep the syntax Python 3.10 compatible (the container's interpreter).

Schema (``schema.json``)
    ``features``: one entry per model input, in the order the model consumes them: ``name`` (a
    snake_case identifier), ``type`` (always ``"number"``), ``observed_min``/``observed_max`` (the
    training split), ``minimum``/``maximum`` (the accepted range) and ``required`` (always true: the
    models have no imputation, so every feature must be sent).

    The accepted range widens the observed one by ``range_margin`` (default 0.5) times the observed
    span on each side: held-out rows of the data set reach up to 0.39 spans beyond the training range,
    so 0.5 accepts real data while rejecting values no measurement produces. A feature that was never
    negative in training is never accepted negative (all the measurements here are sizes, counts or
    ratios). A feature with zero observed span gets a margin of ``range_margin`` times
    ``max(|value|, 1)``.

Request shapes (JSON)
    Canonical: ``{"instances": [{"mean_radius": 14.1, ...}, ...]}`` — 1..N rows, each an object with
    every feature by name. Also accepted: rows as arrays of the feature values in schema order
    (``{"instances": [[14.1, ...], ...]}``, the SageMaker convention), and a single row as
    ``{"features": {"mean_radius": 14.1, ...}}``. Nothing else may appear at the top level.
    ``request_json_schema`` emits the draft-04 JSON Schema of exactly these shapes (the API Gateway
    request model); the row limit N (default 100) applies to the API only — the model server accepts
    any number of rows within its body size limit.

Validation messages name the row (0-based index into the request's rows) and the feature, and say
what is wrong: missing feature, unknown feature (with a close match when there is one), a value that
is not a number, a value that is NaN or infinite, or a value outside the accepted range.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

SCHEMA_FORMAT_VERSION = 1
DEFAULT_RANGE_MARGIN = 0.5
DEFAULT_MAX_ROWS = 100
# a request with many bad rows reports this many problems in full, then counts the rest
MAX_REPORTED_ERRORS = 20
_MAX_ECHO_CHARS = 40

JSON_SCHEMA_DRAFT_04 = "http://json-schema.org/draft-04/schema#"


class RequestError(ValueError):
    """The request cannot be served as sent: the client must change it (HTTP 400 unless overridden).

    ``message`` is safe to return to the caller (it names rows, features and the schema, nothing
    internal); ``errors`` holds the individual problems, at most ``MAX_REPORTED_ERRORS`` of them.
    """

    status_code = 400

    def __init__(self, message: str, errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.errors = list(errors)


@dataclass(frozen=True)
class FeatureSpec:
    """One model input: its name, type, observed training range and accepted range."""

    name: str
    type: str
    minimum: float
    maximum: float
    observed_min: float
    observed_max: float
    required: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "observed_min": self.observed_min,
            "observed_max": self.observed_max,
            "required": self.required,
        }


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered model inputs of one model version (see the module docstring for the rules)."""

    features: tuple[FeatureSpec, ...]
    range_margin: float
    format_version: int = SCHEMA_FORMAT_VERSION

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.features)

    @cached_property
    def _name_set(self) -> frozenset[str]:
        return frozenset(self.names)

    # ---- serialization -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "range_margin": self.range_margin,
            "feature_names": list(self.names),
            "features": [spec.to_dict() for spec in self.features],
        }

    def to_json(self) -> str:
        """Deterministic JSON text (same schema, same bytes)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        """Read a schema written by ``to_dict``; raises ``ValueError`` naming the broken part."""
        version = data.get("format_version")
        if version != SCHEMA_FORMAT_VERSION:
            raise ValueError(f"schema format_version {version!r} is not supported (expected 1)")
        raw_features = data.get("features")
        if not isinstance(raw_features, list) or not raw_features:
            raise ValueError("schema 'features' must be a non-empty list")
        specs = []
        for index, raw in enumerate(raw_features):
            try:
                spec = FeatureSpec(
                    name=str(raw["name"]),
                    type=str(raw["type"]),
                    minimum=float(raw["minimum"]),
                    maximum=float(raw["maximum"]),
                    observed_min=float(raw["observed_min"]),
                    observed_max=float(raw["observed_max"]),
                    required=bool(raw["required"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"schema feature {index} is malformed: {exc}") from None
            if spec.type != "number":
                raise ValueError(f"schema feature {spec.name!r} has unsupported type {spec.type!r}")
            if not spec.name.isidentifier():
                raise ValueError(f"schema feature name {spec.name!r} is not an identifier")
            if not spec.minimum <= spec.maximum:
                raise ValueError(f"schema feature {spec.name!r} has minimum > maximum")
            specs.append(spec)
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError("schema feature names must be unique")
        return cls(features=tuple(specs), range_margin=float(data.get("range_margin", 0.0)))

    @classmethod
    def from_json(cls, text: str) -> FeatureSchema:
        return cls.from_dict(json.loads(text))

    # ---- validation ----------------------------------------------------------------------------

    def validate_row(self, row: object) -> list[str]:
        """Problems of one row (an object keyed by feature name, or an array in schema order)."""
        if isinstance(row, Mapping):
            return self._validate_mapping(row)
        if isinstance(row, Sequence) and not isinstance(row, (str, bytes, bytearray)):
            return self._validate_sequence(row)
        return [
            f"row must be an object of feature values or an array of {len(self.features)} numbers "
            f"in schema order, got {_json_type(row)}"
        ]

    def validate_rows(self, rows: Sequence[object]) -> dict[int, list[str]]:
        """Problems per row index; rows without problems are absent (an empty dict: all valid)."""
        problems: dict[int, list[str]] = {}
        for index, row in enumerate(rows):
            errors = self.validate_row(row)
            if errors:
                problems[index] = errors
        return problems

    def to_vectors(self, rows: Sequence[object]) -> list[list[float]]:
        """Validated rows as float vectors in schema order; raises ``RequestError`` listing problems."""
        if not rows:
            raise RequestError("the request contains no rows; send at least one row of features")
        problems = self.validate_rows(rows)
        if problems:
            flat = [f"row {index}: {message}" for index, messages in problems.items() for message in messages]
            shown = flat[:MAX_REPORTED_ERRORS]
            more = len(flat) - len(shown)
            summary = "; ".join(shown) + (f"; and {more} more problem(s)" if more else "")
            raise RequestError(f"{len(problems)} of {len(rows)} row(s) are invalid: {summary}", shown)
        vectors = []
        for row in rows:
            if isinstance(row, Mapping):
                vectors.append([float(row[name]) for name in self.names])
            else:
                vectors.append([float(value) for value in cast("Sequence[float]", row)])
        return vectors

    def _validate_mapping(self, row: Mapping[Any, Any]) -> list[str]:
        errors = []
        for spec in self.features:
            if spec.name not in row:
                errors.append(f"missing feature '{spec.name}'")
        known = self._name_set
        unknown = sorted((key for key in row if key not in known), key=str)
        for key in unknown:
            errors.append(self._unknown_message(key))
        for spec in self.features:
            if spec.name in row:
                message = _value_problem(spec, row[spec.name])
                if message:
                    errors.append(message)
        return errors

    def _validate_sequence(self, row: Sequence[Any]) -> list[str]:
        expected = len(self.features)
        if len(row) != expected:
            names = self.names if expected <= 3 else (*self.names[:2], "...", self.names[-1])
            return [
                f"row has {len(row)} values, expected {expected} "
                f"(the features in schema order: {', '.join(names)})"
            ]
        return [
            message
            for spec, value in zip(self.features, row, strict=True)
            if (message := _value_problem(spec, value))
        ]

    def _unknown_message(self, key: object) -> str:
        shown = _echo(key)
        close = difflib.get_close_matches(key, self.names, n=1) if isinstance(key, str) else []
        hint = f" (did you mean '{close[0]}'?)" if close else " (not one of the schema's features)"
        return f"unknown feature {shown}{hint}"


def _value_problem(spec: FeatureSpec, value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = f" {_echo(value)}" if isinstance(value, (str, bool)) else ""
        return f"feature '{spec.name}' must be a number, got {_json_type(value)}{shown}"
    try:
        number = float(value)
    except OverflowError:
        return f"feature '{spec.name}' must be a finite number, got an integer too large to represent"
    if math.isnan(number):
        return f"feature '{spec.name}' must be a finite number, got NaN"
    if math.isinf(number):
        return f"feature '{spec.name}' must be a finite number, got {'-' if number < 0 else ''}Infinity"
    if number < spec.minimum or number > spec.maximum:
        return (
            f"feature '{spec.name}' = {number:g} is outside the accepted range "
            f"[{spec.minimum:g}, {spec.maximum:g}]"
        )
    return None


_JSON_TYPES: tuple[tuple[Any, str], ...] = (
    (bool, "boolean"),  # before int: bool is an int subclass
    ((int, float), "number"),
    (str, "string"),
    (Mapping, "object"),
    (Sequence, "array"),
)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    for kinds, name in _JSON_TYPES:
        if isinstance(value, kinds):
            return name
    return "a non-JSON value"


def _echo(value: object) -> str:
    """A short, quoted rendering of a client-sent value for an error message."""
    text = json.dumps(value) if isinstance(value, (str, bool, int, float)) else _json_type(value)
    return text if len(text) <= _MAX_ECHO_CHARS else text[: _MAX_ECHO_CHARS - 3] + "..."


# ---- derivation ---------------------------------------------------------------------------------


def build_schema(
    feature_names: Sequence[str],
    training_rows: Sequence[Sequence[float]],
    range_margin: float = DEFAULT_RANGE_MARGIN,
) -> FeatureSchema:
    """Derive the schema from the training rows (each in ``feature_names`` order)."""
    if not training_rows:
        raise ValueError("cannot derive a schema from zero training rows")
    if range_margin < 0:
        raise ValueError("range_margin must be >= 0")
    specs = []
    for column, name in enumerate(feature_names):
        if not name.isidentifier():
            raise ValueError(f"feature name {name!r} is not an identifier")
        values = [float(row[column]) for row in training_rows]
        if not all(math.isfinite(value) for value in values):
            raise ValueError(f"training column {name!r} contains NaN or infinite values")
        low, high = min(values), max(values)
        span = high - low if high > low else max(abs(low), 1.0)
        minimum = low - range_margin * span
        if low >= 0:
            minimum = max(minimum, 0.0)
        specs.append(
            FeatureSpec(
                name=name,
                type="number",
                minimum=minimum,
                maximum=high + range_margin * span,
                observed_min=low,
                observed_max=high,
            )
        )
    if len({spec.name for spec in specs}) != len(specs):
        raise ValueError("feature names must be unique")
    return FeatureSchema(features=tuple(specs), range_margin=range_margin)


# ---- request shapes -----------------------------------------------------------------------------


MAX_JSON_DEPTH = 32


def _refuse_constant(name: str) -> Any:
    raise RequestError(f"the body is not valid JSON: {name} is not a number in JSON; send finite numbers")


def _too_deep(max_depth: int) -> RequestError:
    return RequestError(
        f"the body is not accepted: arrays and objects are nested more than {max_depth} levels deep"
    )


def nesting_exceeds(document: object, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether the lists and dicts of a parsed document nest deeper than ``max_depth`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)] if isinstance(document, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def parse_json(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> object:
    """The JSON document of untrusted text (a request body, a stream record, a batch row), strictly.

    The one parser of everything that comes from outside (the API function, the stream consumer,
    the batch job, the model server and the local API Gateway use it). ``RequestError`` names the
    problem for text that is not UTF-8 or not JSON, for ``NaN``/``Infinity`` (Python's parser
    accepts them, JSON has no such numbers), and for arrays and objects nested more than
    ``max_depth`` levels (no request shape needs more than 4). ``json.loads`` recurses once per
    level: 50,000 levels (100 KB) raise ``RecursionError``, and a document just under the
    interpreter's limit parses but breaks the next recursive step (schema validation, an error
    message that echoes a value), so the depth of what did parse is checked without recursion
    (skipped when the text has fewer opening brackets than the limit).
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as err:
            raise RequestError(f"the body is not valid UTF-8 text (byte {err.start})") from None
    else:
        text = data
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except RequestError:
        raise
    except json.JSONDecodeError as err:
        raise RequestError(
            f"the body is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
        ) from None
    except RecursionError:
        raise _too_deep(max_depth) from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise RequestError(f"the body is not valid JSON: {err}") from None
    if text.count("[") + text.count("{") > max_depth and nesting_exceeds(document, max_depth):
        raise _too_deep(max_depth)
    return document


def rows_from_document(document: object) -> list[object]:
    """The rows of a parsed JSON request body (canonical and alternative shapes, see the docstring).

    Only the envelope is checked here; ``FeatureSchema.to_vectors`` checks the rows themselves.
    """
    usage = (
        'send {"instances": [{feature: number, ...}, ...]} (rows may also be arrays in schema order) '
        'or {"features": {feature: number, ...}}'
    )
    if not isinstance(document, Mapping):
        raise RequestError(f"the JSON body must be an object, got {_json_type(document)}; {usage}")
    keys = set(document)
    if keys == {"instances"}:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise RequestError(f"'instances' must be an array of rows, got {_json_type(instances)}; {usage}")
        if not instances:
            raise RequestError(f"'instances' is empty; {usage}")
        return list(instances)
    if keys == {"features"}:
        features = document["features"]
        if not isinstance(features, Mapping):
            raise RequestError(f"'features' must be an object, got {_json_type(features)}; {usage}")
        return [features]
    unexpected = sorted(str(key) for key in keys - {"instances", "features"})
    if unexpected:
        shown = ", ".join(_echo(key) for key in unexpected[:5])
        raise RequestError(f"unexpected top-level field(s) {shown}; {usage}")
    raise RequestError(f"the body must contain exactly one of 'instances' or 'features'; {usage}")


def feature_names_of_request_schema(document: Mapping[str, Any]) -> tuple[str, ...]:
    """The feature names, in schema order, of a request schema ``request_json_schema`` wrote.

    The served request schema is the one copy of the feature list the deployed layers carry
    (``stacks/inference/request-schema.json``); the analytics layer derives its columns from it.
    """
    try:
        single = next(shape for shape in document["oneOf"] if "features" in shape["properties"])
        names = single["properties"]["features"]["required"]
    except (KeyError, StopIteration, TypeError) as err:
        raise ValueError(f"not a request schema of request_json_schema: {err!r}") from None
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError("the request schema names no features")
    return tuple(names)


def request_json_schema(schema: FeatureSchema, max_rows: int = DEFAULT_MAX_ROWS) -> dict[str, Any]:
    """Draft-04 JSON Schema of a request body (API Gateway request models use draft 04).

    Accepts exactly the shapes ``rows_from_document`` accepts, with 1..``max_rows`` rows, and the
    same types and ranges as ``FeatureSchema.validate_row``. References are inlined (no ``$ref``).
    """
    if max_rows < 1:
        raise ValueError("max_rows must be >= 1")

    def number(spec: FeatureSpec) -> dict[str, Any]:
        return {"type": "number", "minimum": spec.minimum, "maximum": spec.maximum}

    row_object = {
        "type": "object",
        "properties": {spec.name: number(spec) for spec in schema.features},
        "required": list(schema.names),
        "additionalProperties": False,
    }
    row_array = {
        "type": "array",
        "minItems": len(schema.features),
        "maxItems": len(schema.features),
        "items": [number(spec) for spec in schema.features],
        "additionalItems": False,
    }
    return {
        "$schema": JSON_SCHEMA_DRAFT_04,
        "title": "PredictionRequest",
        "description": (
            'Canonical: {"instances": [{feature: number, ...}]}; rows may be arrays in schema order; '
            'a single row may be sent as {"features": {...}}.'
        ),
        "type": "object",
        "oneOf": [
            {
                "properties": {
                    "instances": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": max_rows,
                        "items": {"anyOf": [row_object, row_array]},
                    }
                },
                "required": ["instances"],
                "additionalProperties": False,
            },
            {
                "properties": {"features": row_object},
                "required": ["features"],
                "additionalProperties": False,
            },
        ],
    }
