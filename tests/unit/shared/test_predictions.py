"""Prediction records and ground-truth feedback against a moto predictions table."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shared.predictions import (
    FeedbackError,
    PredictionRecord,
    expiration_time,
    invoke_and_record,
    record_feedback,
    timestamp,
)

NOW = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)


def _record(prediction_id: str = "p-1", label: int = 1) -> PredictionRecord:
    return PredictionRecord(
        prediction_id=prediction_id,
        timestamp=timestamp(NOW),
        model_version="v2",
        variant="ModelB",
        source="api",
        label=label,
        probability=0.87,
        latency_ms=12.5,
        expiration_time=expiration_time(NOW, 30),
    )


def test_timestamps_sort_and_ttl_is_epoch_seconds():
    assert timestamp(NOW) == "2026-11-24T12:00:00.123Z"
    assert expiration_time(NOW, 30) == int(datetime(2026, 12, 24, 12, 0, 0, 123456, tzinfo=UTC).timestamp())
    with pytest.raises(ValueError, match="positive"):
        expiration_time(NOW, 0)


def test_item_round_trip(predictions_table):
    predictions_table.put_item(Item=_record().to_item())
    (item,) = predictions_table.scan()["Items"]
    assert PredictionRecord.from_item(item) == _record()


def test_feedback_is_stored_next_to_the_prediction_and_is_idempotent(predictions_table):
    predictions_table.put_item(Item=_record().to_item())
    updated = record_feedback(predictions_table, "p-1", 1, now=NOW)
    assert updated.feedback_label == 1
    assert updated.feedback_at == "2026-11-24T12:00:00.123Z"
    assert record_feedback(predictions_table, "p-1", 1, now=NOW) == updated


def test_conflicting_or_orphan_feedback_is_refused(predictions_table):
    predictions_table.put_item(Item=_record().to_item())
    record_feedback(predictions_table, "p-1", 1, now=NOW)
    with pytest.raises(FeedbackError, match="already has the observed label 1") as conflict:
        record_feedback(predictions_table, "p-1", 0, now=NOW)
    assert conflict.value.status == 409
    with pytest.raises(FeedbackError, match="no prediction p-404") as missing:
        record_feedback(predictions_table, "p-404", 1, now=NOW)
    assert missing.value.status == 404


class Writer:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put_item(self, **request: Any) -> None:
        self.items.append(request["Item"])


class Endpoint:
    def __init__(self, answer: bytes | Exception) -> None:
        self.answer = answer

    def invoke_endpoint(self, **_: Any) -> dict[str, Any]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return {"Body": io.BytesIO(self.answer), "InvokedProductionVariant": "ModelB"}


def _invoke(answer: bytes | Exception, writer: Writer, rows: int = 2) -> list[PredictionRecord]:
    return invoke_and_record(
        Endpoint(answer),
        writer,
        endpoint_name="e",
        rows=[[1.0]] * rows,
        prediction_ids=[f"p-{n}" for n in range(rows)],
        source="api",
        at=NOW,
        ttl_days=30,
    )


def test_one_record_per_row_is_written_after_the_endpoint_answered():
    writer = Writer()
    answer = {"predictions": [{"label": 1, "probability": 0.9}, {"label": 0, "probability": 0.2}]}
    records = _invoke(json.dumps({**answer, "model_version": "v2"}).encode(), writer)
    assert [r.prediction_id for r in records] == ["p-0", "p-1"]
    assert {r.variant for r in records} == {"ModelB"}
    assert [item["predictionId"] for item in writer.items] == ["p-0", "p-1"]


@pytest.mark.parametrize(
    "answer",
    [
        ClientError({"Error": {"Code": "ModelError", "Message": "boom"}}, "InvokeEndpoint"),
        b"<html>not json</html>",
        json.dumps({"predictions": [{"label": 1, "probability": 0.9}], "model_version": "v2"}).encode(),
        json.dumps({"predictions": [{"label": 1, "probability": 0.9}] * 2}).encode(),
        json.dumps({"model_version": "v2"}).encode(),
        json.dumps(
            {
                "predictions": [{"label": 1, "probability": 0.9}, {"label": 1, "probability": 7}],
                "model_version": 2,
            }
        ).encode(),
        json.dumps({"predictions": [{"label": 1}, {"label": 0}], "model_version": "v2"}).encode(),
    ],
    ids=[
        "endpoint error",
        "not json",
        "too few",
        "no version",
        "no predictions",
        "bad probability",
        "no prob",
    ],
)
def test_nothing_is_written_unless_every_row_was_answered(answer):
    writer = Writer()
    with pytest.raises(ClientError if isinstance(answer, Exception) else ValueError):
        _invoke(answer, writer)
    assert writer.items == []


def test_a_subnormal_feature_value_is_stored_as_zero_not_refused_by_dynamodb():
    from boto3.dynamodb.types import TypeSerializer  # noqa: PLC0415

    record = _record().model_copy(
        update={"features": {"worst_fractal_dimension": 2.2250738585e-313, "a": 0.5}}
    )
    item = record.to_item()
    # boto3's DynamoDB number context (1E-130 .. 9.99E+125) serializes it; the subnormal raised before
    TypeSerializer().serialize(item["features"])
    assert item["features"] == {"worst_fractal_dimension": 0, "a": Decimal("0.5")}
