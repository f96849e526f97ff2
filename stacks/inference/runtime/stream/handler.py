"""Kinesis consumer (event source mapping with ``ReportBatchItemFailures``).

Each record is one queued request ``{"predictionIds": [...], "instances": [...], "requestedAt": ...}``.
Records are processed one by one; a record that fails is reported in ``batchItemFailures`` so
only it (and what follows it in its shard) is retried, bisected and finally sent to the
on-failure destination by the event source mapping, while its neighbours are not lost.

A poison record (not a queued request, ids missing or repeated, a time without a zone, rows the
schema refuses) fails alone and is counted in the ``PoisonRecords`` metric; an upstream failure
fails its record too, which the event source mapping retries.

Idempotent: a replayed record whose predictions are stored already is skipped, and the records
are written under the request's own time, so even a replay racing its first run overwrites the
same items instead of adding new ones.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from model.schema import RequestError, parse_json
from shared import telemetry
from stacks.inference.runtime.api import service as prediction_service

SERVICE = telemetry.SERVICE_NAMES["stream"]
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=telemetry.TRACED_MODULES)
metrics = Metrics(service=SERVICE, namespace=telemetry.NAMESPACE)
processor = BatchProcessor(event_type=EventType.KinesisDataStreams)


class PoisonRecordError(ValueError):
    """A record that can never succeed: reported as failed, left to the on-failure destination."""


class QueuedRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    prediction_ids: list[str] = Field(alias="predictionIds", min_length=1)
    instances: list[object] = Field(min_length=1)
    requested_at: AwareDatetime = Field(alias="requestedAt")


def parse(data: bytes) -> QueuedRequest:
    try:
        document = parse_json(data)
    except RequestError as err:
        raise PoisonRecordError(f"not a queued prediction request: {err.message}") from None
    try:
        request = QueuedRequest.model_validate(document)
    except ValidationError as err:
        raise PoisonRecordError(
            f"not a queued prediction request: {err.errors(include_input=False)}"
        ) from None
    if len(request.prediction_ids) != len(request.instances):
        raise PoisonRecordError("predictionIds and instances differ in length")
    if len(set(request.prediction_ids)) != len(request.prediction_ids):
        raise PoisonRecordError("predictionIds are not unique")
    return request


def predict(record: KinesisStreamRecord) -> None:
    service = prediction_service.current()
    request = parse(record.kinesis.data_as_bytes())
    if service.get(request.prediction_ids[-1]) is not None:
        metrics.add_metric(name=telemetry.REPLAYS_SKIPPED, unit=MetricUnit.Count, value=1)
        logger.info("already predicted; replay skipped", extra={"predictionId": request.prediction_ids[0]})
        return
    try:
        rows = service.rows({"instances": request.instances})
    except RequestError as err:
        raise PoisonRecordError(err.message) from None
    service.predict_rows(rows, request.prediction_ids, variant=None, source="stream", at=request.requested_at)


def process(record: KinesisStreamRecord) -> None:
    try:
        predict(record)
    except PoisonRecordError:
        metrics.add_metric(name=telemetry.POISON_RECORDS, unit=MetricUnit.Count, value=1)
        raise


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    received = len(event.get("Records", []))
    metrics.add_metric(name=telemetry.RECORDS_RECEIVED, unit=MetricUnit.Count, value=received)
    response = process_partial_response(
        event=event, record_handler=process, processor=processor, context=context
    )
    failed = len(response["batchItemFailures"])
    metrics.add_metric(name=telemetry.RECORDS_FAILED, unit=MetricUnit.Count, value=failed)
    return response
