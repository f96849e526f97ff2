"""The batch layer's EventBridge triggers end to end: S3 -> EventBridge -> Step Functions, and the schedule.

Seed 000's integration point 3. An input file put under the batch input prefix of the data bucket
(whose EventBridge notifications are on) is an ``Object Created`` event; the batch layer's rule
starts the state machine with its input transformer (``{"bucket", "prefix": <the key>}``) and an
execution named by a UUID, as EventBridge names them. On the local stage the event comes from the
dispatcher's S3 source and the execution runs in moto's interpreter; on a deployed stage S3,
EventBridge and Step Functions do the same. ``mlpipe events run-schedule`` starts the daily
schedule's run now, with the input the schedule sends (the whole input prefix).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlpipe.batch import await_run, rule_started_run
from mlpipe.cli import main
from shared.outputs import BatchOutputs
from tests.integration.conftest import Target
from tests.integration.test_batch import BAD_ROWS, part_records, write_csv

ROWS = 40
START_TIMEOUT_SECONDS = 120  # S3 -> EventBridge -> StartExecution: seconds on AWS, ~1 s locally


def started_for(target: Target, run_input: dict[str, str], since: datetime) -> dict[str, Any]:
    """The execution of the batch state machine started since ``since`` with ``run_input``."""
    machine = target.batch[BatchOutputs.STATE_MACHINE_ARN]
    arn = rule_started_run(target.session, machine, run_input, since, timeout=START_TIMEOUT_SECONDS)
    (execution,) = [
        e
        for e in target.session.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
        if e["executionArn"] == arn
    ]
    return dict(execution)


def test_an_input_put_under_the_prefix_is_run_by_the_s3_rule(target: Target, tmp_path: Path):
    bucket = target.batch[BatchOutputs.INPUT_BUCKET_NAME]
    key = f"{target.batch[BatchOutputs.INPUT_PREFIX]}it-events-{uuid.uuid4().hex[:8]}/input.csv"
    source = write_csv(tmp_path / "input.csv", ROWS)
    since = datetime.now(UTC) - timedelta(seconds=5)  # the account's clock may lag a little
    target.session.client("s3").upload_file(str(source), bucket, key)

    execution = started_for(target, {"bucket": bucket, "prefix": key}, since)
    assert uuid.UUID(execution["name"]).version == 4, "EventBridge names the execution with a UUID"
    result = await_run(target.session, execution["executionArn"], timeout=600)
    assert result["status"] == "SUCCEEDED", result["failures"]
    totals = result["manifest"]["totals"]
    assert totals["inputs"] == 1
    assert (totals["read"], totals["predicted"], totals["rejected"]) == (ROWS + BAD_ROWS, ROWS, BAD_ROWS)
    (entry,) = result["manifest"]["inputs"]
    assert entry["uri"] == f"s3://{bucket}/{key}"
    records = part_records(target, result)
    assert len(records) == ROWS
    item = target.table.get_item(
        Key={"predictionId": records[0]["predictionId"], "timestamp": records[0]["timestamp"]}
    )
    assert item["Item"]["source"] == "batch"


def test_run_schedule_starts_the_batch_schedules_run(target: Target, capsys: pytest.CaptureFixture[str]):
    bucket, prefix = target.batch[BatchOutputs.INPUT_BUCKET_NAME], target.batch[BatchOutputs.INPUT_PREFIX]
    code = main(
        ["--stage", target.name, "--json", "events", "run-schedule", "batch-schedule"], session=target.session
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["rule"] == target.batch[BatchOutputs.SCHEDULE_RULE_NAME]
    (started,) = data["targets"]
    assert started["type"] == "state machine"
    assert started["arn"] == target.batch[BatchOutputs.STATE_MACHINE_ARN]
    assert started["input"] == {"bucket": bucket, "prefix": prefix}
    result = await_run(target.session, started["execution"], timeout=900)
    assert result["status"] == "SUCCEEDED", result["failures"]
