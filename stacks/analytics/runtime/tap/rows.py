"""Stream records of the predictions table as history rows (the columns of ``shared.analytics``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from shared.analytics import RecordType
from shared.predictions import PredictionRecord

# DynamoDB's TTL deletes items as this service principal (userIdentity of the REMOVE record)
TTL_PRINCIPAL: Final = "dynamodb.amazonaws.com"


def is_ttl_removal(event_name: str | None, user_identity: Mapping[str, Any] | None) -> bool:
    identity = user_identity or {}
    return (
        event_name == "REMOVE"
        and identity.get("type") == "Service"
        and identity.get("principalId") == TTL_PRINCIPAL
    )


def record_type_of(
    event_name: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> RecordType:
    """What a stream record means for the history (TTL expiries are filtered before this)."""
    if event_name == "INSERT":
        return "prediction"
    if event_name == "REMOVE":
        return "removal"
    if new is not None and new.get("feedbackLabel") is not None and (old or {}).get("feedbackLabel") is None:
        return "feedback"
    return "revision"


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def history_row(
    image: Mapping[str, Any], *, event_id: str, record_type: RecordType, feature_names: Sequence[str]
) -> dict[str, Any]:
    """The history row of a predictions-table item (a deserialized stream image).

    Raises ``ValueError`` (pydantic's ``ValidationError`` is one) for an item that is not a
    prediction record. Features the item lacks are null (items written before features were
    stored); features beyond the schema are no columns and are dropped.
    """
    record = PredictionRecord.from_item(dict(image))
    features = record.features or {}
    return {
        "event_id": event_id,
        "record_type": record_type,
        "prediction_id": record.prediction_id,
        "predicted_at": record.timestamp,
        "model_version": record.model_version,
        "variant": record.variant,
        "source": record.source,
        "label": record.label,
        "probability": record.probability,
        "latency_ms": record.latency_ms,
        "feedback_label": record.feedback_label,
        "feedback_at": record.feedback_at,
        **{name: _number(features.get(name)) for name in feature_names},
    }
