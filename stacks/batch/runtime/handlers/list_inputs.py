"""ListInputs (Lambda): the inputs of a batch run, without those already processed.

Event (``events.RunInput``)::

    {"bucket": "data-bucket", "prefix": "input/2026/11/"}

``prefix`` is an S3 key prefix: a folder, ``""`` for the whole bucket, or a whole key (the S3
object-created rule passes the new object's key, which lists that object).

Output::

    {"bucket": "data-bucket", "prefix": "input/2026/11/",
     "inputs": [{"uri": "s3://data-bucket/input/2026/11/day.csv", "key": "input/2026/11/day.csv",
                 "size": 52311, "etag": "\\"9b2c...\\""}],
     "count": 1, "skipped": 3, "ignored": 2, "truncated": false}

- ``inputs``: objects under the prefix whose name ends in an accepted suffix (``layout.INPUT_SUFFIXES``:
  .csv, .jsonl, .json, any case), in key order; ``size`` in bytes (the state machine's Choice sends
  small inputs inline and large ones to AWS Batch); ``count`` = ``len(inputs)``.
- ``skipped``: inputs already processed, i.e. their manifest (``layout.outputs_for(...).manifest``)
  names the object's current ETag and no failed rows. This makes the daily schedule restartable
  and keeps the S3 trigger and the schedule from processing an input twice; an input whose last
  run had failed rows, or that changed since, is listed again.
- ``ignored``: other objects (other suffixes, folder markers, and anything under ``OUTPUT_PREFIX``
  or ``RUNS_PREFIX``, which are results, never inputs).
- ``truncated``: more unprocessed inputs exist than one run takes: ``MAX_INPUTS``, or 96 KiB of
  ``inputs`` as JSON (long keys), whichever comes first, so the state that holds ``inputs`` and the
  Map's per-input results side by side stays under Step Functions' 256 KiB payload limit. The
  first ones in key order are listed; the next run (they are then skipped as processed) takes the
  rest. The counts cover the objects examined before the cut.

Errors (the Lambda error type Step Functions sees):

- ``InvalidRunInputError``: the event is not ``{"bucket": str, "prefix": str}`` (the message
  names the field and the problem);
- ``ConfigurationError``: ``OUTPUT_PREFIX``, ``RUNS_PREFIX`` or ``MAX_INPUTS`` is invalid;
- ``ClientError`` (botocore): S3 refused the listing or a manifest read (``NoSuchBucket``,
  ``AccessDenied``, throttling after the client's retries).

Environment:

- ``OUTPUT_PREFIX`` (required): ``s3://results-bucket/batch/output``, where the job writes results;
- ``RUNS_PREFIX`` (optional): ``s3://results-bucket/batch/runs``, only to ignore run manifests
  should the listed prefix contain them;
- ``MAX_INPUTS`` (optional, default 500, 1-5000): inputs per run.

IAM: ``s3:ListBucket`` on the input bucket (the prefix), ``s3:GetObject`` on the output prefix
(manifests; with ``s3:ListBucket`` on the results bucket, so a missing manifest reads as
``NoSuchKey`` rather than ``AccessDenied``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Final

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from shared import telemetry
from stacks.batch.runtime.clients import s3_client
from stacks.batch.runtime.errors import InvalidRunInputError, ManifestInvalidError
from stacks.batch.runtime.events import RUN_INPUT_SHAPE, InputItem, RunInput, parse_event, parse_settings
from stacks.batch.runtime.layout import S3Location, input_format, is_output, outputs_for
from stacks.batch.runtime.manifest import read_manifest

SERVICE = telemetry.SERVICE_NAMES["batch"]
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=telemetry.TRACED_MODULES)

# bytes of ``inputs`` (as JSON) one run takes: the state machine keeps ``inputs`` and the Map's
# results (each item again, with its outcome) in one state, which must stay under 256 KiB
PAYLOAD_BUDGET: Final = 96 * 1024


class ListSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    output_prefix: str = Field(alias="OUTPUT_PREFIX", pattern=r"^s3://[^/]+/")
    runs_prefix: str | None = Field(default=None, alias="RUNS_PREFIX", pattern=r"^s3://[^/]+/")
    max_inputs: int = Field(default=500, alias="MAX_INPUTS", gt=0, le=5000)


@dataclass
class Listing:
    bucket: str
    prefix: str
    inputs: list[InputItem] = field(default_factory=list)
    skipped: int = 0
    ignored: int = 0
    truncated: bool = False

    def as_output(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "inputs": [item.model_dump() for item in self.inputs],
            "count": len(self.inputs),
            "skipped": self.skipped,
            "ignored": self.ignored,
            "truncated": self.truncated,
        }


def processed(s3: Any, settings: ListSettings, location: S3Location, etag: str) -> bool:
    """Whether the input's manifest records a run without failures of the object with ``etag``."""
    at = outputs_for(settings.output_prefix, location.key).manifest
    try:
        manifest = read_manifest(s3, at)
    except ManifestInvalidError as err:
        logger.warning("unreadable manifest; the input is listed again", extra={"reason": str(err)})
        return False
    return (
        manifest is not None
        and manifest.input == location.uri
        and manifest.input_etag == etag
        and manifest.succeeded
    )


def _is_result(settings: ListSettings, bucket: str, key: str) -> bool:
    prefixes = [settings.output_prefix] + ([settings.runs_prefix] if settings.runs_prefix else [])
    return any(is_output(prefix, bucket, key) for prefix in prefixes)


def list_inputs(
    s3: Any,
    request: RunInput,
    settings: ListSettings,
    *,
    payload_budget: int = PAYLOAD_BUDGET,
    page_size: int = 1000,
) -> Listing:
    listing = Listing(bucket=request.bucket, prefix=request.prefix)
    used = 0
    paginator = s3.get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=request.bucket, Prefix=request.prefix, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if input_format(key) is None or _is_result(settings, request.bucket, key):
                listing.ignored += 1
                continue
            location = S3Location(request.bucket, key)
            if processed(s3, settings, location, obj["ETag"]):
                listing.skipped += 1
                continue
            item = InputItem(uri=location.uri, key=key, size=obj["Size"], etag=obj["ETag"])
            size = len(json.dumps(item.model_dump())) + 2
            if len(listing.inputs) >= settings.max_inputs or used + size > payload_budget:
                listing.truncated = True
                return listing
            listing.inputs.append(item)
            used += size
    return listing


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse_event(event, RunInput, InvalidRunInputError, RUN_INPUT_SHAPE)
    settings = parse_settings(dict(os.environ), ListSettings)
    listing = list_inputs(s3_client(), request, settings)
    output = listing.as_output()
    logger.info(
        "inputs listed",
        extra={k: output[k] for k in ("bucket", "prefix", "count", "skipped", "ignored", "truncated")},
    )
    return output
