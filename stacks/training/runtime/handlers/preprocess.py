"""Preprocess (Lambda): split a validated data file into train, validation and test CSVs with a manifest.

Event (``events.RunInput``, as Validate's)::

    {"run_id": "scheduled-20261206-0300", "bucket": "<data bucket>",
     "data_key": "training/data/breast-cancer.csv"}

Output::

    {"run_prefix": "training/runs/<run id>",
     "train_uri": "s3://<data bucket>/training/runs/<run id>/data/train/",
     "validation_uri": "s3://<data bucket>/training/runs/<run id>/data/validation/",
     "test_key": "training/runs/<run id>/data/test/test.csv",
     "manifest_key": "training/runs/<run id>/data/manifest.json",
     "rows": {"train": 341, "validation": 114, "test": 114},
     "data_sha256": "<sha256 of the data file>"}

``train_uri`` and ``validation_uri`` are the training job's channel ``S3Uri`` prefixes
(``shared.training.channel_prefix``). The split (``stacks.training.runtime.split``) is
``model.data.split_arrays`` — the same function, seed, fractions and stratification as
``model.data.load_dataset`` — and the files are written at ``shared.training.split_key`` with
the header the champion's schema features in order, then ``target``; the manifest at
``shared.training.manifest_key`` holds ``seed``, ``source`` {bucket, key, sha256} and
``splits`` {split: {key, rows, sha256}}. Deterministic: the same file gives byte-identical splits
and manifest.

The file is read strictly (the layout Validate checked): Errors (the Lambda error type):

- ``InvalidRunInputError``: the event is malformed (naming the field), or its bucket is not
  ``DATA_BUCKET``;
- ``TrainingDataNotFoundError``: no object at ``data_key``;
- ``InvalidTrainingDataError``: the file is not in the validated layout (header other than the
  champion's features then ``target``, a cell that is not a finite number, a target other than 0
  or 1), it is over ``table.MAX_DATA_BYTES`` (32 MiB), or a class has too few rows to appear in
  every split;
- ``ChampionUnavailableError``, ``ConfigurationError``, ``ClientError``: as for Validate.

Environment: ``STAGE``, ``DATA_BUCKET``, ``MODEL_BUCKET``. IAM: ``s3:GetObject`` on the data
prefix and ``s3:PutObject`` on the runs prefix (data bucket), ``s3:GetObject`` on ``models/*``
(model bucket), ``ssm:GetParameter`` on the model parameters path, the buckets' KMS key; with
``s3:ListBucket`` on both buckets (a missing object then reads as ``NoSuchKey``, not ``AccessDenied``).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.training import (
    CONTENT_TYPE,
    TEST_SPLIT,
    TRAIN_CHANNEL,
    VALIDATION_CHANNEL,
    channel_prefix,
    manifest_key,
    split_key,
)
from stacks.training.runtime.clients import s3_client, ssm_client
from stacks.training.runtime.errors import InvalidTrainingDataError
from stacks.training.runtime.events import RUN_INPUT_SHAPE, RunInput, Settings, parse_request
from stacks.training.runtime.models import champion_reference
from stacks.training.runtime.powertools import logger, tracer
from stacks.training.runtime.split import manifest, split_files
from stacks.training.runtime.storage import fetch_data, put_json, put_object
from stacks.training.runtime.table import read_table, to_arrays


def preprocess(s3: Any, ssm: Any, request: RunInput, settings: Settings) -> dict[str, Any]:
    """Split the file, write the splits and the manifest, return the output (module docstring)."""
    data = fetch_data(s3, request.bucket, request.data_key)
    names = champion_reference(
        ssm, s3, settings.model_bucket, settings.config.model_parameters_path
    ).schema.names
    where = f"s3://{request.bucket}/{request.data_key}"
    if data.body is None:
        raise InvalidTrainingDataError(
            f"{where} is {data.size} bytes, more than the {data.limit} a run reads"
        )
    try:
        features, labels = to_arrays(read_table(data.body), names)
        files = split_files(request.prefix, names, features, labels)
    except ValueError as err:  # TableError, or a class too small for the stratified split
        raise InvalidTrainingDataError(f"{where} cannot be split: {err}") from None
    for file in files:
        put_object(s3, request.bucket, file.key, file.body, CONTENT_TYPE)
    source = {"bucket": request.bucket, "key": request.data_key, "sha256": data.sha256}
    put_json(s3, request.bucket, manifest_key(request.prefix), manifest(files, names, source))
    return {
        "run_prefix": request.prefix,
        "train_uri": f"s3://{request.bucket}/{channel_prefix(request.prefix, TRAIN_CHANNEL)}",
        "validation_uri": f"s3://{request.bucket}/{channel_prefix(request.prefix, VALIDATION_CHANNEL)}",
        "test_key": split_key(request.prefix, TEST_SPLIT),
        "manifest_key": manifest_key(request.prefix),
        "rows": {file.split: file.rows for file in files},
        "data_sha256": data.sha256,
    }


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request, settings = parse_request(event, RunInput, RUN_INPUT_SHAPE, os.environ)
    output = preprocess(s3_client(), ssm_client(), request, settings)
    logger.info("training data split", extra={"run_id": request.run_id, "rows": output["rows"]})
    return output
