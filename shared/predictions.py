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

Runtime code (boto3, no CDK); the handlers of the inference and batch layers write with it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

BY_MODEL_VERSION_INDEX = "by-model-version"


class PredictionRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    prediction_id: str = Field(alias="predictionId", min_length=1)
    timestamp: str
    model_version: str = Field(alias="modelVersion")
    variant: str
    source: Literal["api", "stream", "batch"]
    label: int
    probability: float = Field(ge=0.0, le=1.0)
    latency_ms: float = Field(alias="latencyMs", ge=0.0)
    expiration_time: int = Field(alias="expirationTime")
    feedback_label: int | None = Field(default=None, alias="feedbackLabel")
    feedback_at: str | None = Field(default=None, alias="feedbackAt")

    def to_item(self) -> dict[str, Any]:
        """The DynamoDB item (numbers as Decimal, as the boto3 resource layer wants them)."""
        item = self.model_dump(by_alias=True, exclude_none=True)
        return {k: Decimal(str(v)) if isinstance(v, float) else v for k, v in item.items()}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> PredictionRecord:
        return cls.model_validate({k: float(v) if isinstance(v, Decimal) else v for k, v in item.items()})


def timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: the sort key format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def expiration_time(moment: datetime, ttl_days: int) -> int:
    if ttl_days <= 0:
        raise ValueError("ttl_days must be positive")
    return int((moment + timedelta(days=ttl_days)).timestamp())


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
