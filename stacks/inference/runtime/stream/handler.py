"""Kinesis consumer (event source mapping with ``ReportBatchItemFailures``).

Each record is one queued request ``{"predictionIds": [...], "instances": [...], "requestedAt": ...}``.
Records are processed one by one; a record that fails is reported in ``batchItemFailures`` so
only it (and what follows it in its shard) is retried, bisected and finally sent to the
on-failure destination by the event source mapping, while its neighbours are not lost.

Idempotent: a replayed record whose predictions are stored already is skipped, and the records
are written under the request's own time, so even a replay racing its first run overwrites the
same items instead of adding new ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.schema import RequestError
from stacks.inference.runtime.api import service as prediction_service

logger = Logger(service="ml-pipeline-stream")
processor = BatchProcessor(event_type=EventType.KinesisDataStreams)


class PoisonRecordError(ValueError):
    """A record that can never succeed: reported as failed, left to the on-failure destination."""


class QueuedRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    prediction_ids: list[str] = Field(alias="predictionIds", min_length=1)
    instances: list[object] = Field(min_length=1)
    requested_at: str = Field(alias="requestedAt")


def parse(data: bytes) -> QueuedRequest:
    try:
        request = QueuedRequest.model_validate_json(data)
    except ValidationError as err:
        raise PoisonRecordError(
            f"not a queued prediction request: {err.errors(include_input=False)}"
        ) from None
    if len(request.prediction_ids) != len(request.instances):
        raise PoisonRecordError("predictionIds and instances differ in length")
    return request


def process(record: KinesisStreamRecord) -> None:
    service = prediction_service.current()
    request = parse(record.kinesis.data_as_bytes())
    if service.get(request.prediction_ids[-1]) is not None:
        logger.info("already predicted; replay skipped", extra={"predictionId": request.prediction_ids[0]})
        return
    try:
        rows = service.rows({"instances": request.instances})
    except RequestError as err:
        raise PoisonRecordError(err.message) from None
    at = datetime.fromisoformat(request.requested_at.replace("Z", "+00:00"))
    service.predict_rows(rows, request.prediction_ids, variant=None, source="stream", at=at)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=process, processor=processor, context=context)
