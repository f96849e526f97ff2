"""ListInputs against moto: accepted inputs, what is skipped as processed, truncation, bad events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from stacks.batch.runtime import clients
from stacks.batch.runtime.errors import ConfigurationError, InvalidRunInputError
from stacks.batch.runtime.events import RunInput
from stacks.batch.runtime.handlers import list_inputs
from stacks.batch.runtime.handlers.list_inputs import ListSettings, handler
from stacks.batch.runtime.manifest import InputManifest
from tests.unit.batch.conftest import DATA, OUTPUT_PREFIX, RESULTS, csv_body, make_job
from tests.unit.conftest import ModelRuntime

pytestmark = pytest.mark.usefixtures("fresh_clients")


@pytest.fixture
def environment(monkeypatch) -> None:
    monkeypatch.setenv("OUTPUT_PREFIX", OUTPUT_PREFIX)
    monkeypatch.delenv("MAX_INPUTS", raising=False)
    monkeypatch.delenv("RUNS_PREFIX", raising=False)


def _put(aws, key: str, body: bytes = b"a,b\n1,2\n") -> str:
    return str(aws.client("s3").put_object(Bucket=DATA, Key=key, Body=body)["ETag"])


def _manifest(aws, key: str, etag: str, *, failed: int = 0, bucket: str = DATA) -> None:
    """The manifest a finished job leaves (for listing tests that need no predictions)."""
    document = InputManifest(
        input=f"s3://{bucket}/{key}",
        input_etag=etag,
        read=2,
        predicted=2 - failed,
        rejected=0,
        failed=failed,
        finished_at="2026-11-24T02:00:00.000Z",
    ).model_dump()
    aws.client("s3").put_object(
        Bucket=RESULTS, Key=f"batch/output/{key}/manifest.json", Body=json.dumps(document).encode()
    )


def test_lists_accepted_inputs_with_sizes_and_etags(aws, job_stage, environment, lambda_context):
    etags = {key: _put(aws, key) for key in ("in/a.csv", "in/b.jsonl", "in/c.json", "in/D.CSV")}
    _put(aws, "in/notes.txt")
    _put(aws, "in/archive.csv.gz")
    aws.client("s3").put_object(Bucket=DATA, Key="in/sub/", Body=b"")  # a console "folder"
    _put(aws, "other/e.csv")

    result = handler({"bucket": DATA, "prefix": "in/"}, lambda_context)

    assert result["bucket"] == DATA
    assert result["prefix"] == "in/"
    assert [i["key"] for i in result["inputs"]] == ["in/D.CSV", "in/a.csv", "in/b.jsonl", "in/c.json"]
    assert result["inputs"][1] == {
        "uri": f"s3://{DATA}/in/a.csv",
        "key": "in/a.csv",
        "size": len(b"a,b\n1,2\n"),
        "etag": etags["in/a.csv"],
    }
    assert (result["count"], result["skipped"], result["ignored"], result["truncated"]) == (4, 0, 3, False)


def test_a_whole_key_as_prefix_lists_that_object(aws, job_stage, environment, lambda_context):
    _put(aws, "in/2026/11/day.csv")
    _put(aws, "in/2026/11/other.csv")
    result = handler({"bucket": DATA, "prefix": "in/2026/11/day.csv"}, lambda_context)
    assert [i["uri"] for i in result["inputs"]] == [f"s3://{DATA}/in/2026/11/day.csv"]


def test_inputs_processed_without_failures_are_skipped_until_they_change(
    aws, job_stage, dataset, environment, lambda_context
):
    _put(aws, "in/day.csv", csv_body(dataset, 12))
    _put(aws, "in/next.csv", csv_body(dataset, 5))
    event = {"bucket": DATA, "prefix": "in/"}
    assert handler(event, lambda_context)["count"] == 2

    make_job(aws, ModelRuntime(job_stage.extracted["v1"])).run(f"s3://{DATA}/in/day.csv")
    result = handler(event, lambda_context)
    assert [i["key"] for i in result["inputs"]] == ["in/next.csv"]
    assert result["skipped"] == 1

    _put(aws, "in/day.csv", csv_body(dataset, 13))  # a new version: a new ETag
    result = handler(event, lambda_context)
    assert [i["key"] for i in result["inputs"]] == ["in/day.csv", "in/next.csv"]
    assert result["skipped"] == 0


def test_an_input_whose_run_had_failed_rows_is_listed_again(
    aws, job_stage, dataset, environment, lambda_context
):
    _put(aws, "in/day.csv", csv_body(dataset, 30))
    counts = make_job(aws, ModelRuntime(job_stage.extracted["v1"], refuse=1)).run(f"s3://{DATA}/in/day.csv")
    assert counts.failed == 20
    event = {"bucket": DATA, "prefix": "in/"}
    assert [i["key"] for i in handler(event, lambda_context)["inputs"]] == ["in/day.csv"]

    make_job(aws, ModelRuntime(job_stage.extracted["v1"])).run(f"s3://{DATA}/in/day.csv")
    result = handler(event, lambda_context)
    assert (result["count"], result["skipped"]) == (0, 1)


def test_a_manifest_of_another_bucket_with_the_same_key_does_not_skip(aws, job_stage, environment):
    etag = _put(aws, "in/day.csv")
    _manifest(aws, "in/day.csv", etag, bucket="some-other-bucket")
    listing = list_inputs.list_inputs(
        aws.client("s3"), RunInput(bucket=DATA, prefix="in/"), ListSettings(OUTPUT_PREFIX=OUTPUT_PREFIX)
    )
    assert [i.key for i in listing.inputs] == ["in/day.csv"]


def test_an_unreadable_manifest_lists_the_input_again(aws, job_stage, environment, lambda_context):
    _put(aws, "in/day.csv")
    aws.client("s3").put_object(Bucket=RESULTS, Key="batch/output/in/day.csv/manifest.json", Body=b"{trunc")
    result = handler({"bucket": DATA, "prefix": "in/"}, lambda_context)
    assert [i["key"] for i in result["inputs"]] == ["in/day.csv"]


def test_truncated_at_max_inputs_and_the_next_run_takes_the_rest(
    aws, job_stage, environment, monkeypatch, lambda_context
):
    monkeypatch.setenv("MAX_INPUTS", "3")
    etags = {f"in/{n}.csv": _put(aws, f"in/{n}.csv") for n in range(7)}
    event = {"bucket": DATA, "prefix": "in/"}

    first = handler(event, lambda_context)
    assert [i["key"] for i in first["inputs"]] == ["in/0.csv", "in/1.csv", "in/2.csv"]
    assert (first["count"], first["truncated"]) == (3, True)

    for item in first["inputs"]:  # the run processes what it listed
        _manifest(aws, item["key"], etags[item["key"]])
    second = handler(event, lambda_context)
    assert [i["key"] for i in second["inputs"]] == ["in/3.csv", "in/4.csv", "in/5.csv"]
    assert (second["skipped"], second["truncated"]) == (3, True)

    for item in second["inputs"]:
        _manifest(aws, item["key"], etags[item["key"]])
    third = handler(event, lambda_context)
    assert [i["key"] for i in third["inputs"]] == ["in/6.csv"]
    assert (third["skipped"], third["truncated"]) == (6, False)


def test_exactly_max_inputs_is_not_truncated(aws, job_stage, environment, monkeypatch, lambda_context):
    monkeypatch.setenv("MAX_INPUTS", "2")
    _put(aws, "in/0.csv")
    _put(aws, "in/1.csv")
    result = handler({"bucket": DATA, "prefix": "in/"}, lambda_context)
    assert (result["count"], result["truncated"]) == (2, False)


def test_the_payload_budget_truncates_long_keys_across_pages(aws, job_stage):
    keys = [f"in/{'x' * 200}-{n:02d}.csv" for n in range(10)]
    for key in keys:
        _put(aws, key)
    listing = list_inputs.list_inputs(
        aws.client("s3"),
        RunInput(bucket=DATA, prefix="in/"),
        ListSettings(OUTPUT_PREFIX=OUTPUT_PREFIX, MAX_INPUTS=500),
        payload_budget=3000,
        page_size=3,
    )
    assert [i.key for i in listing.inputs] == keys[: len(listing.inputs)]
    assert 3 < len(listing.inputs) < 10, "more than one page listed, cut by the budget"
    assert len(json.dumps([i.model_dump() for i in listing.inputs])) <= 3000
    assert listing.truncated


def test_every_page_is_listed(aws, job_stage):
    keys = [f"in/{n:02d}.csv" for n in range(7)]
    for key in keys:
        _put(aws, key)
    listing = list_inputs.list_inputs(
        aws.client("s3"),
        RunInput(bucket=DATA, prefix="in/"),
        ListSettings(OUTPUT_PREFIX=OUTPUT_PREFIX),
        page_size=2,
    )
    assert [i.key for i in listing.inputs] == keys
    assert not listing.truncated


def test_results_in_the_listed_bucket_are_never_inputs(aws, job_stage, monkeypatch, lambda_context):
    monkeypatch.setenv("OUTPUT_PREFIX", f"s3://{DATA}/batch/output")
    monkeypatch.setenv("RUNS_PREFIX", f"s3://{DATA}/batch/runs")
    _put(aws, "batch/input/day.csv")
    _put(aws, "batch/output/batch/input/day.csv/manifest.json", b"{}")
    _put(aws, "batch/output/batch/input/day.csv/part-00000.jsonl", b"{}\n")
    _put(aws, "batch/runs/exec-1/manifest.json", b"{}")
    _put(aws, "batch/outputs-are-not-this.csv")
    result = handler({"bucket": DATA, "prefix": ""}, lambda_context)
    assert [i["key"] for i in result["inputs"]] == ["batch/input/day.csv", "batch/outputs-are-not-this.csv"]
    assert result["ignored"] == 3


def test_s3_throttling_is_retried_by_the_client(aws, job_stage, environment, lambda_context):
    _put(aws, "in/day.csv")
    throttled: list[str] = []

    class Raw:
        def stream(self, **_: Any) -> Any:
            yield b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"

    def slow_down(request: Any, **_: Any) -> AWSResponse | None:
        if throttled:
            return None
        throttled.append(request.url)
        return AWSResponse(request.url, 503, HTTPHeaders(), Raw())

    clients.s3_client().meta.events.register_first("before-send.s3.ListObjectsV2", slow_down)
    result = handler({"bucket": DATA, "prefix": "in/"}, lambda_context)
    assert len(throttled) == 1
    assert [i["key"] for i in result["inputs"]] == ["in/day.csv"]


@pytest.mark.parametrize(
    ("event", "named"),
    [
        ({"bucket": DATA}, "prefix: Field required"),
        ({"prefix": "in/"}, "bucket: Field required"),
        ({"bucket": "Not_A_Bucket", "prefix": "in/"}, "bucket: String should match pattern"),
        ({"bucket": DATA, "prefix": 7}, "prefix: Input should be a valid string"),
        (["in/"], "Input should be a valid dictionary"),
    ],
)
def test_an_event_of_the_wrong_shape_is_a_named_error(aws, environment, lambda_context, event, named):
    with pytest.raises(InvalidRunInputError, match=r'must be \{"bucket"') as raised:
        handler(event, lambda_context)
    assert named in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OUTPUT_PREFIX", None, "OUTPUT_PREFIX: Field required"),
        ("OUTPUT_PREFIX", "results/batch/output", "OUTPUT_PREFIX: String should match pattern"),
        ("MAX_INPUTS", "0", "MAX_INPUTS: Input should be greater than 0"),
    ],
)
def test_an_invalid_environment_is_a_named_error(
    aws, environment, monkeypatch, lambda_context, variable, value, named
):
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=named):
        handler({"bucket": DATA, "prefix": "in/"}, lambda_context)


def test_runs_prefix_is_optional_and_checked(aws, environment, monkeypatch, lambda_context):
    monkeypatch.setenv("RUNS_PREFIX", "not-a-uri")
    with pytest.raises(ConfigurationError, match="RUNS_PREFIX"):
        handler({"bucket": DATA, "prefix": "in/"}, lambda_context)
