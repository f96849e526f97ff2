"""Report: the run manifest from the inputs' manifests, its metrics, and its refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stacks.batch.runtime.errors import (
    ConfigurationError,
    InvalidReportInputError,
    ManifestInvalidError,
    ManifestMissingError,
)
from stacks.batch.runtime.handlers.report import handler
from tests.unit.batch.conftest import DATA, OUTPUT_PREFIX, RESULTS, RUNS_PREFIX, csv_body, make_job, read_json
from tests.unit.conftest import ModelRuntime

pytestmark = pytest.mark.usefixtures("fresh_clients")

RUN_KEY = "batch/runs/exec-0001/manifest.json"


@pytest.fixture
def environment(monkeypatch) -> None:
    monkeypatch.setenv("OUTPUT_PREFIX", OUTPUT_PREFIX)
    monkeypatch.setenv("RUNS_PREFIX", RUNS_PREFIX)


@pytest.fixture
def processed(aws, job_stage, dataset) -> list[dict[str, Any]]:
    """Two inputs the job processed (one with rejected rows), as ListInputs listed them."""
    s3 = aws.client("s3")
    s3.put_object(Bucket=DATA, Key="in/a/day.csv", Body=csv_body(dataset, 30, {2: "x"}))
    s3.put_object(Bucket=DATA, Key="in/b/day.csv", Body=csv_body(dataset, 12))
    job = make_job(aws, ModelRuntime(job_stage.extracted["v1"]))
    items = []
    for key in ("in/a/day.csv", "in/b/day.csv"):
        job.run(f"s3://{DATA}/{key}")
        head = s3.head_object(Bucket=DATA, Key=key)
        items.append(
            {"uri": f"s3://{DATA}/{key}", "key": key, "size": head["ContentLength"], "etag": head["ETag"]}
        )
    return items


def _emf(output: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MlPipeline"
            assert document["service"] == "ml-pipeline-batch"
            for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = document[metric["Name"]]  # one value or a list of them
                values[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return values


def _failed(key: str, error: str) -> dict[str, Any]:
    return {"uri": f"s3://{DATA}/{key}", "key": key, "failed": True, "error": error}


def _not_written(aws) -> bool:
    try:
        aws.client("s3").head_object(Bucket=RESULTS, Key=RUN_KEY)
    except ClientError:
        return True
    return False


def test_the_run_manifest_totals_and_metrics(aws, processed, environment, lambda_context, capsys):
    capsys.readouterr()
    result = handler({"execution": "exec-0001", "inputs": processed}, lambda_context)
    assert result == {
        "manifest": f"s3://{RESULTS}/{RUN_KEY}",
        "inputs": 2,
        "failed_inputs": 0,
        "read": 42,
        "predicted": 41,
        "rejected": 1,
        "failed": 0,
    }
    run = read_json(aws, RESULTS, RUN_KEY)
    assert run["execution"] == "exec-0001"
    assert run["totals"] == {k: v for k, v in result.items() if k != "manifest"}
    assert run["finished_at"].endswith("Z")
    first = run["inputs"][0]
    assert first["uri"] == f"s3://{DATA}/in/a/day.csv"
    assert first["manifest"] == f"s3://{RESULTS}/batch/output/in/a/day.csv/manifest.json"
    assert (first["read"], first["predicted"], first["rejected"], first["failed"]) == (30, 29, 1, 0)
    assert first["input_etag"] == first["listed_etag"] == processed[0]["etag"]
    assert (first["failed_input"], first["error"]) == (False, None)
    assert _emf(capsys.readouterr().out) == {
        "InputsProcessed": 2,
        "InputsFailed": 0,
        "RowsRead": 42,
        "RowsPredicted": 41,
        "RowsRejected": 1,
        "RowsFailed": 0,
    }


def test_map_results_with_a_failed_input_are_reported_not_hidden(
    aws, processed, job_stage, dataset, environment, lambda_context, capsys
):
    s3 = aws.client("s3")
    s3.put_object(Bucket=DATA, Key="in/c/day.csv", Body=csv_body(dataset, 30))
    make_job(aws, ModelRuntime(job_stage.extracted["v1"], refuse=1)).run(f"s3://{DATA}/in/c/day.csv")
    etag = s3.head_object(Bucket=DATA, Key="in/c/day.csv")["ETag"]
    inputs = [
        {**processed[0], "outcome": {"mode": "inline", "counts": {"read": 30}}},
        {**processed[1], "outcome": {"mode": "batch", "jobId": "j-1", "status": "SUCCEEDED"}},
        # what the Map's Catch records: the item's uri and key, failed, the error's name
        {**_failed("in/c/day.csv", "RowsFailedError"), "etag": etag},
        _failed("in/d/day.csv", "States.TaskFailed"),
    ]
    capsys.readouterr()
    result = handler({"execution": "exec-0001", "inputs": inputs}, lambda_context)
    assert (result["inputs"], result["failed_inputs"]) == (4, 2)
    assert (result["read"], result["predicted"], result["failed"]) == (72, 51, 20)
    run = read_json(aws, RESULTS, RUN_KEY)
    modes = [(i["mode"], i["failed_input"], i["error"]) for i in run["inputs"]]
    assert modes == [
        ("inline", False, None),
        ("batch", False, None),
        (None, True, "RowsFailedError"),
        (None, True, "States.TaskFailed"),
    ]
    never_finished = run["inputs"][3]
    assert (never_finished["manifest"], never_finished["read"], never_finished["failed"]) == (
        None,
        None,
        None,
    )
    metrics = _emf(capsys.readouterr().out)
    assert (metrics["InputsFailed"], metrics["RowsFailed"]) == (2, 20)


def test_a_manifest_with_failed_rows_fails_its_input_even_unmarked(
    aws, job_stage, dataset, environment, lambda_context
):
    aws.client("s3").put_object(Bucket=DATA, Key="in/day.csv", Body=csv_body(dataset, 25))
    make_job(aws, ModelRuntime(job_stage.extracted["v1"], refuse=1)).run(f"s3://{DATA}/in/day.csv")
    result = handler(
        {"execution": "exec-0001", "inputs": [{"uri": f"s3://{DATA}/in/day.csv"}]}, lambda_context
    )
    assert (result["failed_inputs"], result["failed"]) == (1, 20)
    assert read_json(aws, RESULTS, RUN_KEY)["inputs"][0]["error"] == "RowsFailedError"


def test_a_failed_input_with_an_earlier_runs_manifest_gets_no_counts(
    aws, processed, environment, lambda_context
):
    stale = {**processed[1], "etag": '"0123456789abcdef0123456789abcdef"', "failed": True, "error": "X"}
    result = handler({"execution": "exec-0001", "inputs": [stale]}, lambda_context)
    assert (result["failed_inputs"], result["read"]) == (1, 0)
    assert read_json(aws, RESULTS, RUN_KEY)["inputs"][0]["manifest"] is None


def test_a_missing_manifest_is_a_named_error_and_nothing_is_written(
    aws, processed, environment, lambda_context
):
    aws.client("s3").put_object(Bucket=DATA, Key="in/never.csv", Body=b"a\n1\n")
    inputs = [*processed, {"uri": f"s3://{DATA}/in/never.csv", "key": "in/never.csv"}]
    with pytest.raises(
        ManifestMissingError, match=r"in/never\.csv has no manifest at s3://.*/in/never\.csv/"
    ):
        handler({"execution": "exec-0001", "inputs": inputs}, lambda_context)
    assert _not_written(aws)


def test_a_manifest_of_another_input_or_not_a_manifest_is_refused(
    aws, processed, environment, lambda_context
):
    other = {"uri": f"s3://other-data-bucket/{processed[0]['key']}", "key": processed[0]["key"]}
    with pytest.raises(ManifestInvalidError, match="is the manifest of"):
        handler({"execution": "exec-0001", "inputs": [other]}, lambda_context)
    aws.client("s3").put_object(Bucket=RESULTS, Key="batch/output/in/b/day.csv/manifest.json", Body=b"[]")
    with pytest.raises(ManifestInvalidError, match="is not a batch job manifest"):
        handler({"execution": "exec-0001", "inputs": processed}, lambda_context)
    assert _not_written(aws)


def test_a_run_without_inputs_writes_an_empty_manifest(aws, job_stage, environment, lambda_context):
    result = handler({"execution": "exec-0001", "inputs": []}, lambda_context)
    assert (result["inputs"], result["read"], result["failed_inputs"]) == (0, 0, 0)
    assert read_json(aws, RESULTS, RUN_KEY)["inputs"] == []


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"inputs": []}, "execution: Field required"),
        ({"execution": "a/b", "inputs": []}, "execution: String should match pattern"),
        ({"execution": "e-1", "inputs": [{"key": "in/day.csv"}]}, "inputs.0.uri: Field required"),
        ({"execution": "e-1", "inputs": {"uri": "s3://b/k"}}, "inputs: Input should be a valid list"),
    ],
)
def test_an_event_of_the_wrong_shape_is_a_named_error(aws, environment, lambda_context, event, named):
    with pytest.raises(InvalidReportInputError, match=r'must be \{"execution"') as raised:
        handler(event, lambda_context)
    assert named in str(raised.value)


def test_a_missing_runs_prefix_is_a_named_error(aws, environment, monkeypatch, lambda_context):
    monkeypatch.delenv("RUNS_PREFIX")
    with pytest.raises(ConfigurationError, match="RUNS_PREFIX: Field required"):
        handler({"execution": "exec-0001", "inputs": []}, lambda_context)
