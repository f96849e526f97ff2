"""The prediction record every producer writes to the predictions table, and ground-truth feedback.

One item per prediction (real-time API, stream consumer, batch job):

| attribute | type | meaning |
|---|---|---|
| ``predictionId`` | S | partition key, a UUID returned to the caller |
| ``timestamp`` | S | sort key, ISO-8601 UTC (``2026-11-24T12:00:00.123Z``), sorts in time order |
| ``modelVersion`` | S | the version that answered (GSI ``by-model-version`` partition key) |
| ``variant`` | S | the production variant that answered (``ModelA`` / ``ModelB``) |
| ``source`` | S | ``api``, ``stream`` or ``batch`` |
| ``label``, ``probability`` | N | the prediction |
| ``latencyMs`` | N | endpoint round trip as the producer measured it |
| ``expirationTime`` | N | epoch seconds; DynamoDB TTL deletes the item after it |
| ``feedbackLabel``, ``feedbackAt`` | N, S | the observed outcome, once ``POST /feedback`` reports it |
| ``features`` | M | the request's feature values by name (the analytics history and its drift view) |

Runtime code (boto3, no CDK); the handlers of the inference and batch layers write with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

BY_MODEL_VERSION_INDEX = "by-model-version"
Source = Literal["api", "stream", "batch"]


class PredictionRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    prediction_id: str = Field(alias="predictionId", min_length=1)
    timestamp: str
    model_version: str = Field(alias="modelVersion")
    variant: str
    source: Source
    label: int
    probability: float = Field(ge=0.0, le=1.0)
    latency_ms: float = Field(alias="latencyMs", ge=0.0)
    expiration_time: int = Field(alias="expirationTime")
    feedback_label: int | None = Field(default=None, alias="feedbackLabel")
    feedback_at: str | None = Field(default=None, alias="feedbackAt")
    features: dict[str, float] | None = None

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item (numbers as Decimal, as the boto3 resource layer wants them)."""
        item = self.model_dump(by_alias=True, exclude_none=True)
        return {k: _to_decimal(v) for k, v in item.items()}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> PredictionRecord:
        return cls.model_validate({k: _from_decimal(v) for k, v in item.items()})


# DynamoDB numbers: magnitudes from 1E-130 to 9.99E+125 (request values are bounded above by the
# schema's maxima, but a valid value may be a subnormal such as 2.2e-313, which schemathesis sent):
# a smaller magnitude is stored as 0 instead of failing the write
DYNAMODB_SMALLEST_MAGNITUDE = 1e-130


def _to_decimal(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(0) if abs(value) < DYNAMODB_SMALLEST_MAGNITUDE else Decimal(str(value))
    if isinstance(value, dict):
        return {k: _to_decimal(v) for k, v in value.items()}
    return value


def _from_decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _from_decimal(v) for k, v in value.items()}
    return value


def features_by_name(row: object, names: Sequence[str]) -> dict[str, float]:
    """A validated row (an object by name or an array in schema order) as values by name."""
    if isinstance(row, Mapping):
        return {name: float(row[name]) for name in names}
    if isinstance(row, Sequence) and not isinstance(row, str | bytes):
        return {name: float(value) for name, value in zip(names, row, strict=True)}
    raise ValueError("a row is neither an object nor an array")


def timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: the sort key format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def expiration_time(moment: datetime, ttl_days: int) -> int:
    if ttl_days <= 0:
        raise ValueError("ttl_days must be positive")
    return int((moment + timedelta(days=ttl_days)).timestamp())


def build_records(
    rows: Sequence[object],
    prediction_ids: Sequence[str],
    predictions: Sequence[tuple[int, float]],
    *,
    model_version: str,
    variant: str,
    source: Source,
    at: datetime,
    ttl_days: int,
    latency_ms: float,
    feature_names: Sequence[str] | None,
) -> list[PredictionRecord]:
    """One record per validated row and its (label, probability), all at sort-key time ``at``."""
    return [
        PredictionRecord(
            prediction_id=prediction_id,
            timestamp=timestamp(at),
            model_version=model_version,
            variant=variant,
            source=source,
            label=label,
            probability=probability,
            latency_ms=latency_ms,
            expiration_time=expiration_time(at, ttl_days),
            features=features_by_name(row, feature_names) if feature_names is not None else None,
        )
        for prediction_id, (label, probability), row in zip(prediction_ids, predictions, rows, strict=True)
    ]


def invoke_and_record(
    runtime: Any,
    writer: Any,
    *,
    endpoint_name: str,
    rows: list[object],
    prediction_ids: list[str],
    source: Source,
    at: datetime,
    ttl_days: int,
    variant: str | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    feature_names: Sequence[str] | None = None,
) -> list[PredictionRecord]:
    """Invoke the endpoint with a batch of validated rows and put one record per row through ``writer``.

    ``writer`` has ``put_item(Item=...)``: a DynamoDB batch writer (it retries unprocessed items),
    or a collector the caller writes in one transaction; ``at`` is the records' sort-key time,
    which callers make deterministic where a retry must overwrite, not duplicate. With
    ``feature_names`` (the schema the rows were validated against) each record carries its row's
    feature values by name.

    Nothing reaches ``writer`` unless the endpoint answered and every record was built from its
    answer: the endpoint's errors propagate (``ClientError``, ``BotoCoreError`` for timeouts and
    connection failures) before any write, and an answer that does not match the request is a
    ``ValueError`` raised before the first ``put_item``.
    """
    request: dict[str, Any] = {
        "EndpointName": endpoint_name,
        "ContentType": "application/json",
        "Accept": "application/json",
        "Body": json.dumps({"instances": rows}).encode(),
    }
    if variant is not None:
        request["TargetVariant"] = variant
    started = monotonic()
    response = runtime.invoke_endpoint(**request)
    body = response["Body"].read()
    latency_ms = round((monotonic() - started) * 1000, 3)
    served_by = str(response.get("InvokedProductionVariant", variant or "unknown"))
    try:
        answer = json.loads(body)
        predictions = answer["predictions"]
        if len(predictions) != len(rows):
            raise ValueError(f"the endpoint answered {len(predictions)} rows for {len(rows)}")
        records = build_records(
            rows,
            prediction_ids,
            [(int(p["label"]), float(p["probability"])) for p in predictions],
            model_version=str(answer["model_version"]),
            variant=served_by,
            source=source,
            at=at,
            ttl_days=ttl_days,
            latency_ms=latency_ms,
            feature_names=feature_names,
        )
    except (KeyError, TypeError, ValueError) as err:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"the endpoint's answer does not fit the request: {err}") from None
    for record in records:
        writer.put_item(Item=record.to_item())
    return records


class FeedbackError(ValueError):
    """Feedback that cannot be recorded; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def record_feedback(
    table: Any, prediction_id: str, observed_label: int, *, now: datetime
) -> PredictionRecord:
    """Store the observed outcome next to the prediction (idempotent for the same label).

    404 for an unknown prediction, 409 when a different outcome was already recorded: ground
    truth is not silently rewritten.
    """
    found = table.query(
        KeyConditionExpression="predictionId = :id",
        ExpressionAttributeValues={":id": prediction_id},
        Limit=1,
        ConsistentRead=True,
    )["Items"]
    if not found:
        raise FeedbackError(f"no prediction {prediction_id} (it may have expired)", status=404)
    record = PredictionRecord.from_item(found[0])
    if record.feedback_label is not None:
        if record.feedback_label == observed_label:
            return record
        raise FeedbackError(
            f"prediction {prediction_id} already has the observed label {record.feedback_label}", status=409
        )
    try:
        updated = table.update_item(
            Key={"predictionId": record.prediction_id, "timestamp": record.timestamp},
            UpdateExpression="SET feedbackLabel = :label, feedbackAt = :at",
            ConditionExpression="attribute_exists(predictionId) AND attribute_not_exists(feedbackLabel)",
            ExpressionAttributeValues={":label": observed_label, ":at": timestamp(now)},
            ReturnValues="ALL_NEW",
        )
    except ClientError as err:
        if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
            raise FeedbackError(
                f"feedback for prediction {prediction_id} was recorded concurrently", 409
            ) from None
        raise
    return PredictionRecord.from_item(updated["Attributes"])
