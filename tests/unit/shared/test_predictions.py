"""Prediction records and ground-truth feedback against a moto predictions table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.predictions import FeedbackError, PredictionRecord, expiration_time, record_feedback, timestamp

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
