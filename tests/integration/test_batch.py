"""The batch layer end to end: a file through the state machine, the job and the table, counted.

On the local stage the state machine is interpreted by moto, its Lambda tasks run the real
handlers and a Batch job runs the job definition's command as a process; on a deployed stage the
same requests go to Step Functions, Lambda and AWS Batch on Fargate.
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from local.smoke import sample_rows
from mlpipe.batch import run_batch
from shared.config import get_config
from tests.integration.conftest import Target

BAD_ROWS = 2  # a value that is not a number, and a value far outside the trained range


def write_csv(path: Path, rows: int) -> Path:
    examples = sample_rows(50)
    names = list(examples[0])
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=names)
        writer.writeheader()
        for index in range(rows):
            writer.writerow(examples[index % len(examples)])
        writer.writerow({**examples[0], names[0]: "not-a-number"})
        writer.writerow({**examples[0], names[1]: 1e9})
    return path


def part_records(target: Target, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The predictions the run's parts list (every part under the input's output folder)."""
    (entry,) = result["manifest"]["inputs"]
    bucket, key = entry["manifest"].removeprefix("s3://").split("/", 1)
    folder = key.rsplit("/", 1)[0] + "/"
    s3 = target.session.client("s3")
    records = []
    for listed in s3.list_objects_v2(Bucket=bucket, Prefix=f"{folder}part-").get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=listed["Key"])["Body"].read().decode()
        records += [json.loads(line) for line in body.splitlines() if line]
    return records


@pytest.mark.parametrize(("rows", "route"), [(60, "inline"), (6000, "batch")])
def test_a_file_is_predicted_stored_and_counted_and_a_rerun_does_nothing_twice(
    target: Target, tmp_path: Path, rows: int, route: str
):
    source = write_csv(tmp_path / "input.csv", rows)
    inline_max = get_config(target.name).batch.inline_max_bytes
    assert (source.stat().st_size <= inline_max) == (route == "inline")
    key = f"it-{uuid.uuid4().hex[:8]}/{route}.csv"

    result = run_batch(target.session, target.batch, source, key=key, timeout=900)
    assert result["status"] == "SUCCEEDED", result["failures"]
    totals = result["manifest"]["totals"]
    assert totals == {
        "inputs": 1,
        "failed_inputs": 0,
        "read": rows + BAD_ROWS,
        "predicted": rows,
        "rejected": BAD_ROWS,
        "failed": 0,
    }
    (entry,) = result["manifest"]["inputs"]
    assert entry["mode"] == route

    records = part_records(target, result)
    assert len(records) == rows
    assert len({r["predictionId"] for r in records}) == rows
    sample = records[:: max(1, rows // 20)]
    for record in sample:
        item = target.table.get_item(
            Key={"predictionId": record["predictionId"], "timestamp": record["timestamp"]}
        )
        assert item["Item"]["source"] == "batch"
        assert int(item["Item"]["expirationTime"]) == record["expirationTime"]
        assert item["Item"]["modelVersion"] == record["modelVersion"]
    stored_before = target.stored_items()

    again = run_batch(target.session, target.batch, source, key=key, timeout=900)
    assert again["status"] == "SUCCEEDED", again["failures"]
    assert again["manifest"] == {}  # nothing listed: the input's manifest has its ETag
    assert target.stored_items() == stored_before


def test_rows_the_endpoint_fails_fail_the_run_and_their_neighbours_are_still_reported(
    target: Target, tmp_path: Path, local_stage: Any
):
    versions = sorted(set(local_stage.live_variants.versions().values()))
    good = write_csv(tmp_path / "good.csv", 30)
    broken = write_csv(tmp_path / "broken.csv", 30)
    prefix = f"it-{uuid.uuid4().hex[:8]}"
    # the good file is processed first; then every model server stops and the next run fails
    first = run_batch(target.session, target.batch, good, key=f"{prefix}/good.csv", timeout=300)
    assert first["status"] == "SUCCEEDED", first["failures"]
    for version in versions:
        local_stage.stop_model_server(version)
    try:
        failed = run_batch(target.session, target.batch, broken, key=f"{prefix}/broken.csv", timeout=600)
    finally:
        for version in versions:
            local_stage.start_model_server(version)
    assert failed["status"] == "FAILED"
    assert failed["error"] == "BatchInputsFailed"
    errors = {f.get("error") for f in failed["failures"]}
    assert "RowsFailedError" in errors
    # the run manifest still records the failed input and its counts
    config = get_config(target.name)
    run_name = failed["execution"].rsplit(":", 1)[-1]
    results_bucket = config.bucket_name("results")
    body = target.session.client("s3").get_object(
        Bucket=results_bucket, Key=f"{config.batch.runs_prefix}/{run_name}/manifest.json"
    )["Body"]
    manifest = json.loads(body.read())
    assert manifest["totals"]["failed_inputs"] == 1
    (entry,) = manifest["inputs"]
    assert entry["failed_input"] is True
    assert entry["error"] == "RowsFailedError"
