"""The REST API's Lambda through API Gateway proxy events: moto stores, the real model behind the endpoint."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from stacks.inference.runtime.api import handler as api
from tests.unit.conftest import PATH, TABLE
from tests.unit.inference.conftest import STREAM


def call(
    method: str, path: str, body: Any = None, query: dict[str, str] | None = None, raw: str | None = None
):
    event = {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": None,
        "requestContext": {"requestId": "r-1", "stage": "local", "httpMethod": method, "path": path},
        "body": raw if raw is not None else (json.dumps(body) if body is not None else None),
        "isBase64Encoded": False,
    }
    response = api.app.resolve(event, None)  # type: ignore[arg-type]
    payload = response["body"]
    if response.get("isBase64Encoded"):
        payload = base64.b64decode(payload).decode()
    return response["statusCode"], json.loads(payload)


def rows(dataset, count: int) -> list[dict[str, float]]:
    return [dict(zip(dataset.feature_names, v, strict=True)) for v in dataset.test.features[:count].tolist()]


def test_predict_stores_and_reads_back(service, dataset, aws):
    status, answer = call("POST", "/predict", {"instances": rows(dataset, 3)})
    assert status == 200
    assert answer["modelVersion"] == "v1"
    assert answer["variant"] == "ModelA"
    assert len(answer["predictions"]) == 3
    first = answer["predictions"][0]
    status, stored = call("GET", f"/predictions/{first['predictionId']}")
    assert status == 200
    assert stored["label"] == first["label"]
    assert stored["modelVersion"] == "v1"
    assert stored["source"] == "api"
    assert stored["expirationTime"] > 0


def test_target_variant_is_passed_to_the_endpoint(service, dataset):
    status, answer = call("POST", "/predict", {"features": rows(dataset, 1)[0]}, query={"variant": "ModelB"})
    assert status == 200
    assert answer["variant"] == "ModelB"
    status, refused = call("POST", "/predict", {"features": rows(dataset, 1)[0]}, query={"variant": "ModelC"})
    assert status == 400
    assert "variant must be one of ModelA, ModelB" in refused["message"]


@pytest.mark.parametrize(
    ("body", "raw", "message"),
    [
        (None, "{not json", "the body must be JSON"),
        ({"rows": []}, None, 'unexpected top-level field(s) "rows"'),
        ({"instances": [{"mean_radius": 1.0}]}, None, "missing feature 'mean_texture'"),
        ({"instances": [[1.0] * 101]}, None, "row has 101 values, expected 30"),
    ],
)
def test_bad_requests_are_400_with_a_helpful_message_and_store_nothing(service, aws, body, raw, message):
    status, answer = call("POST", "/predict", body, raw=raw)
    assert status == 400
    assert message in answer["message"]
    assert "Traceback" not in json.dumps(answer)
    assert aws.resource("dynamodb").Table(TABLE).scan()["Count"] == 0


def test_too_many_rows_are_refused(service, dataset):
    status, answer = call("POST", "/predict", {"instances": rows(dataset, 1) * 101})
    assert status == 400
    assert "at most 100 rows" in answer["message"]


def test_stream_requests_are_queued_with_ids(service, dataset, aws):
    status, answer = call("POST", "/predict/stream", {"instances": rows(dataset, 2)})
    assert status == 202
    assert len(answer["predictionIds"]) == 2
    kinesis = aws.client("kinesis")
    shard = kinesis.describe_stream(StreamName=STREAM)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    (record,) = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    message = json.loads(record["Data"])
    assert message["predictionIds"] == answer["predictionIds"]
    status, _ = call("GET", f"/predictions/{answer['predictionIds'][0]}")
    assert status == 404, "not stored until the stream consumer predicts it"


def test_feedback_round_trip_and_refusals(service, dataset):
    _, answer = call("POST", "/predict", {"instances": rows(dataset, 1)})
    prediction_id = answer["predictions"][0]["predictionId"]
    assert call("POST", "/feedback", {"predictionId": prediction_id, "label": 1}) == (
        200,
        {"predictionId": prediction_id, "feedbackLabel": 1},
    )
    status, conflict = call("POST", "/feedback", {"predictionId": prediction_id, "label": 0})
    assert status == 409
    assert "already has the observed label 1" in conflict["message"]
    assert call("POST", "/feedback", {"predictionId": "nope", "label": 1})[0] == 404
    status, invalid = call("POST", "/feedback", {"predictionId": prediction_id, "label": "yes"})
    assert status == 400
    assert "label must be 0 or 1" in invalid["message"]


def test_endpoint_failure_is_a_generic_502(service, dataset, runtime):
    runtime.refuse = 1
    status, answer = call("POST", "/predict", {"instances": rows(dataset, 1)})
    assert status == 502
    assert answer == {"message": "the prediction service could not complete the request; try again"}


def test_a_rollback_reaches_the_schema_cache_after_its_ttl(service, aws, monotonic):
    assert service.schema()[0] == "v1"
    aws.client("ssm").put_parameter(Name=f"{PATH}/active-version", Value="v2", Type="String", Overwrite=True)
    monotonic.now = 10.0
    assert service.schema()[0] == "v1", "cached within the 30 s TTL"
    monotonic.now = 31.0
    assert service.schema()[0] == "v2"
