"""The analytics tap: the predictions table's stream records → history rows → Firehose.

Event source mapping with ``ReportBatchItemFailures`` and bisect-on-error. Records are taken in
shard order:

- a ``REMOVE`` by DynamoDB's TTL (``userIdentity`` of the TTL service principal) is skipped: an
  expiry never touches the history;
- an ``INSERT`` is a ``prediction`` row, a ``MODIFY`` that adds feedback a ``feedback`` row (the
  whole item, so accuracy is one query), any other change a ``revision``, another ``REMOVE`` a
  ``removal`` (its old image);
- a record that is no prediction item (a poison record) ends the batch there: the rows before it
  are delivered, it is reported as the batch's first failure, so Lambda retries from it,
  bisects, and after its retries sends it to the on-failure queue, while every neighbour after
  it is delivered by the next invocation (and none twice).

Rows go to the delivery stream with ``PutRecordBatch`` (500 a call); entries Firehose refuses
(throttling) are retried with backoff, and a row still refused fails its record the same way.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from stacks.analytics.runtime.tap.rows import history_row, is_ttl_removal, record_type_of

SERVICE = "analytics-tap"
MAX_BATCH_RECORDS = 500  # PutRecordBatch's limit
PUT_ATTEMPTS = 4
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=("boto3", "botocore"))
metrics = Metrics(service=SERVICE)


class TapSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    delivery_stream_name: str = Field(min_length=1)
    feature_names: tuple[str, ...] = Field(min_length=1)

    @classmethod
    def from_environment(cls) -> TapSettings:
        return cls(
            delivery_stream_name=os.environ["DELIVERY_STREAM_NAME"],
            feature_names=tuple(n for n in os.environ["FEATURE_NAMES"].split(",") if n),
        )


class PoisonRecordError(ValueError):
    """A stream record that is no prediction item: it can never become a history row."""


@cache
def _firehose() -> Any:
    return boto3.client("firehose")


def convert(record: DynamoDBRecord, feature_names: Sequence[str]) -> dict[str, Any] | None:
    """The record's history row; ``None`` for a TTL expiry. Raises ``PoisonRecordError``."""
    raw = record.raw_event
    event_name = raw.get("eventName")
    if is_ttl_removal(event_name, raw.get("userIdentity")):
        return None
    if event_name not in {"INSERT", "MODIFY", "REMOVE"}:
        raise PoisonRecordError(f"unknown event {event_name!r}")
    try:
        change = record.dynamodb
        if change is None:
            raise PoisonRecordError("the record carries no change")
        new, old = change.new_image, change.old_image
        image = old if event_name == "REMOVE" else new
        if not image:
            raise PoisonRecordError("the record carries no item image (stream view type?)")
        return history_row(
            image,
            event_id=str(raw.get("eventID", "")),
            record_type=record_type_of(event_name, old, new),
            feature_names=feature_names,
        )
    except PoisonRecordError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as err:  # ValidationError is a ValueError
        raise PoisonRecordError(f"not a prediction item: {type(err).__name__}") from None


def deliver(
    rows: list[tuple[str, dict[str, Any]]],
    stream_name: str,
    *,
    client: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """Put the rows in order; the sequence number of the first row Firehose would not take, if any."""
    firehose = client or _firehose()
    for start in range(0, len(rows), MAX_BATCH_RECORDS):
        pending = rows[start : start + MAX_BATCH_RECORDS]
        for attempt in range(PUT_ATTEMPTS):
            response = firehose.put_record_batch(
                DeliveryStreamName=stream_name,
                Records=[
                    {"Data": (json.dumps(row, separators=(",", ":")) + "\n").encode()} for _, row in pending
                ],
            )
            if not response.get("FailedPutCount"):
                break
            pending = [
                entry
                for entry, result in zip(pending, response["RequestResponses"], strict=True)
                if result.get("ErrorCode")
            ]
            if attempt < PUT_ATTEMPTS - 1:
                sleep(0.2 * 2**attempt)
        else:
            metrics.add_metric(name="RowsRefused", unit=MetricUnit.Count, value=len(pending))
            return pending[0][0]
    return None


def process(event: dict[str, Any], settings: TapSettings, *, client: Any = None) -> dict[str, Any]:
    """The partial batch response for one invocation's records (see the module docstring)."""
    rows: list[tuple[str, dict[str, Any]]] = []
    failed: str | None = None
    skipped = 0
    for raw in event.get("Records", []):
        record = DynamoDBRecord(raw)
        sequence = str((raw.get("dynamodb") or {}).get("SequenceNumber", ""))
        try:
            row = convert(record, settings.feature_names)
        except PoisonRecordError as err:
            metrics.add_metric(name="PoisonRecords", unit=MetricUnit.Count, value=1)
            logger.warning("poison stream record", extra={"sequenceNumber": sequence, "reason": str(err)})
            failed = sequence
            break
        if row is None:
            skipped += 1
            continue
        rows.append((sequence, row))
    refused = deliver(rows, settings.delivery_stream_name, client=client) if rows else None
    first_failure = refused or failed
    metrics.add_metric(name="HistoryRows", unit=MetricUnit.Count, value=len(rows))
    metrics.add_metric(name="TtlRemovalsSkipped", unit=MetricUnit.Count, value=skipped)
    return {"batchItemFailures": [{"itemIdentifier": first_failure}] if first_failure else []}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process(event, TapSettings.from_environment())
