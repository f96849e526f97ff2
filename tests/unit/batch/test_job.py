"""The batch job against moto (S3, SSM, DynamoDB) and the real model behind a SageMaker runtime stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from stacks.batch.runtime.errors import InputNotFoundError, UnsupportedInputError
from stacks.batch.runtime.job import job as job_module
from tests.unit.batch.conftest import DATA, RESULTS, csv_body, job_environment, jsonl_body, make_job
from tests.unit.conftest import TABLE, ModelRuntime

OUT = "batch/output/input"  # the results of s3://DATA/input/... (the whole input key is kept)
ENDPOINT_URL = "https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/x/invocations"


class FailingRuntime(ModelRuntime):
    """The model answers, except that the first ``failures`` requests raise ``error`` (after retries)."""

    def __init__(self, model_dir: Any, error: Exception, failures: int) -> None:
        super().__init__(model_dir)
        self.error = error
        self.failures = failures

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise self.error
        return super().invoke_endpoint(**kwargs)


def _read(aws, key: str) -> str:
    return str(aws.client("s3").get_object(Bucket=RESULTS, Key=key)["Body"].read().decode())


def _keys(aws, prefix: str) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=RESULTS, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_good_and_bad_rows_predictions_rejects_and_manifest(aws, job_stage, dataset):
    aws.client("s3").put_object(
        Bucket=DATA, Key="input/day.csv", Body=csv_body(dataset, 110, {3: "abc", 70: "-5"})
    )
    runtime = ModelRuntime(job_stage.extracted["v1"])
    counts = make_job(aws, runtime).run(f"s3://{DATA}/input/day.csv")
    assert (counts.read, counts.predicted, counts.rejected, counts.failed) == (110, 108, 2, 0)
    assert max(runtime.calls) <= 20, "batches of rows per request, never more than REQUEST_ROWS"
    assert len(runtime.calls) == 7  # chunks of 50/50/10 rows -> 3 + 3 + 1 requests
    manifest = json.loads(_read(aws, f"{OUT}/day.csv/manifest.json"))
    assert (manifest["read"], manifest["predicted"], manifest["rejected"]) == (110, 108, 2)
    assert manifest["input"] == f"s3://{DATA}/input/day.csv"
    head = aws.client("s3").head_object(Bucket=DATA, Key="input/day.csv")
    assert manifest["input_etag"] == head["ETag"]
    assert manifest["output"] == f"s3://{RESULTS}/{OUT}/day.csv/"
    rejects = [json.loads(line) for line in _read(aws, f"{OUT}/day.csv/rejects.jsonl").splitlines()]
    assert [r["row"] for r in rejects] == [3, 70]
    assert "not a number" in rejects[0]["reasons"][0]
    assert "outside the accepted range" in rejects[1]["reasons"][0]
    items = aws.resource("dynamodb").Table(TABLE).scan()["Items"]
    assert len(items) == 108
    assert {i["source"] for i in items} == {"batch"}
    assert {i["modelVersion"] for i in items} == {"v1"}
    assert all(int(i["expirationTime"]) > datetime.now(UTC).timestamp() for i in items)
    part = [json.loads(line) for line in _read(aws, f"{OUT}/day.csv/part-00000.jsonl").splitlines()]
    assert len(part) == 49  # row 3 of the first chunk was rejected
    assert _keys(aws, f"{OUT}/day.csv/") == [
        f"{OUT}/day.csv/{name}"
        for name in (
            "manifest.json",
            "part-00000.jsonl",
            "part-00001.jsonl",
            "part-00002.jsonl",
            "rejects.jsonl",
        )
    ]


def test_a_rerun_of_the_same_input_does_not_duplicate(aws, job_stage, dataset):
    aws.client("s3").put_object(Bucket=DATA, Key="input/day.csv", Body=csv_body(dataset, 60))
    job = make_job(aws, ModelRuntime(job_stage.extracted["v1"]))
    job.run(f"s3://{DATA}/input/day.csv")
    first = sorted(i["predictionId"] for i in aws.resource("dynamodb").Table(TABLE).scan()["Items"])
    job.run(f"s3://{DATA}/input/day.csv")
    second = sorted(i["predictionId"] for i in aws.resource("dynamodb").Table(TABLE).scan()["Items"])
    assert first == second
    assert len(second) == 60


def test_a_rerun_with_larger_chunks_leaves_no_stale_part_files(aws, job_stage, dataset):
    aws.client("s3").put_object(Bucket=DATA, Key="input/day.csv", Body=csv_body(dataset, 60))
    runtime = ModelRuntime(job_stage.extracted["v1"])
    make_job(aws, runtime, CHUNK_ROWS=20).run(f"s3://{DATA}/input/day.csv")
    assert len([k for k in _keys(aws, f"{OUT}/day.csv/") if "/part-" in k]) == 3
    make_job(aws, runtime, CHUNK_ROWS=50).run(f"s3://{DATA}/input/day.csv")
    parts = [k for k in _keys(aws, f"{OUT}/day.csv/") if "/part-" in k]
    assert parts == [f"{OUT}/day.csv/part-00000.jsonl", f"{OUT}/day.csv/part-00001.jsonl"]
    rows = [json.loads(line)["row"] for key in parts for line in _read(aws, key).splitlines()]
    assert sorted(rows) == list(range(60)), "each row once in the results"


def test_inputs_with_the_same_name_in_different_folders_do_not_collide(aws, job_stage, dataset):
    s3 = aws.client("s3")
    s3.put_object(Bucket=DATA, Key="input/a/day.csv", Body=csv_body(dataset, 10))
    s3.put_object(Bucket=DATA, Key="input/b/day.csv", Body=csv_body(dataset, 25, start=10))
    job = make_job(aws, ModelRuntime(job_stage.extracted["v1"]))
    job.run(f"s3://{DATA}/input/a/day.csv")
    job.run(f"s3://{DATA}/input/b/day.csv")
    first = json.loads(_read(aws, f"{OUT}/a/day.csv/manifest.json"))
    second = json.loads(_read(aws, f"{OUT}/b/day.csv/manifest.json"))
    assert (first["input"], first["read"]) == (f"s3://{DATA}/input/a/day.csv", 10)
    assert (second["input"], second["read"]) == (f"s3://{DATA}/input/b/day.csv", 25)
    assert len(aws.resource("dynamodb").Table(TABLE).scan()["Items"]) == 35


def test_refused_requests_fail_their_rows_only(aws, job_stage, dataset):
    aws.client("s3").put_object(
        Bucket=DATA,
        Key="input/day.jsonl",
        Body=jsonl_body(dataset, 40) + b"{not json\n" + b"[" * 50_000 + b"]" * 50_000 + b"\n",
    )
    counts = make_job(aws, ModelRuntime(job_stage.extracted["v1"], refuse=1)).run(
        f"s3://{DATA}/input/day.jsonl"
    )
    assert (counts.read, counts.predicted, counts.rejected, counts.failed) == (42, 20, 2, 20)
    assert "ThrottlingException" in counts.failures[0]
    manifest = json.loads(_read(aws, f"{OUT}/day.jsonl/manifest.json"))
    assert manifest["failed"] == 20
    rejects = _read(aws, f"{OUT}/day.jsonl/rejects.jsonl")
    assert "not valid JSON" in rejects
    assert "nested more than 32 levels deep" in rejects


@pytest.mark.parametrize(
    "error",
    [ReadTimeoutError(endpoint_url=ENDPOINT_URL), EndpointConnectionError(endpoint_url=ENDPOINT_URL)],
    ids=["read-timeout", "connection-error"],
)
def test_timeouts_and_connection_errors_fail_their_rows_only(aws, job_stage, dataset, error):
    aws.client("s3").put_object(Bucket=DATA, Key="input/day.csv", Body=csv_body(dataset, 45))
    runtime = FailingRuntime(job_stage.extracted["v1"], error, failures=1)
    counts = make_job(aws, runtime).run(f"s3://{DATA}/input/day.csv")
    assert (counts.read, counts.predicted, counts.rejected, counts.failed) == (45, 25, 0, 20)
    assert counts.failures[0].startswith("rows 0-19: ")
    assert ENDPOINT_URL in counts.failures[0]
    manifest = json.loads(_read(aws, f"{OUT}/day.csv/manifest.json"))
    assert (manifest["predicted"], manifest["failed"]) == (25, 20)
    assert ENDPOINT_URL in manifest["failures"][0]
    assert len(aws.resource("dynamodb").Table(TABLE).scan()["Items"]) == 25


def test_the_command_exits_non_zero_when_rows_failed(aws, job_stage, dataset, monkeypatch, capsys):
    aws.client("s3").put_object(Bucket=DATA, Key="input/day.csv", Body=csv_body(dataset, 30))
    for name, value in job_environment().items():
        monkeypatch.setenv(name, value)
    failing = FailingRuntime(job_stage.extracted["v1"], ReadTimeoutError(endpoint_url=ENDPOINT_URL), 1)
    healthy = ModelRuntime(job_stage.extracted["v1"])
    built = job_module.build

    def build_with(runtime: Any) -> Any:
        def build(settings: Any, session: Any) -> Any:
            job = built(settings, session)
            job.runtime = runtime
            return job

        return build

    monkeypatch.setattr(job_module, "build", build_with(failing))
    assert job_module.main([f"s3://{DATA}/input/day.csv"]) == 1
    assert json.loads(capsys.readouterr().out) == {"read": 30, "predicted": 10, "rejected": 0, "failed": 20}
    monkeypatch.setattr(job_module, "build", build_with(healthy))
    assert job_module.main([f"s3://{DATA}/input/day.csv"]) == 0


def test_unsupported_input_format_is_refused(aws, job_stage):
    aws.client("s3").put_object(Bucket=DATA, Key="input/day.parquet", Body=b"PAR1")
    with pytest.raises(UnsupportedInputError, match=r"must be \.csv \(with a header\) or \.jsonl"):
        make_job(aws, ModelRuntime(job_stage.extracted["v1"])).run(f"s3://{DATA}/input/day.parquet")


def test_a_missing_input_is_a_named_error(aws, job_stage):
    with pytest.raises(InputNotFoundError, match=r"input/gone\.csv does not exist"):
        make_job(aws, ModelRuntime(job_stage.extracted["v1"])).run(f"s3://{DATA}/input/gone.csv")
