"""The integration points of seed 000, end to end against a stage (see conftest for the target)."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from local.smoke import mlpipe, read_back
from model.data import load_dataset
from shared.outputs import InferenceOutputs
from tests.integration.conftest import Target


def unique_rows(count: int) -> list[dict[str, float]]:
    """``count`` distinct valid rows (distinct rows, so the answer cache cannot answer them)."""
    dataset = load_dataset()
    rows = [dict(zip(dataset.feature_names, r, strict=True)) for r in dataset.test.features.tolist()]
    area = next(name for name in dataset.feature_names if "area" in name)
    middle = statistics.median(row[area] for row in rows)
    result = []
    for i in range(count):
        row = dict(rows[i % len(rows)])
        step = 1 + (i // len(rows)) * 1e-7  # stays far inside the training range
        row[area] = row[area] * step if row[area] < middle else row[area] / step
        result.append(row)
    return result


def predict(api: httpx.Client, row: dict[str, float], variant: str | None = None) -> httpx.Response:
    params = {"variant": variant} if variant else None
    return api.post("/predict", params=params, json={"instances": [row]})


# ----- API -> preprocessing -> model -> DynamoDB -----
def test_a_prediction_is_stored_with_its_version_variant_and_ttl(target: Target, api: httpx.Client) -> None:
    (row,) = unique_rows(1)
    before = datetime.now(UTC)
    answer = predict(api, row)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (prediction,) = body["predictions"]
    record = read_back(api, prediction["predictionId"])
    assert record["modelVersion"] == body["modelVersion"]
    assert record["variant"] == body["variant"] in {"ModelA", "ModelB"}
    (item,) = target.table.query(
        KeyConditionExpression="predictionId = :id",
        ExpressionAttributeValues={":id": prediction["predictionId"]},
    )["Items"]
    expires = datetime.fromtimestamp(int(item["expirationTime"]), UTC)
    expected = before + timedelta(days=target.ttl_days)
    assert abs((expires - expected).total_seconds()) < 120
    assert item["modelVersion"] == body["modelVersion"]


# ----- A/B -----
def test_traffic_splits_by_weight_and_target_variant_is_honoured(target: Target, api: httpx.Client) -> None:
    # one at a time: the emulated account (moto) fails concurrent DynamoDB transactions with a 500,
    # which would test moto, not the pipeline; the load tests measure concurrency
    answers = [predict(api, row) for row in unique_rows(2000)]
    assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
    share_b = sum(a.json()["variant"] == "ModelB" for a in answers) / len(answers)
    weights = {
        v["VariantName"]: v["CurrentWeight"]
        for v in target.session.client("sagemaker").describe_endpoint(
            EndpointName=target.inference[InferenceOutputs.ENDPOINT_NAME]
        )["ProductionVariants"]
    }
    expected_b = weights["ModelB"] / sum(weights.values())
    assert abs(share_b - expected_b) <= 0.03, (share_b, expected_b)
    for variant in ("ModelA", "ModelB"):
        targeted = predict(api, unique_rows(1)[0], variant)
        assert targeted.status_code == 200, targeted.text
        assert targeted.json()["variant"] == variant


def test_changed_weights_take_effect_without_a_restart(target: Target, api: httpx.Client) -> None:
    mlpipe_env_stage(target)
    mlpipe("models", "weights", "ModelA=0.0", "ModelB=1.0")
    try:
        rows = unique_rows(2100)[2000:]  # not answered before: no cache entries
        answers = [predict(api, row) for row in rows[:60]]
        assert {a.json()["variant"] for a in answers} == {"ModelB"}
    finally:
        mlpipe("models", "weights", "ModelA=0.8", "ModelB=0.2")


# ----- versioning: promote and rollback, never a stale cached answer -----
def test_promote_and_rollback_change_the_served_version_with_no_stale_cache(
    target: Target, api: httpx.Client
) -> None:
    mlpipe_env_stage(target)
    row = unique_rows(3000)[2500]
    first = predict(api, row, "ModelA").json()["modelVersion"]
    assert predict(api, row, "ModelA").json()["modelVersion"] == first  # cached or not: the same version
    challenger = predict(api, row, "ModelB").json()["modelVersion"]
    mlpipe("models", "promote")
    try:
        # the challenger takes all traffic where it runs (the old champion waits at weight 0)
        promoted = {predict(api, row).json()["modelVersion"] for _ in range(5)}
        assert promoted == {challenger} != {first}
    finally:
        mlpipe("models", "rollback")
    assert predict(api, row, "ModelA").json()["modelVersion"] == first


def mlpipe_env_stage(target: Target) -> None:
    if target.name != "local":
        pytest.skip("changes the endpoint: run against the local stage, or a stage you may deploy to")


# ----- Kinesis path -----
def test_stream_predictions_land_in_the_table(api: httpx.Client) -> None:
    rows = unique_rows(3100)[3000:3010]
    queued = api.post("/predict/stream", json={"instances": rows})
    assert queued.status_code == 202, queued.text
    for prediction_id in queued.json()["predictionIds"]:
        assert read_back(api, prediction_id)["source"] == "stream"


def _queued_record(rows: list[dict[str, float]]) -> tuple[list[str], bytes]:
    ids = [str(uuid.uuid4()) for _ in rows]
    body = {"predictionIds": ids, "instances": rows, "requestedAt": datetime.now(UTC).isoformat()}
    return ids, json.dumps(body).encode()


def test_a_poison_record_goes_to_the_failure_queue_and_its_neighbours_are_written(
    target: Target, api: httpx.Client
) -> None:
    kinesis = target.session.client("kinesis")
    sqs = target.session.client("sqs")
    queue = target.inference[InferenceOutputs.STREAM_FAILURE_QUEUE_URL].rsplit("/", 1)[-1]
    queue_url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    sqs.purge_queue(QueueUrl=queue_url)
    stream = target.inference[InferenceOutputs.STREAM_NAME]
    rows = unique_rows(3200)[3100:3102]
    before_ids, before = _queued_record(rows[:1])
    after_ids, after = _queued_record(rows[1:])
    records = [before, b'{"not": "a queued request"}', after]
    sequence = [
        kinesis.put_record(StreamName=stream, Data=data, PartitionKey="same-shard-order")["SequenceNumber"]
        for data in records
    ]
    for prediction_id in (*before_ids, *after_ids):
        read_back(api, prediction_id)
    deadline = time.monotonic() + 30
    messages: list[dict[str, Any]] = []
    while not messages and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
    assert len(messages) == 1, [m["Body"] for m in messages]
    # the on-failure record points at the poison record (a batch may run on past it: records
    # after it that already succeeded are skipped on a replay, as the consumer is idempotent)
    failure = json.loads(messages[0]["Body"])["KinesisBatchInfo"]
    assert failure["startSequenceNumber"] == sequence[1]
    assert failure["endSequenceNumber"] in sequence[1:]


def test_a_replayed_record_is_not_written_twice(target: Target, api: httpx.Client) -> None:
    kinesis = target.session.client("kinesis")
    stream = target.inference[InferenceOutputs.STREAM_NAME]
    ids, data = _queued_record(unique_rows(3300)[3200:3201])
    kinesis.put_record(StreamName=stream, Data=data, PartitionKey=ids[0])
    read_back(api, ids[0])
    kinesis.put_record(StreamName=stream, Data=data, PartitionKey=ids[0])
    marker_ids, marker = _queued_record(unique_rows(3400)[3300:3301])
    kinesis.put_record(StreamName=stream, Data=marker, PartitionKey=ids[0])  # same shard, after the replay
    read_back(api, marker_ids[0])
    items = target.table.query(
        KeyConditionExpression="predictionId = :id", ExpressionAttributeValues={":id": ids[0]}
    )["Items"]
    assert len(items) == 1


# ----- bad input and keys -----
BAD_BODIES = [
    pytest.param(b"{not json", id="malformed-json"),
    pytest.param(b'{"instances": [{"bogus": 1}]}', id="unknown-feature"),
    pytest.param(b'{"instances": []}', id="no-rows"),
    pytest.param(b'{"instances": [[1, 2, 3]]}', id="wrong-count"),
    pytest.param(b'{"instances": [{"mean_radius": "big"}]}', id="non-numeric"),
    pytest.param(b'{"instances": [[NaN]]}', id="nan"),
    pytest.param(b'{"features": {}}', id="missing-features"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize("path", ["/predict", "/predict/stream"])
def test_malformed_requests_are_4xx_and_write_nothing(
    target: Target, api: httpx.Client, path: str, body: bytes
) -> None:
    before = target.stored_items()
    answer = api.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["message"]
    time.sleep(0.5)  # a queued request would be consumed by now
    assert target.stored_items() == before


def test_unknown_prediction_is_404(api: httpx.Client) -> None:
    assert api.get(f"/predictions/{uuid.uuid4()}").status_code == 404


@pytest.mark.parametrize("key", [None, "not-a-key"])
def test_a_missing_or_wrong_api_key_is_403(target: Target, key: str | None) -> None:
    headers = {} if key is None else {"x-api-key": key}
    answer = httpx.post(
        f"{target.api_url}/predict", json={"instances": unique_rows(1)}, headers=headers, timeout=30
    )
    assert answer.status_code == 403


# ----- faults -----
def test_a_stopped_model_server_is_a_5xx_with_a_request_id_and_recovers(
    target: Target, api: httpx.Client, local_stage: Any
) -> None:
    row = unique_rows(3600)[3500]
    version = local_stage.live_variants.versions()["ModelA"]
    local_stage.stop_model_server(version)
    try:
        before = target.stored_items()
        answer = predict(api, row, "ModelA")
        assert 500 <= answer.status_code < 600, answer.text
        assert answer.json()["requestId"]
        assert target.stored_items() == before
    finally:
        local_stage.start_model_server(version)
    recovered = predict(api, row, "ModelA")
    assert recovered.status_code == 200, recovered.text
