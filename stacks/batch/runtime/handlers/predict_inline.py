"""PredictInline (Lambda): the batch job (``stacks.batch.runtime.job.job.BatchJob``) for one small input.

The state machine's Choice sends inputs at or below its size threshold here instead of to AWS
Batch; the work and its outputs are exactly the container's (same layout, same idempotent
prediction ids, same manifest), so an input may move between the two paths from run to run.

Event: one item of ListInputs' ``inputs`` (``events.InputItem``; only ``uri`` is used)::

    {"uri": "s3://data-bucket/input/day.csv", "key": "input/day.csv", "size": 52311, "etag": "..."}

Output::

    {"uri": "s3://data-bucket/input/day.csv", "read": 110, "predicted": 108, "rejected": 2,
     "failed": 0, "manifest": "s3://results-bucket/batch/output/input/day.csv/manifest.json"}

Rejected rows (invalid against the champion's feature schema) are results, not failures: they
are in ``rejects.jsonl`` and the function succeeds.

Errors (the Lambda error type Step Functions sees):

- ``RowsFailedError``: some rows could not be predicted (the endpoint refused, throttled, timed
  out or was unreachable after the client's retries). Raised after the results and the manifest
  are written (the manifest holds the counts and the first reasons); a retry re-runs the input and
  overwrites, never duplicates (the client has already retried each request 8 times);
- ``InvalidInputItemError``: the event has no valid ``uri``;
- ``UnsupportedInputError``: the input is not .csv, .jsonl or .json;
- ``InputNotFoundError``: the input object does not exist;
- ``ConfigurationError``: a setting below is missing or invalid;
- anything else (``ClientError`` of S3, SSM or DynamoDB after retries, ``mlpipe`` errors when no
  champion is registered) propagates under its own name.

Environment (``JobSettings``, the container's own): ``MODEL_BUCKET``, ``MODEL_PARAMETERS_PATH``,
``PREDICTIONS_TABLE``, ``ENDPOINT_NAME``, ``OUTPUT_PREFIX``, ``PREDICTION_TTL_DAYS``, optional
``CHUNK_ROWS`` (default 1000) and ``REQUEST_ROWS`` (default 100, at most 1000).

IAM: as the job role: ``s3:GetObject`` on the input, ``s3:GetObject`` on the model bucket's
schemas, ``ssm:GetParameter(s)`` under ``MODEL_PARAMETERS_PATH``, ``sagemaker:InvokeEndpoint`` on
the endpoint, ``dynamodb:BatchWriteItem`` on the table, ``s3:PutObject``, ``s3:ListBucket`` and
``s3:DeleteObject`` on the output prefix (stale part files of an earlier run are deleted).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import telemetry
from stacks.batch.runtime.errors import InvalidInputItemError, RowsFailedError
from stacks.batch.runtime.events import INPUT_ITEM_SHAPE, InputItem, parse_event, parse_settings
from stacks.batch.runtime.job.job import BatchJob, Counts, JobSettings, build

SERVICE = telemetry.SERVICE_NAMES["batch"]
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=telemetry.TRACED_MODULES)


def from_environment(environ: dict[str, str], session: boto3.session.Session) -> BatchJob:
    return build(parse_settings(environ, JobSettings), session)


@cache
def current() -> BatchJob:
    """The job of this execution environment: settings and clients built once, at the first call."""
    return from_environment(dict(os.environ), boto3.session.Session())


def result(uri: str, counts: Counts, manifest: str) -> dict[str, Any]:
    return {
        "uri": uri,
        "read": counts.read,
        "predicted": counts.predicted,
        "rejected": counts.rejected,
        "failed": counts.failed,
        "manifest": manifest,
    }


def predict(job: BatchJob, item: InputItem) -> dict[str, Any]:
    """Run the job for the item; ``RowsFailedError`` (after the manifest is written) if rows failed."""
    counts = job.run(item.uri)
    output = result(item.uri, counts, job.outputs(item.uri).manifest.uri)
    logger.info("input predicted inline", extra=output)
    if counts.failed:
        raise RowsFailedError(
            f"{item.uri}: {counts.failed} of {counts.read} rows failed "
            f"(first: {counts.failures[0] if counts.failures else 'no reason recorded'}); "
            f"counts in {output['manifest']}"
        )
    return output


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    item = parse_event(event, InputItem, InvalidInputItemError, INPUT_ITEM_SHAPE)
    return predict(current(), item)
