"""The batch job against moto (S3, SSM, DynamoDB) and the real model behind a SageMaker runtime stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mlpipe.artifact import read_artifact
from mlpipe.registry import ModelRegistry
from stacks.batch.runtime.job.job import BatchJob, JobSettings
from tests.unit.conftest import BUCKET, PATH, TABLE, ModelRuntime

DATA = "ml-pipeline-data-local-us-east-1-123456789012"


@pytest.fixture
def job_stage(aws, data_stack, predictions_table, trained):
    registry = ModelRegistry(location=data_stack, s3=aws.client("s3"), ssm=aws.client("ssm"))
    registry.register(read_artifact(trained.artifacts["v1"].archive), "v1", actor="ci")
    aws.client("ssm").put_parameter(Name=f"{PATH}/active-version", Value="v1", Type="String", Overwrite=True)
    aws.client("s3").create_bucket(Bucket=DATA)
    return trained


def _job(aws, runtime, **overrides) -> BatchJob:
    settings = JobSettings.model_validate(
        {
            "MODEL_BUCKET": BUCKET,
            "MODEL_PARAMETERS_PATH": PATH,
            "PREDICTIONS_TABLE": TABLE,
            "ENDPOINT_NAME": "ml-pipeline-endpoint-local-us-east-1",
            "OUTPUT_PREFIX": f"s3://{DATA}/output/",
            "PREDICTION_TTL_DAYS": 30,
            "CHUNK_ROWS": 50,
            "REQUEST_ROWS": 20,
            **overrides,
        }
    )
    return BatchJob(
        settings,
        s3=aws.client("s3"),
        ssm=aws.client("ssm"),
        runtime=runtime,
        table=aws.resource("dynamodb").Table(TABLE),
    )


def _csv(dataset, rows: int, bad: dict[int, str]) -> bytes:
    lines = [",".join(dataset.feature_names)]
    for index, vector in enumerate(dataset.test.features[:rows].tolist()):
        values = [repr(v) for v in vector]
        if index in bad:
            values[0] = bad[index]
        lines.append(",".join(values))
    return ("\n".join(lines) + "\n").encode()


def _read(aws, key: str) -> str:
    return str(aws.client("s3").get_object(Bucket=DATA, Key=key)["Body"].read().decode())


def test_good_and_bad_rows_predictions_rejects_and_manifest(aws, job_stage, dataset):
    aws.client("s3").put_object(
        Bucket=DATA, Key="input/day.csv", Body=_csv(dataset, 110, {3: "abc", 70: "-5"})
    )
    runtime = ModelRuntime(job_stage.extracted["v1"])
    counts = _job(aws, runtime).run(f"s3://{DATA}/input/day.csv")
    assert (counts.read, counts.predicted, counts.rejected, counts.failed) == (110, 108, 2, 0)
    assert max(runtime.calls) <= 20, "batches of rows per request, never more than REQUEST_ROWS"
    assert len(runtime.calls) == 7  # chunks of 50/50/10 rows -> 3 + 3 + 1 requests
    manifest = json.loads(_read(aws, "output/day.csv/manifest.json"))
    assert (manifest["read"], manifest["predicted"], manifest["rejected"]) == (110, 108, 2)
    rejects = [json.loads(line) for line in _read(aws, "output/day.csv/rejects.jsonl").splitlines()]
    assert [r["row"] for r in rejects] == [3, 70]
    assert "not a number" in rejects[0]["reasons"][0]
    assert "outside the accepted range" in rejects[1]["reasons"][0]
    items = aws.resource("dynamodb").Table(TABLE).scan()["Items"]
    assert len(items) == 108
    assert {i["source"] for i in items} == {"batch"}
    assert {i["modelVersion"] for i in items} == {"v1"}
    assert all(int(i["expirationTime"]) > datetime.now(UTC).timestamp() for i in items)
    part = [json.loads(line) for line in _read(aws, "output/day.csv/part-00000.jsonl").splitlines()]
    assert len(part) == 49  # row 3 of the first chunk was rejected


def test_a_rerun_of_the_same_input_does_not_duplicate(aws, job_stage, dataset):
    aws.client("s3").put_object(Bucket=DATA, Key="input/day.csv", Body=_csv(dataset, 60, {}))
    job = _job(aws, ModelRuntime(job_stage.extracted["v1"]))
    job.run(f"s3://{DATA}/input/day.csv")
    first = sorted(i["predictionId"] for i in aws.resource("dynamodb").Table(TABLE).scan()["Items"])
    job.run(f"s3://{DATA}/input/day.csv")
    second = sorted(i["predictionId"] for i in aws.resource("dynamodb").Table(TABLE).scan()["Items"])
    assert first == second
    assert len(second) == 60


def test_refused_requests_fail_their_rows_only(aws, job_stage, dataset):
    aws.client("s3").put_object(
        Bucket=DATA,
        Key="input/day.jsonl",
        Body=b"".join(
            json.dumps(dict(zip(dataset.feature_names, v, strict=True))).encode() + b"\n"
            for v in dataset.test.features[:40].tolist()
        )
        + b"{not json\n",
    )
    counts = _job(aws, ModelRuntime(job_stage.extracted["v1"], refuse=1)).run(f"s3://{DATA}/input/day.jsonl")
    assert (counts.read, counts.predicted, counts.rejected, counts.failed) == (41, 20, 1, 20)
    assert "ThrottlingException" in counts.failures[0]
    manifest = json.loads(_read(aws, "output/day.jsonl/manifest.json"))
    assert manifest["failed"] == 20
    rejects = _read(aws, "output/day.jsonl/rejects.jsonl")
    assert "not valid JSON" in rejects


def test_unsupported_input_format_is_refused(aws, job_stage):
    aws.client("s3").put_object(Bucket=DATA, Key="input/day.parquet", Body=b"PAR1")
    with pytest.raises(ValueError, match=r"must be \.csv \(with a header\) or \.jsonl"):
        _job(aws, ModelRuntime(job_stage.extracted["v1"])).run(f"s3://{DATA}/input/day.parquet")
