"""Prediction logic behind the REST API, free of Lambda and HTTP so it is tested on its own.

- ``predict``: validate rows against the champion's feature schema, invoke the endpoint (with an
  optional ``TargetVariant``), store each prediction with its TTL, answer with ids, labels,
  probabilities, the model version and the variant that served;
- ``enqueue``: validate, put the request on the Kinesis stream for the stream consumer, answer
  with the prediction id to read back later;
- ``get``: one stored prediction; ``feedback``: the observed outcome next to it.

The active version and its schema are cached for ``version_cache_seconds``, so a rollback takes
effect within that time without a call to Parameter Store on every request.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from mlpipe.registry import champion_schema
from model.schema import FeatureSchema, RequestError, rows_from_document
from shared.predictions import PredictionRecord, Source, invoke_and_record, record_feedback, timestamp

VARIANTS = ("ModelA", "ModelB")
MAX_ROWS = 100


class ApiSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    endpoint_name: str = Field(alias="ENDPOINT_NAME", min_length=1)
    model_bucket: str = Field(alias="MODEL_BUCKET", min_length=3)
    parameters_path: str = Field(alias="MODEL_PARAMETERS_PATH", pattern=r"^/")
    table_name: str = Field(alias="PREDICTIONS_TABLE", min_length=3)
    stream_name: str = Field(alias="STREAM_NAME", min_length=1)
    ttl_days: int = Field(alias="PREDICTION_TTL_DAYS", gt=0)
    version_cache_seconds: float = Field(default=30.0, alias="VERSION_CACHE_SECONDS", ge=0)


class UpstreamError(RuntimeError):
    """The model endpoint or a data store failed; the caller gets a generic 502/503, the log the cause."""


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
    ) -> None:
        self.settings = settings
        self.ssm, self.s3, self.runtime, self.table, self.kinesis = ssm, s3, runtime, table, kinesis
        self.clock, self.monotonic = clock, monotonic
        self._cached: tuple[float, str, FeatureSchema] | None = None

    # ----- the champion's schema, cached -----
    def schema(self) -> tuple[str, FeatureSchema]:
        now = self.monotonic()
        if self._cached is not None and now - self._cached[0] < self.settings.version_cache_seconds:
            return self._cached[1], self._cached[2]
        version, schema = champion_schema(
            ssm=self.ssm,
            s3=self.s3,
            bucket=self.settings.model_bucket,
            parameters_path=self.settings.parameters_path,
        )
        self._cached = (now, version, schema)
        return version, schema

    def rows(self, body: object) -> list[object]:
        rows = rows_from_document(body)
        if len(rows) > MAX_ROWS:
            raise RequestError(f"at most {MAX_ROWS} rows per request, got {len(rows)}; split the request")
        _, schema = self.schema()
        schema.to_vectors(rows)  # raises RequestError naming row, feature and reason
        return rows

    # ----- operations -----
    def predict(self, body: object, *, variant: str | None = None, source: Source = "api") -> dict[str, Any]:
        if variant is not None and variant not in VARIANTS:
            raise RequestError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        rows = self.rows(body)
        return self.predict_rows(rows, [str(uuid.uuid4()) for _ in rows], variant=variant, source=source)

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
        record overwrites its first write instead of adding a second).
        """
        try:
            with self.table.batch_writer(overwrite_by_pkeys=["predictionId", "timestamp"]) as writer:
                records = invoke_and_record(
                    self.runtime,
                    writer,
                    endpoint_name=self.settings.endpoint_name,
                    rows=rows,
                    prediction_ids=prediction_ids,
                    source=source,
                    at=at or self.clock(),
                    ttl_days=self.settings.ttl_days,
                    variant=variant,
                    monotonic=self.monotonic,
                )
        except (ClientError, ValueError) as err:
            raise UpstreamError(f"predicting or storing failed: {err}") from err
        return {
            "modelVersion": records[0].model_version,
            "variant": records[0].variant,
            "predictions": [
                {"predictionId": r.prediction_id, "label": r.label, "probability": r.probability}
                for r in records
            ],
        }

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
        except ClientError as err:
            raise UpstreamError(f"PutRecord failed: {err}") from err
        return {"predictionIds": prediction_ids, "status": "accepted"}

    def get(self, prediction_id: str) -> PredictionRecord | None:
        items = self.table.query(
            KeyConditionExpression="predictionId = :id",
            ExpressionAttributeValues={":id": prediction_id},
            Limit=1,
        )["Items"]
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
        return record_feedback(self.table, prediction_id, label, now=self.clock())


@cache
def current() -> PredictionService:
    """The service of this Lambda execution environment, built once (clients and schema cache reused).

    Both the API and the stream consumer use it.
    """
    settings = ApiSettings.model_validate(dict(os.environ))
    session = boto3.session.Session()
    return PredictionService(
        settings,
        ssm=session.client("ssm"),
        s3=session.client("s3"),
        runtime=session.client("sagemaker-runtime"),
        table=session.resource("dynamodb").Table(settings.table_name),
        kinesis=session.client("kinesis"),
    )
