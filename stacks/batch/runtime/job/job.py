"""Batch inference: a CSV or JSON Lines file in S3 through the endpoint into DynamoDB and S3.

    python -m stacks.batch.runtime.job.job s3://data-bucket/input/2026-11-24.csv

The file is read as a stream in chunks of ``CHUNK_ROWS`` rows. Each row is checked against the
champion's feature schema (``schema.json`` beside its artifact); an invalid row goes to
``rejects.jsonl`` with the reason and the job carries on. Valid rows go to the endpoint in
requests of ``REQUEST_ROWS`` rows (never one call per row). Predictions are written to the
predictions table (batch writer: unprocessed items and throttling are retried) and, per chunk, to
``{output prefix}/{input key}/part-NNNNN.jsonl``; ``manifest.json`` counts rows read, predicted,
rejected and failed. Where each output lives is ``stacks.batch.runtime.layout``'s, the manifest's
shape ``stacks.batch.runtime.manifest``'s.

Restartable: prediction ids derive from the input object (bucket, key, ETag) and the row number,
the sort key is the input's last-modified time and part files are named by chunk, so a re-run of
the same input overwrites what the first run wrote and never duplicates it (part files a previous
run wrote beyond this run's last chunk are deleted). A request the endpoint refuses, or one that
times out or cannot connect, marks its rows failed (with the reason) instead of stopping the job;
the job exits non-zero when any row failed, so the orchestrator sees it. The manifest is written
last: its presence with ``failed`` = 0 for the input's current ETag means the input is done.

The same ``BatchJob`` runs inline for small inputs (``stacks.batch.runtime.handlers.predict_inline``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from mlpipe.registry import champion_schema
from model.schema import FeatureSchema, RequestError, parse_json
from shared.predictions import invoke_and_record, timestamp
from stacks.batch.runtime.clients import RETRIES
from stacks.batch.runtime.errors import InputNotFoundError
from stacks.batch.runtime.layout import InputOutputs, outputs_for, require_input_format, split_uri
from stacks.batch.runtime.manifest import MAX_FAILURES, InputManifest

NAMESPACE = uuid.UUID("6f1f6f54-3c1e-4c8e-9a53-0d2f8b3c1a77")  # prediction ids of batch rows


class JobSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    model_bucket: str = Field(alias="MODEL_BUCKET", min_length=3)
    parameters_path: str = Field(alias="MODEL_PARAMETERS_PATH", pattern=r"^/")
    table_name: str = Field(alias="PREDICTIONS_TABLE", min_length=3)
    endpoint_name: str = Field(alias="ENDPOINT_NAME", min_length=1)
    output_prefix: str = Field(alias="OUTPUT_PREFIX", pattern=r"^s3://[^/]+/")
    ttl_days: int = Field(alias="PREDICTION_TTL_DAYS", gt=0)
    chunk_rows: int = Field(default=1000, alias="CHUNK_ROWS", gt=0)
    request_rows: int = Field(default=100, alias="REQUEST_ROWS", gt=0, le=1000)
    # requests of a chunk in flight at once (each an endpoint call and its table writes): the
    # job waits on the network, so this, not CPU, sets its pace
    concurrency: int = Field(default=4, alias="CONCURRENCY", gt=0, le=32)


@dataclass
class Counts:
    read: int = 0
    predicted: int = 0
    rejected: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RowError:
    reason: str


def read_rows(body: Any, key: str) -> Iterator[tuple[int, object]]:
    """(row number, row) from a CSV with a header of feature names, or JSON Lines of objects/arrays."""
    kind = require_input_format(key)
    lines = (line.decode("utf-8") for line in body.iter_lines())
    if kind == "jsonl":
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                yield number, parse_json(line)
            except RequestError as err:
                yield number, RowError(err.message)
        return
    reader = csv.DictReader(lines)
    for number, record in enumerate(reader):
        try:
            yield number, {name: float(value) for name, value in record.items() if name is not None}
        except (TypeError, ValueError):
            yield number, RowError("a value is not a number")


def chunks(rows: Iterator[tuple[int, object]], size: int) -> Iterator[list[tuple[int, object]]]:
    chunk: list[tuple[int, object]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class BatchJob:
    def __init__(self, settings: JobSettings, *, s3: Any, ssm: Any, runtime: Any, table: Any) -> None:
        self.settings = settings
        self.s3, self.ssm, self.runtime, self.table = s3, ssm, runtime, table

    def load_schema(self) -> tuple[str, FeatureSchema]:
        return champion_schema(
            ssm=self.ssm,
            s3=self.s3,
            bucket=self.settings.model_bucket,
            parameters_path=self.settings.parameters_path,
        )

    def outputs(self, input_uri: str) -> InputOutputs:
        return outputs_for(self.settings.output_prefix, split_uri(input_uri)[1])

    def run(self, input_uri: str) -> Counts:
        bucket, key = split_uri(input_uri)
        require_input_format(key)
        try:
            head = self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise InputNotFoundError(f"{input_uri} does not exist") from None
            raise
        as_of = head["LastModified"].astimezone(UTC)
        identity = f"{bucket}/{key}@{head['ETag']}"
        _, schema = self.load_schema()
        outputs = outputs_for(self.settings.output_prefix, key)
        counts = Counts()
        rejects: list[dict[str, Any]] = []
        # the object as it was when HEAD named its ETag: a concurrent overwrite cannot mix versions
        body = self.s3.get_object(Bucket=bucket, Key=key, IfMatch=head["ETag"])["Body"]
        written = 0
        for index, chunk in enumerate(chunks(read_rows(body, key), self.settings.chunk_rows)):
            counts.read += len(chunk)
            valid: list[tuple[int, object]] = []
            for number, row in chunk:
                problems = [row.reason] if isinstance(row, RowError) else schema.validate_row(row)
                if problems:
                    rejects.append({"row": number, "reasons": problems})
                else:
                    valid.append((number, row))
            counts.rejected += len(chunk) - len(valid)
            results = self._predict(valid, identity, as_of, counts, schema.names)
            part = outputs.part(index)
            self._write_part(part.bucket, part.key, results)
            written = index + 1
        self._delete_parts_from(outputs, written)
        self._put_json(outputs.rejects.bucket, outputs.rejects.key, rejects, lines=True)
        manifest = InputManifest(
            input=input_uri,
            input_etag=head["ETag"],
            output=outputs.directory.uri,
            read=counts.read,
            predicted=counts.predicted,
            rejected=counts.rejected,
            failed=counts.failed,
            failures=counts.failures[:MAX_FAILURES],
            finished_at=timestamp(datetime.now(UTC)),
        )
        self._put_json(outputs.manifest.bucket, outputs.manifest.key, manifest.model_dump())
        return counts

    def _delete_parts_from(self, outputs: InputOutputs, first: int) -> None:
        """Delete part files numbered ``first`` and up (left by a run with smaller chunks)."""
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=outputs.bucket, Prefix=outputs.parts_prefix):
            keys = [
                item["Key"]
                for item in page.get("Contents", [])
                if (index := outputs.part_index(item["Key"])) is not None and index >= first
            ]
            if keys:
                self.s3.delete_objects(
                    Bucket=outputs.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
                )

    def _predict(
        self,
        rows: list[tuple[int, object]],
        identity: str,
        as_of: datetime,
        counts: Counts,
        feature_names: tuple[str, ...],
    ) -> list[dict[str, Any]]:
        """Predict and store ``rows`` in requests of ``request_rows``, ``concurrency`` at a time.

        Results keep the rows' order; a request that fails marks its rows failed, not the others.
        """
        size = self.settings.request_rows
        requests = [rows[start : start + size] for start in range(0, len(rows), size)]
        with ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="request") as pool:
            outcomes = list(
                pool.map(lambda request: self._request(request, identity, as_of, feature_names), requests)
            )
        results: list[dict[str, Any]] = []
        for request, outcome in zip(requests, outcomes, strict=True):
            if isinstance(outcome, str):
                counts.failed += len(request)
                counts.failures.append(f"rows {request[0][0]}-{request[-1][0]}: {outcome}")
                continue
            counts.predicted += len(outcome)
            results += outcome
        return results

    def _request(
        self,
        request: list[tuple[int, object]],
        identity: str,
        as_of: datetime,
        feature_names: tuple[str, ...],
    ) -> list[dict[str, Any]] | str:
        """One endpoint call and its writes (its own batch writer); the reason as text if it failed."""
        try:
            with self.table.batch_writer(overwrite_by_pkeys=["predictionId", "timestamp"]) as writer:
                records = invoke_and_record(
                    self.runtime,
                    writer,
                    endpoint_name=self.settings.endpoint_name,
                    rows=[row for _, row in request],
                    prediction_ids=[str(uuid.uuid5(NAMESPACE, f"{identity}#{n}")) for n, _ in request],
                    source="batch",
                    at=as_of,
                    ttl_days=self.settings.ttl_days,
                    feature_names=feature_names,
                )
        except (BotoCoreError, ClientError, ValueError) as err:
            # refused (ClientError), timed out or unreachable (BotoCoreError) after the client's
            # retries, or an answer that does not match the request (ValueError)
            return str(err)
        return [
            {"row": number, **record.model_dump(by_alias=True)}
            for (number, _), record in zip(request, records, strict=True)
        ]

    def _write_part(self, bucket: str, key: str, results: list[dict[str, Any]]) -> None:
        self._put_json(bucket, key, results, lines=True)

    def _put_json(self, bucket: str, key: str, document: Any, *, lines: bool = False) -> None:
        if lines:
            text = "".join(json.dumps(item, sort_keys=True) + "\n" for item in document)
        else:
            text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        self.s3.put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType="application/json")


def build(settings: JobSettings, session: boto3.session.Session) -> BatchJob:
    """The job with its clients (botocore's adaptive retries: throttling is retried with backoff)."""
    return BatchJob(
        settings,
        s3=session.client("s3", config=RETRIES),
        ssm=session.client("ssm", config=RETRIES),
        runtime=session.client("sagemaker-runtime", config=RETRIES),
        table=session.resource("dynamodb", config=RETRIES).Table(settings.table_name),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("input_uri", help="s3://bucket/input/file.csv, .jsonl or .json")
    args = parser.parse_args(argv)
    settings = JobSettings.model_validate(dict(os.environ))
    job = build(settings, boto3.session.Session())
    counts = job.run(args.input_uri)
    print(json.dumps({k: v for k, v in vars(counts).items() if k != "failures"}))
    return 1 if counts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
