"""PredictInline: the batch job in Lambda for one small input (moto and the real model)."""

from __future__ import annotations

import json

import pytest

from stacks.batch.runtime.errors import (
    ConfigurationError,
    InputNotFoundError,
    InvalidInputItemError,
    RowsFailedError,
    UnsupportedInputError,
)
from stacks.batch.runtime.handlers import predict_inline
from stacks.batch.runtime.handlers.predict_inline import handler
from stacks.batch.runtime.job.job import BatchJob
from tests.unit.batch.conftest import DATA, RESULTS, csv_body, job_environment, make_job, read_json
from tests.unit.conftest import TABLE, ModelRuntime

pytestmark = pytest.mark.usefixtures("fresh_clients")

MANIFEST = f"s3://{RESULTS}/batch/output/in/day.csv/manifest.json"


@pytest.fixture
def inline(aws, job_stage, monkeypatch):
    """The function's job, with the model behind the runtime stand-in; set ``inline.runtime`` to swap."""
    job = make_job(aws, ModelRuntime(job_stage.extracted["v1"]))
    monkeypatch.setattr(predict_inline, "current", lambda: job)
    return job


def _item(aws, key: str = "in/day.csv") -> dict:
    head = aws.client("s3").head_object(Bucket=DATA, Key=key)
    return {"uri": f"s3://{DATA}/{key}", "key": key, "size": head["ContentLength"], "etag": head["ETag"]}


def test_good_and_bad_rows(aws, dataset, inline, lambda_context):
    aws.client("s3").put_object(Bucket=DATA, Key="in/day.csv", Body=csv_body(dataset, 60, {5: "x", 6: "-3"}))
    result = handler(_item(aws), lambda_context)
    assert result == {
        "uri": f"s3://{DATA}/in/day.csv",
        "read": 60,
        "predicted": 58,
        "rejected": 2,
        "failed": 0,
        "manifest": MANIFEST,
    }
    manifest = read_json(aws, RESULTS, "batch/output/in/day.csv/manifest.json")
    assert (manifest["read"], manifest["predicted"], manifest["rejected"], manifest["failed"]) == (
        60,
        58,
        2,
        0,
    )
    assert len(aws.resource("dynamodb").Table(TABLE).scan()["Items"]) == 58


def test_throttled_rows_raise_rows_failed_after_the_manifest_and_a_retry_completes(
    aws, dataset, inline, job_stage, lambda_context
):
    aws.client("s3").put_object(Bucket=DATA, Key="in/day.csv", Body=csv_body(dataset, 30))
    inline.runtime = ModelRuntime(job_stage.extracted["v1"], refuse=1)
    with pytest.raises(RowsFailedError, match=r"20 of 30 rows failed .*ThrottlingException") as raised:
        handler(_item(aws), lambda_context)
    assert type(raised.value).__name__ == "RowsFailedError"  # the error type Step Functions sees
    assert MANIFEST in str(raised.value)
    manifest = read_json(aws, RESULTS, "batch/output/in/day.csv/manifest.json")
    assert (manifest["predicted"], manifest["failed"]) == (10, 20)

    inline.runtime = ModelRuntime(job_stage.extracted["v1"])
    assert handler(_item(aws), lambda_context)["failed"] == 0
    assert read_json(aws, RESULTS, "batch/output/in/day.csv/manifest.json")["failed"] == 0
    assert len(aws.resource("dynamodb").Table(TABLE).scan()["Items"]) == 30, "the retry did not duplicate"


def test_only_the_uri_is_needed(aws, dataset, inline, lambda_context):
    aws.client("s3").put_object(Bucket=DATA, Key="in/day.csv", Body=csv_body(dataset, 3))
    assert handler({"uri": f"s3://{DATA}/in/day.csv"}, lambda_context)["predicted"] == 3


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"key": "in/day.csv"}, "uri: Field required"),
        ({"uri": "in/day.csv"}, "uri: String should match pattern"),
        ({"uri": f"s3://{DATA}/in/day.csv", "size": -1}, "size: Input should be greater than or equal to 0"),
    ],
)
def test_an_event_of_the_wrong_shape_is_a_named_error(inline, lambda_context, event, named):
    with pytest.raises(InvalidInputItemError, match=r'must be \{"uri"') as raised:
        handler(event, lambda_context)
    assert named in str(raised.value)


def test_unsupported_and_missing_inputs_are_named_errors(aws, inline, lambda_context):
    aws.client("s3").put_object(Bucket=DATA, Key="in/day.parquet", Body=b"PAR1")
    with pytest.raises(UnsupportedInputError):
        handler({"uri": f"s3://{DATA}/in/day.parquet"}, lambda_context)
    with pytest.raises(InputNotFoundError):
        handler({"uri": f"s3://{DATA}/in/gone.csv"}, lambda_context)


def test_the_job_is_built_once_from_the_environment(aws, job_stage, monkeypatch):
    for name, value in job_environment(CHUNK_ROWS=200).items():
        monkeypatch.setenv(name, value)
    job = predict_inline.current()
    assert isinstance(job, BatchJob)
    assert predict_inline.current() is job, "clients are created once per execution environment"
    assert (job.settings.chunk_rows, job.settings.request_rows) == (200, 20)
    assert job.runtime.meta.service_model.service_name == "sagemaker-runtime"
    assert job.runtime.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 9}  # 8 retries


def test_a_missing_setting_is_a_named_error(aws, monkeypatch):
    environment = job_environment()
    del environment["ENDPOINT_NAME"]
    with pytest.raises(ConfigurationError, match="ENDPOINT_NAME: Field required"):
        predict_inline.from_environment(environment, aws)


def test_the_result_is_json(aws, dataset, inline, lambda_context):
    aws.client("s3").put_object(Bucket=DATA, Key="in/day.csv", Body=csv_body(dataset, 2))
    assert json.loads(json.dumps(handler(_item(aws), lambda_context)))["read"] == 2
