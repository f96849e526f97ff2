"""Validate (Lambda): every check of a run's data file against the champion, in one report.

Event (``events.RunInput``)::

    {"run_id": "scheduled-20261206-0300", "bucket": "<data bucket>",
     "data_key": "training/data/breast-cancer.csv"}

``run_id`` matches ``shared.training.RUN_ID_PATTERN``; ``bucket`` is the data bucket
(``DATA_BUCKET``); ``data_key`` a ``.csv`` key under ``shared.training.TRAINING_DATA_PREFIX``.

Output::

    {"valid": false, "rows": 150, "data_sha256": "<sha256 of the file>", "champion": "v2",
     "checks": [{"check": "header", "passed": false, "detail": "..."}, ...],
     "failed": ["header", "finite_numbers", ...],
     "report_key": "training/runs/<run id>/validation.json"}

- ``checks``: all of ``checks.CHECKS`` in that order, each evaluated whatever the others found
  (``header``, ``finite_numbers``, ``target_values``, ``min_rows``, ``class_balance``,
  ``feature_ranges``; see ``stacks.training.runtime.checks``), thresholds from
  ``get_config(STAGE).training.validation``; the champion is the active version
  (``{model_parameters_path}/active-version``), its schema and ``baseline.json`` read from the
  model bucket (``shared.model_parameters.schema_key``/``baseline_key``);
- ``valid``: every check passed; ``failed``: the names of the failed checks, in order;
- ``rows``: data rows in the file (blank lines ignored); ``data_sha256``: of the object's bytes;
- a file over ``table.MAX_DATA_BYTES`` (32 MiB) is only hashed: ``header`` fails naming its size,
  the other checks are ``not checked``.

The full report (the output without ``report_key``, plus ``run_id``, ``source`` {bucket, key,
sha256, bytes} and ``thresholds``) is written as JSON to
``shared.training.validation_report_key(run_prefix(run_id))`` in the data bucket.

Invalid data is not an error: ``valid: false`` (the state machine notifies and fails with the
report). Errors (the Lambda error type Step Functions sees):

- ``InvalidRunInputError``: the event is malformed (the message names the field), or its bucket is
  not ``DATA_BUCKET``;
- ``TrainingDataNotFoundError``: no object at ``data_key``;
- ``ChampionUnavailableError``: no active version, or its schema or baseline is missing/unreadable;
- ``ConfigurationError``: ``STAGE``, ``DATA_BUCKET`` or ``MODEL_BUCKET`` missing or invalid;
- ``ClientError`` (botocore): S3 or SSM refused a call (after the client's retries).

Environment: ``STAGE``, ``DATA_BUCKET``, ``MODEL_BUCKET``. IAM: ``s3:GetObject`` on the data
prefix, ``s3:PutObject`` on the runs prefix (data bucket), ``s3:GetObject`` on ``models/*`` (model
bucket), ``ssm:GetParameter`` on the model parameters path, the buckets' KMS key; with
``s3:ListBucket`` on both buckets, so that a missing object reads as ``NoSuchKey`` (the typed
errors above) rather than ``AccessDenied``.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.training import validation_report_key
from stacks.training.runtime.checks import unreadable, validate_data
from stacks.training.runtime.clients import s3_client, ssm_client
from stacks.training.runtime.events import RUN_INPUT_SHAPE, RunInput, Settings, parse_request
from stacks.training.runtime.models import champion_reference
from stacks.training.runtime.powertools import logger, tracer
from stacks.training.runtime.storage import fetch_data, put_report


def validate(s3: Any, ssm: Any, request: RunInput, settings: Settings) -> dict[str, Any]:
    """Check the file, write the report, return the output (module docstring)."""
    config = settings.config
    data = fetch_data(s3, request.bucket, request.data_key)
    champion = champion_reference(ssm, s3, settings.model_bucket, config.model_parameters_path)
    thresholds = config.training.validation
    if data.body is None:
        report = unreadable(f"the file is {data.size} bytes, more than the {data.limit} bytes a run reads")
    else:
        report = validate_data(
            data.body, champion.schema.names, champion.baseline, thresholds, champion.version
        )
    output: dict[str, Any] = {
        "valid": report.valid,
        "rows": report.rows,
        "data_sha256": data.sha256,
        "champion": champion.version,
        "checks": [result.as_dict() for result in report.checks],
        "failed": report.failed,
        "report_key": validation_report_key(request.prefix),
    }
    source = {"bucket": request.bucket, "key": request.data_key, "sha256": data.sha256, "bytes": data.size}
    extra = {"run_id": request.run_id, "source": source, "thresholds": thresholds.model_dump(mode="json")}
    put_report(s3, request.bucket, output, "report_key", extra)
    return output


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request, settings = parse_request(event, RunInput, RUN_INPUT_SHAPE, os.environ)
    output = validate(s3_client(), ssm_client(), request, settings)
    logger.info(
        "training data validated",
        extra={
            "run_id": request.run_id,
            "valid": output["valid"],
            "rows": output["rows"],
            "failed": output["failed"],
        },
    )
    return output
