"""Prediction logic behind the REST API, free of Lambda and HTTP so it is tested on its own.

- ``predict``: validate rows against the champion's feature schema, answer from the answer cache
  (``answer_cache``: the same rows, variant and champion, computed since the latest verified
  deployment) or invoke the endpoint (with an optional ``TargetVariant``), store each prediction
  with its TTL (cached answers too: every answer has its own prediction ids to read back and
  give feedback on), answer with ids, labels, probabilities, the model version and the variant;
- ``enqueue``: validate, put the request on the Kinesis stream for the stream consumer, answer
  with the prediction id to read back later;
- ``get``: one stored prediction; ``feedback``: the observed outcome next to it.

The active version and its schema are cached for ``version_cache_seconds``, so a rollback takes
effect within that time without a call to Parameter Store on every request.

Failures: a request the service refuses is a ``RequestError`` (4xx, message for the caller); a
dependency that fails after botocore's bounded retries is an ``UpstreamError`` carrying the HTTP
status the API answers with: 502 (the model failed or answered nonsense, or any other error),
503 (throttled or unavailable; ``UpstreamBusyError``, with a Retry-After), 504 (timed out;
``UpstreamTimeoutError``). Predictions are written after the endpoint answered, all rows of a request
in one DynamoDB transaction: a failure never leaves part of a request stored.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError
from pydantic import BaseModel, ConfigDict, Field

from mlpipe.registry import champion_schema
from model.schema import FeatureSchema, RequestError, parse_json, rows_from_document
from shared import answer_cache as cache_names
from shared.predictions import (
    PredictionRecord,
    Source,
    build_records,
    invoke_and_record,
    record_feedback,
    timestamp,
)
from stacks.inference.runtime import telemetry
from stacks.inference.runtime.api.answer_cache import AnswerCache, CachedAnswer, cache_key

VARIANTS = ("ModelA", "ModelB")
MAX_ROWS = 100  # also the most items one DynamoDB transaction takes
# 100 rows of the 30 features fit as arrays (about 25 KB); as objects keyed by feature name a row
# is about 0.8 KB, so about 80 rows fit
# 100 rows of named features are ~80 KB; 128 KiB admits every request the API's model admits
MAX_BODY_BYTES = 128 * 1024
RETRY_AFTER_SECONDS = 1

# Bounded retries with backoff (botocore "standard" mode: exponential backoff with full jitter,
# at most 1 s after the first failed attempt; ``total_max_attempts`` counts the first attempt,
# the legacy ``max_attempts`` would not) and timeouts sized for the API function's 10 s timeout
# (shared.config). One request, every call failing as slowly as allowed:
#   endpoint: 2 attempts x (0.5 s connect + 1.5 s read) + <= 1 s backoff = 5 s
#   table:    2 attempts x (0.5 s connect + 1.0 s read) + <= 1 s backoff = 4 s  -> 9 s < 10 s.
# The model answers in milliseconds, so 1.5 s of read time is a dead endpoint, not a slow one;
# the stores (DynamoDB, SSM, S3, Kinesis) answer in tens of milliseconds. (A request that also
# refreshes the cached schema makes two more store calls; should those fail as slowly too, the
# function's timeout ends the request.)
ENDPOINT_CLIENT_CONFIG = Config(
    connect_timeout=0.5, read_timeout=1.5, retries={"mode": "standard", "total_max_attempts": 2}
)
STORE_CLIENT_CONFIG = Config(
    connect_timeout=0.5, read_timeout=1.0, retries={"mode": "standard", "total_max_attempts": 2}
)


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    endpoint_name: str = Field(alias="ENDPOINT_NAME", min_length=1)
    model_bucket: str = Field(alias="MODEL_BUCKET", min_length=3)
    parameters_path: str = Field(alias="MODEL_PARAMETERS_PATH", pattern=r"^/")
    table_name: str = Field(alias="PREDICTIONS_TABLE", min_length=3)
    stream_name: str = Field(alias="STREAM_NAME", min_length=1)
    ttl_days: int = Field(alias="PREDICTION_TTL_DAYS", gt=0)
    version_cache_seconds: float = Field(default=30.0, alias="VERSION_CACHE_SECONDS", ge=0)
    # the answer cache of POST /predict (absent: off, e.g. in the stream consumer)
    answer_cache_table: str | None = Field(default=None, alias=cache_names.TABLE_ENVIRONMENT, min_length=3)
    answer_cache_ttl_seconds: int = Field(default=300, alias=cache_names.TTL_ENVIRONMENT, ge=1)


class PayloadTooLargeError(RequestError):
    """A body over ``MAX_BODY_BYTES``: refused before it is parsed."""

    status_code = 413


class UpstreamError(RuntimeError):
    """The model endpoint or a data store failed (after retries): the log gets the cause (the
    message), the caller ``status`` and ``public_message``, which say nothing internal."""

    status: ClassVar[int] = 502
    public_message: ClassVar[str] = "the prediction service could not complete the request; try again"
    retry_after_seconds: int | None = None


class UpstreamBusyError(UpstreamError):
    """Throttled or unavailable: worth retrying after ``retry_after_seconds``."""

    status = 503
    public_message = "the prediction service is busy; retry after the time in the Retry-After header"

    def __init__(self, message: str, retry_after_seconds: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class UpstreamTimeoutError(UpstreamError):
    status = 504
    public_message = "the prediction service did not answer in time; try again"


# error codes of SageMaker runtime, DynamoDB, Kinesis, SSM and S3 that mean "busy, retry later"
_BUSY_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ProvisionedThroughputExceeded",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ModelNotReadyException",
        "TransactionConflictException",
        "KMSThrottlingException",
        "SlowDown",
    }
)
# a cancelled DynamoDB transaction names why per item
_BUSY_CANCELLATION_REASONS = frozenset(
    {"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded", "TransactionConflict"}
)


def upstream_error(error: Exception, action: str) -> UpstreamError:
    """The ``UpstreamError`` (and so the HTTP status) for a dependency's failure."""
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return UpstreamTimeoutError(f"{action} timed out: {error}")
    if isinstance(error, ClientError):
        response: Mapping[str, Any] = error.response
        code = response.get("Error", {}).get("Code", "")
        http_status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        reasons = {reason.get("Code") for reason in response.get("CancellationReasons", [])}
        if code in _BUSY_CODES or http_status in {429, 503} or reasons & _BUSY_CANCELLATION_REASONS:
            return UpstreamBusyError(f"{action} refused: {error}")
    return UpstreamError(f"{action} failed: {error}")


def parse_body(body: str | None, *, base64_encoded: bool = False) -> object:
    """The JSON document of a request body, refused (4xx) when it is missing, too large or not JSON.

    Strict JSON: Python's parser would accept ``NaN`` and ``Infinity``, JSON has no such numbers.
    """
    if not body:
        raise RequestError("the body must be a JSON document; it is empty")
    try:
        data = base64.b64decode(body, validate=True) if base64_encoded else body.encode()
    except (binascii.Error, UnicodeEncodeError):
        raise RequestError("the body is not valid JSON text") from None
    if len(data) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(
            f"the body is {len(data)} bytes; at most {MAX_BODY_BYTES} bytes "
            f"({MAX_BODY_BYTES // 1024} KiB) are accepted: send fewer rows per request, "
            "or rows as arrays of values in schema order"
        )
    return parse_json(data)


class PredictionService:
    def __init__(
        self,
        settings: ApiSettings,
        *,
        ssm: Any,
        s3: Any,
        runtime: Any,
        table: Any,
        kinesis: Any,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        answers: AnswerCache | None = None,
    ) -> None:
        self.settings = settings
        self.ssm, self.s3, self.runtime, self.table, self.kinesis = ssm, s3, runtime, table, kinesis
        self.clock, self.monotonic = clock, monotonic
        self.answers = answers
        self._cached: tuple[float, str, FeatureSchema] | None = None

    # ----- the champion's schema, cached -----
    def schema(self) -> tuple[str, FeatureSchema]:
        now = self.monotonic()
        if self._cached is not None and now - self._cached[0] < self.settings.version_cache_seconds:
            return self._cached[1], self._cached[2]
        try:
            version, schema = champion_schema(
                ssm=self.ssm,
                s3=self.s3,
                bucket=self.settings.model_bucket,
                parameters_path=self.settings.parameters_path,
            )
        except (ClientError, BotoCoreError) as err:
            raise upstream_error(err, "reading the active model version and schema") from err
        self._cached = (now, version, schema)
        return version, schema

    def rows(self, body: object) -> list[object]:
        return self._validated(body)[0]

    def _validated(self, body: object) -> tuple[list[object], list[list[float]], str]:
        """The rows, their float vectors in schema order and the champion they were validated for."""
        rows = rows_from_document(body)
        if len(rows) > MAX_ROWS:
            raise RequestError(f"at most {MAX_ROWS} rows per request, got {len(rows)}; split the request")
        version, schema = self.schema()
        vectors = schema.to_vectors(rows)  # raises RequestError naming row, feature and reason
        return rows, vectors, version

    # ----- operations -----
    def predict(self, body: object, *, variant: str | None = None, source: Source = "api") -> dict[str, Any]:
        if variant is not None and variant not in VARIANTS:
            raise RequestError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        rows, vectors, champion = self._validated(body)
        prediction_ids = [str(uuid.uuid4()) for _ in rows]
        if self.answers is None:
            return self.predict_rows(rows, prediction_ids, variant=variant, source=source)
        key = cache_key(vectors, variant=variant, champion=champion)
        lookup = self.answers.lookup(key, len(rows))
        telemetry.record_cache_lookup(hit=lookup.answer is not None)
        if lookup.answer is not None:
            return self._from_cache(rows, prediction_ids, lookup.answer, source=source)
        result = self.predict_rows(rows, prediction_ids, variant=variant, source=source)
        if lookup.generation is not None:  # unknown generation (the lookup failed): not stored
            answer = CachedAnswer(
                model_version=result["modelVersion"],
                variant=result["variant"],
                predictions=tuple((p["label"], p["probability"]) for p in result["predictions"]),
            )
            self.answers.store(key, answer, lookup.generation)
        return result

    def _feature_names(self, rows: list[object]) -> tuple[str, ...] | None:
        # validated rows: objects carry exactly the schema's names; arrays take them from the schema
        # they were validated against (cached by rows()); without one the record has no features
        if rows and all(isinstance(row, dict) for row in rows):
            return tuple(rows[0])  # type: ignore[arg-type]
        return self._cached[2].names if self._cached is not None else None

    def _from_cache(
        self, rows: list[object], prediction_ids: list[str], answer: CachedAnswer, *, source: Source
    ) -> dict[str, Any]:
        """A cached answer under new prediction ids, stored like a computed one (no endpoint call)."""
        records = build_records(
            rows,
            prediction_ids,
            answer.predictions,
            model_version=answer.model_version,
            variant=answer.variant,
            source=source,
            at=self.clock(),
            ttl_days=self.settings.ttl_days,
            latency_ms=0.0,  # no endpoint round trip
            feature_names=self._feature_names(rows),
        )
        self._store([record.to_item() for record in records])
        telemetry.record_prediction(
            source=source,
            variant=answer.variant,
            model_version=answer.model_version,
            rows=len(records),
            latency_ms=None,
        )
        return _answer(records)

    def predict_rows(
        self,
        rows: list[object],
        prediction_ids: list[str],
        *,
        variant: str | None,
        source: Source,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Invoke the endpoint for validated rows and store one record per row under the given ids.

        ``at`` is the records' sort key time (the stream passes the request's time, so a replayed
        record overwrites its first write instead of adding a second). The records are written
        after the endpoint answered, all of them or none: one PutItem for one row, one
        transaction for several.
        """
        collected = _Collected()
        feature_names = self._feature_names(rows)
        try:
            records = invoke_and_record(
                self.runtime,
                collected,
                endpoint_name=self.settings.endpoint_name,
                rows=rows,
                prediction_ids=prediction_ids,
                source=source,
                at=at or self.clock(),
                ttl_days=self.settings.ttl_days,
                variant=variant,
                monotonic=self.monotonic,
                feature_names=feature_names,
            )
        except (ClientError, BotoCoreError, ValueError) as err:
            raise upstream_error(err, "InvokeEndpoint") from err
        self._store(collected.items)
        first = records[0]
        telemetry.record_prediction(
            source=source,
            variant=first.variant,
            model_version=first.model_version,
            rows=len(records),
            latency_ms=first.latency_ms,
        )
        return _answer(records)

    def _store(self, items: list[dict[str, Any]]) -> None:
        """All records of a request or none: one PutItem for one row, one transaction for several."""
        try:
            if len(items) == 1:
                # one row (most requests): a single PutItem is atomic and costs half a transaction
                self.table.put_item(Item=items[0])
            else:
                self.table.meta.client.transact_write_items(
                    TransactItems=[{"Put": {"TableName": self.table.name, "Item": item}} for item in items]
                )
        except (ClientError, BotoCoreError) as err:
            raise upstream_error(err, "storing the predictions") from err

    def enqueue(self, body: object) -> dict[str, Any]:
        rows = self.rows(body)
        prediction_ids = [str(uuid.uuid4()) for _ in rows]
        message = {"predictionIds": prediction_ids, "instances": rows, "requestedAt": timestamp(self.clock())}
        try:
            self.kinesis.put_record(
                StreamName=self.settings.stream_name,
                Data=json.dumps(message).encode(),
                PartitionKey=prediction_ids[0],
            )
        except (ClientError, BotoCoreError) as err:
            raise upstream_error(err, "PutRecord") from err
        return {"predictionIds": prediction_ids, "status": "accepted"}

    def get(self, prediction_id: str) -> PredictionRecord | None:
        try:
            items = self.table.query(
                KeyConditionExpression="predictionId = :id",
                ExpressionAttributeValues={":id": prediction_id},
                Limit=1,
            )["Items"]
        except (ClientError, BotoCoreError) as err:
            raise upstream_error(err, "reading a prediction") from err
        return PredictionRecord.from_item(items[0]) if items else None

    def feedback(self, body: object) -> PredictionRecord:
        if not isinstance(body, dict) or set(body) != {"predictionId", "label"}:
            raise RequestError('send {"predictionId": "...", "label": 0 or 1}')
        label = body["label"]
        if not isinstance(label, int) or isinstance(label, bool) or label not in (0, 1):
            raise RequestError(f"label must be 0 or 1, got {json.dumps(label)}")
        prediction_id = body["predictionId"]
        if not isinstance(prediction_id, str) or not prediction_id:
            raise RequestError("predictionId must be a non-empty string")
        try:
            return record_feedback(self.table, prediction_id, label, now=self.clock())
        except (ClientError, BotoCoreError) as err:
            raise upstream_error(err, "recording feedback") from err


def _answer(records: list[PredictionRecord]) -> dict[str, Any]:
    return {
        "modelVersion": records[0].model_version,
        "variant": records[0].variant,
        "predictions": [
            {"predictionId": r.prediction_id, "label": r.label, "probability": r.probability} for r in records
        ],
    }


class _Collected:
    """What ``invoke_and_record`` writes (``put_item(Item=...)``), held for one transaction."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put_item(self, **request: Any) -> None:
        self.items.append(request["Item"])


def from_environment(environ: Mapping[str, str]) -> PredictionService:
    """The service as a Lambda function's environment configures it, with bounded-retry clients."""
    settings = ApiSettings.model_validate(dict(environ))
    session = boto3.session.Session()
    dynamodb = session.resource("dynamodb", config=STORE_CLIENT_CONFIG)
    answers = None
    if settings.answer_cache_table is not None:
        answers = AnswerCache(
            dynamodb.Table(settings.answer_cache_table), ttl_seconds=settings.answer_cache_ttl_seconds
        )
    return PredictionService(
        settings,
        ssm=session.client("ssm", config=STORE_CLIENT_CONFIG),
        s3=session.client("s3", config=STORE_CLIENT_CONFIG),
        runtime=session.client("sagemaker-runtime", config=ENDPOINT_CLIENT_CONFIG),
        table=dynamodb.Table(settings.table_name),
        kinesis=session.client("kinesis", config=STORE_CLIENT_CONFIG),
        answers=answers,
    )


@cache
def current() -> PredictionService:
    """The service of this Lambda execution environment, built once (clients and schema cache reused).

    Both the API and the stream consumer use it.
    """
    return from_environment(os.environ)
