"""Fixtures of the batch layer: the champion registered, a data bucket and a results bucket in moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mlpipe.artifact import read_artifact
from mlpipe.registry import ModelRegistry
from stacks.batch.runtime import clients
from stacks.batch.runtime.handlers import predict_inline
from stacks.batch.runtime.job.job import BatchJob, JobSettings
from tests.unit.conftest import BUCKET, ENDPOINT, PATH, TABLE, ModelRuntime

DATA = "ml-pipeline-data-local-us-east-1-123456789012"
RESULTS = "ml-pipeline-results-local-us-east-1-123456789012"
OUTPUT_PREFIX = f"s3://{RESULTS}/batch/output"
RUNS_PREFIX = f"s3://{RESULTS}/batch/runs"


@pytest.fixture
def job_stage(aws, data_stack, predictions_table, trained):
    """v1 registered and active; the data and results buckets exist."""
    registry = ModelRegistry(location=data_stack, s3=aws.client("s3"), ssm=aws.client("ssm"))
    registry.register(read_artifact(trained.artifacts["v1"].archive), "v1", actor="ci")
    aws.client("ssm").put_parameter(Name=f"{PATH}/active-version", Value="v1", Type="String", Overwrite=True)
    aws.client("s3").create_bucket(Bucket=DATA)
    aws.client("s3").create_bucket(Bucket=RESULTS)
    return trained


def job_environment(**overrides: Any) -> dict[str, str]:
    """The job's settings as the stack sets them (the container's and the inline function's)."""
    return {
        "MODEL_BUCKET": BUCKET,
        "MODEL_PARAMETERS_PATH": PATH,
        "PREDICTIONS_TABLE": TABLE,
        "ENDPOINT_NAME": ENDPOINT,
        "OUTPUT_PREFIX": OUTPUT_PREFIX,
        "PREDICTION_TTL_DAYS": "30",
        "CHUNK_ROWS": "50",
        "REQUEST_ROWS": "20",
        **{name: str(value) for name, value in overrides.items()},
    }


def make_job(aws, runtime: Any, **overrides: Any) -> BatchJob:
    return BatchJob(
        JobSettings.model_validate(job_environment(**overrides)),
        s3=aws.client("s3"),
        ssm=aws.client("ssm"),
        runtime=runtime,
        table=aws.resource("dynamodb").Table(TABLE),
    )


def csv_body(dataset, rows: int, bad: dict[int, str] | None = None, start: int = 0) -> bytes:
    """A CSV of test rows with a header; ``bad`` replaces the first value of the given rows."""
    bad = bad or {}
    lines = [",".join(dataset.feature_names)]
    for index, vector in enumerate(dataset.test.features[start : start + rows].tolist()):
        values = [repr(v) for v in vector]
        if index in bad:
            values[0] = bad[index]
        lines.append(",".join(values))
    return ("\n".join(lines) + "\n").encode()


def jsonl_body(dataset, rows: int) -> bytes:
    return b"".join(
        json.dumps(dict(zip(dataset.feature_names, v, strict=True))).encode() + b"\n"
        for v in dataset.test.features[:rows].tolist()
    )


def read_json(aws, bucket: str, key: str) -> Any:
    return json.loads(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture
def runtime(job_stage) -> ModelRuntime:
    return ModelRuntime(job_stage.extracted["v1"])


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    """Each test builds the functions' per-environment clients anew, inside its own moto account."""
    for cached in (clients.s3_client, predict_inline.current):
        cached.cache_clear()
    yield
    for cached in (clients.s3_client, predict_inline.current):
        cached.cache_clear()
