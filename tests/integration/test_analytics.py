"""The analytics layer end to end: every path's predictions and the feedback reach the history.

After predictions through the API and the stream, a batch run and some feedback, the history
(Parquet under the history prefix, written by the delivery stream on its buffering hints) holds
one prediction row per stored item, the named queries count per variant what DynamoDB holds,
the accuracy query matches the feedback sent, and a TTL expiry leaves the history unchanged.

On the local stage the queries run in DuckDB (``mlpipe analytics query`` does the same), on a
deployed stage in Athena; the whole-table equalities hold on a fresh local stage only (a deployed
stage's history also keeps what the table's TTL has expired), so there they are checked for the
predictions this test made.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from boto3.dynamodb.types import TypeSerializer

from local.smoke import read_back, sample_rows
from mlpipe import analytics
from mlpipe.batch import run_batch
from shared.analytics import HISTORY_PREFIX
from shared.config import get_config
from shared.outputs import AnalyticsOutputs
from tests.integration.conftest import Target

_serialize = TypeSerializer().serialize


def _outputs(target: Target) -> dict[str, str]:
    return analytics.outputs(target.session.client("cloudformation"), target.name)


def _history(target: Target) -> list[dict[str, Any]]:
    """Every history row (the Parquet objects under the history prefix)."""
    location = _outputs(target)[AnalyticsOutputs.HISTORY_LOCATION]
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    assert prefix == HISTORY_PREFIX
    s3 = target.session.client("s3")
    rows: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            rows += pq.read_table(io.BytesIO(body)).to_pylist()
    return rows


def _wait(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {timeout:.0f} s")
        time.sleep(2)


def _query(target: Target, name: str) -> list[dict[str, Any]]:
    args = type("Args", (), {"stage": target.name, "name": name, "since": 2, "format": "json"})()
    answer = analytics.query(args, target.session)
    return [dict(zip(answer.columns, row, strict=True)) for row in answer.rows]


def _items(target: Target) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    scan: dict[str, Any] = {}
    while True:
        page = target.table.scan(**scan)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        scan = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def _produce(
    target: Target, api: httpx.Client, tmp_path: Path
) -> tuple[list[str], list[str], dict[str, int]]:
    """Predictions by the API, the stream and a batch run, and feedback on four of the API's."""
    rows = sample_rows(12)
    # the API: six predictions, feedback on four of them
    api_ids: list[str] = []
    for row in rows[:6]:
        answer = api.post("/predict", json={"instances": [row]})
        assert answer.status_code == 200, answer.text
        api_ids.append(answer.json()["predictions"][0]["predictionId"])
    # the stream: three
    queued = api.post("/predict/stream", json={"instances": rows[6:9]})
    assert queued.status_code == 202, queued.text
    stream_ids = queued.json()["predictionIds"]
    for prediction_id in stream_ids:
        read_back(api, prediction_id)
    # a batch run: twenty rows
    source = tmp_path / "analytics.csv"
    with source.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(sample_rows(20))
    result = run_batch(
        target.session, target.batch, source, key=f"it-analytics-{time.time_ns()}.csv", timeout=900
    )
    assert result["status"] == "SUCCEEDED", result["failures"]
    assert result["manifest"]["totals"]["predicted"] == 20
    # feedback: the observed labels, two right and two wrong
    sent: dict[str, int] = {}
    for index, prediction_id in enumerate(api_ids[:4]):
        predicted = int(read_back(api, prediction_id)["label"])
        observed = predicted if index < 2 else 1 - predicted
        answer = api.post("/feedback", json={"predictionId": prediction_id, "label": observed})
        assert answer.status_code == 200, answer.text
        sent[prediction_id] = observed

    return api_ids, stream_ids, sent


def test_every_path_and_the_feedback_reach_the_history(
    target: Target, api: httpx.Client, tmp_path: Path
) -> None:
    config = get_config(target.name)
    api_ids, stream_ids, sent = _produce(target, api, tmp_path)
    items = _items(target)
    made = set(api_ids) | set(stream_ids)
    interval = config.analytics.buffer_interval_seconds

    def caught_up() -> bool:
        history = _history(target)
        predicted = {r["prediction_id"] for r in history if r["record_type"] == "prediction"}
        fed_back = {r["prediction_id"] for r in history if r["record_type"] == "feedback"}
        return made <= predicted and set(sent) <= fed_back and len(predicted) >= len(items)

    _wait(caught_up, timeout=2 * interval + 120, what="the history did not catch up with the table")
    history = _history(target)
    predictions = [r for r in history if r["record_type"] == "prediction"]
    by_id = {r["prediction_id"]: r for r in predictions}
    stored = {item["predictionId"]: item for item in items}
    if target.local is not None:
        # a fresh stage: one prediction row per stored item, none twice, none missing
        assert len(predictions) == len(stored)
        assert set(by_id) == set(stored)
    for prediction_id in made:
        item, row = stored[prediction_id], by_id[prediction_id]
        assert (row["variant"], row["model_version"], row["label"]) == (
            item["variant"],
            item["modelVersion"],
            int(item["label"]),
        )
        assert row["mean_radius"] == pytest.approx(float(item["features"]["mean_radius"]))
    assert {by_id[i]["source"] for i in made} == {"api", "stream"}
    assert any(r["source"] == "batch" for r in predictions)

    # the named queries: per-variant counts as in DynamoDB, accuracy as the feedback sent
    if target.local is not None:
        per_variant: Counter[str] = Counter()
        for row in _query(target, "variant_daily"):
            per_variant[row["variant"]] += int(row["predictions"])
        assert per_variant == Counter(item["variant"] for item in items)
    accuracy = {(r["variant"], r["model_version"]): r for r in _query(target, "accuracy_by_variant_version")}
    expected: dict[tuple[str, str], list[int]] = {}
    for prediction_id, observed in sent.items():
        item = stored[prediction_id]
        counts = expected.setdefault((item["variant"], item["modelVersion"]), [0, 0])
        counts[0] += 1
        counts[1] += int(int(item["label"]) == observed)
    for key, (feedback, correct) in expected.items():
        if target.local is not None:
            assert (int(accuracy[key]["feedback"]), int(accuracy[key]["correct"])) == (feedback, correct)
        else:
            assert int(accuracy[key]["feedback"]) >= feedback


def test_a_ttl_expiry_leaves_the_history_unchanged(target: Target, api: httpx.Client) -> None:
    """DynamoDB's TTL deletes as its service principal: the tap skips that REMOVE.

    moto has no TTL sweeper, so on the local stage the expiry's stream record (the item's image,
    ``userIdentity`` of the TTL principal) is handed to the tap through the stage's mapping.
    """
    if target.local is None:
        pytest.skip(
            "a TTL expiry cannot be caused on demand on a deployed stage (DynamoDB deletes within days)"
        )
    (row,) = sample_rows(1)
    answer = api.post("/predict", json={"instances": [row]})
    assert answer.status_code == 200, answer.text
    prediction_id = answer.json()["predictions"][0]["predictionId"]
    item = read_back(api, prediction_id)
    interval = get_config(target.name).analytics.buffer_interval_seconds
    _wait(
        lambda: any(r["prediction_id"] == prediction_id for r in _history(target)),
        timeout=2 * interval + 60,
        what="the prediction did not reach the history",
    )
    before = len(_history(target))
    (stored,) = target.table.query(
        KeyConditionExpression="predictionId = :id", ExpressionAttributeValues={":id": prediction_id}
    )["Items"]
    expiry = {
        "eventID": f"ttl-{prediction_id}",
        "eventName": "REMOVE",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
        "dynamodb": {
            "SequenceNumber": "9" * 21,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "Keys": {"predictionId": {"S": prediction_id}, "timestamp": {"S": item["timestamp"]}},
            "OldImage": {k: _serialize(v) for k, v in stored.items()},
        },
    }
    tap = _outputs(target)[AnalyticsOutputs.TAP_FUNCTION_NAME]
    response = target.local.functions.invoke(tap, {"Records": [expiry]})
    assert response == {"batchItemFailures": []}
    time.sleep(interval + 5)  # a buffer the expiry had opened would be written by now
    assert len(_history(target)) == before
