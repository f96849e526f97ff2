"""The REST API's Lambda through API Gateway proxy events: moto stores, the real model behind the endpoint."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from stacks.inference.runtime.api import handler as api
from tests.unit.conftest import PATH, TABLE
from tests.unit.inference.conftest import STREAM

GENERIC_502 = "the prediction service could not complete the request; try again"


class Context:
    function_name = "ml-pipeline-api-local-us-east-1"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ml-pipeline-api-local-us-east-1"
    aws_request_id = "00000000-0000-0000-0000-000000000001"


def respond(
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    raw: str | None = None,
    base64_encoded: bool = False,
) -> dict[str, Any]:
    """The Lambda handler's answer to an API Gateway proxy event (decorators included)."""
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
        "isBase64Encoded": base64_encoded,
    }
    response: dict[str, Any] = api.handler(event, Context())
    return response


def call(method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    response = respond(method, path, body, **kwargs)
    payload = response["body"]
    if response.get("isBase64Encoded"):
        payload = base64.b64decode(payload).decode()
    return int(response["statusCode"]), json.loads(payload)


def rows(dataset, count: int) -> list[dict[str, float]]:
    return [dict(zip(dataset.feature_names, v, strict=True)) for v in dataset.test.features[:count].tolist()]


def stored(aws) -> int:
    return int(aws.resource("dynamodb").Table(TABLE).scan()["Count"])


def emf_lines(output: str) -> list[dict[str, Any]]:
    """The CloudWatch EMF documents among the function's stdout lines (logs are JSON lines too)."""
    documents = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


@pytest.fixture
def logged(monkeypatch) -> io.StringIO:
    """The API logger's JSON lines (its handler holds the stdout of import time, not capsys')."""
    buffer = io.StringIO()
    monkeypatch.setattr(api.logger.registered_handler, "stream", buffer)
    return buffer


def test_predict_stores_and_reads_back(service, dataset, aws):
    status, answer = call("POST", "/predict", {"instances": rows(dataset, 3)})
    assert status == 200
    assert answer["modelVersion"] == "v1"
    assert answer["variant"] == "ModelA"
    assert len(answer["predictions"]) == 3
    first = answer["predictions"][0]
    status, stored_record = call("GET", f"/predictions/{first['predictionId']}")
    assert status == 200
    assert stored_record["label"] == first["label"]
    assert stored_record["modelVersion"] == "v1"
    assert stored_record["source"] == "api"
    assert stored_record["expirationTime"] > 0


def test_all_rows_of_a_request_are_written_in_one_transaction(service, dataset, aws):
    transactions: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        transactions.append(len(params["TransactItems"]))

    client = service.table.meta.client
    client.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", record)
    client.meta.events.register("provide-client-params.dynamodb.BatchWriteItem", record)
    status, _ = call("POST", "/predict", {"instances": rows(dataset, 30)})
    assert status == 200
    assert transactions == [30], "one all-or-nothing write, not batches of 25"
    assert stored(aws) == 30


def test_target_variant_is_passed_to_the_endpoint(service, dataset):
    status, answer = call("POST", "/predict", {"features": rows(dataset, 1)[0]}, query={"variant": "ModelB"})
    assert status == 200
    assert answer["variant"] == "ModelB"
    status, refused = call("POST", "/predict", {"features": rows(dataset, 1)[0]}, query={"variant": "ModelC"})
    assert status == 400
    assert "variant must be one of ModelA, ModelB" in refused["message"]


def _row(dataset) -> dict[str, float]:
    return rows(dataset, 1)[0]


BAD_REQUESTS = {
    "malformed JSON": (lambda d: "{not json", "the body is not valid JSON: Expecting property name"),
    "deeply nested": (
        lambda d: '{"features": ' + "[" * 50_000 + "]" * 50_000 + "}",
        "nested more than 32 levels deep",
    ),
    "nested just under the parser's limit": (
        lambda d: '{"features": ' + "[" * 900 + "]" * 900 + "}",
        "nested more than 32 levels deep",
    ),
    "empty body": (lambda d: "", "the body must be a JSON document; it is empty"),
    "not an object": (lambda d: "[]", "the JSON body must be an object, got array"),
    "unexpected field": (lambda d: json.dumps({"rows": []}), 'unexpected top-level field(s) "rows"'),
    "missing feature": (
        lambda d: json.dumps({"instances": [{k: v for k, v in _row(d).items() if k != "mean_texture"}]}),
        "missing feature 'mean_texture'",
    ),
    "extra feature": (
        lambda d: json.dumps({"instances": [{**_row(d), "mean_radiuss": 1.0}]}),
        "unknown feature \"mean_radiuss\" (did you mean 'mean_radius'?)",
    ),
    "wrong count": (lambda d: json.dumps({"instances": [[1.0] * 101]}), "row has 101 values, expected 30"),
    "non-numeric": (
        lambda d: json.dumps({"instances": [{**_row(d), "mean_area": "large"}]}),
        "feature 'mean_area' must be a number, got string \"large\"",
    ),
    "boolean": (
        lambda d: json.dumps({"instances": [{**_row(d), "mean_area": True}]}),
        "feature 'mean_area' must be a number, got boolean",
    ),
    "NaN literal": (
        lambda d: json.dumps({"instances": [{**_row(d), "mean_area": float("nan")}]}),
        "NaN is not a number in JSON",
    ),
    "Infinity literal": (
        lambda d: json.dumps({"instances": [{**_row(d), "mean_area": float("inf")}]}),
        "Infinity is not a number in JSON",
    ),
    "-Infinity literal": (
        lambda d: json.dumps({"instances": [{**_row(d), "mean_area": float("-inf")}]}),
        "-Infinity is not a number in JSON",
    ),
    "overflowing number": (
        lambda d: json.dumps({"instances": [{**_row(d), "mean_area": 1.0}]}).replace(
            '"mean_area": 1.0', '"mean_area": 1e999'
        ),
        "must be a finite number, got Infinity",
    ),
    "out of range": (
        lambda d: json.dumps({"instances": [{**_row(d), "mean_area": 1e9}]}),
        "feature 'mean_area' = 1e+09 is outside the accepted range",
    ),
    "no rows": (lambda d: json.dumps({"instances": []}), "'instances' is empty"),
}


@pytest.mark.parametrize(("build", "message"), list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_bad_requests_are_400_with_a_helpful_message_and_store_nothing(
    service, aws, dataset, runtime, build, message
):
    status, answer = call("POST", "/predict", raw=build(dataset))
    assert status == 400
    assert message in answer["message"]
    assert answer["requestId"] == "r-1"
    assert "Traceback" not in json.dumps(answer)
    assert runtime.calls == [], "the endpoint is not called"
    assert stored(aws) == 0


def test_an_oversized_body_is_413_and_stores_nothing(service, aws, dataset, runtime):
    body = {"instances": rows(dataset, 100), "padding": "x" * 60_000}  # ~80 KB of rows + 60 KB
    status, answer = call("POST", "/predict", body)
    assert status == 413
    assert "at most 131072 bytes (128 KiB)" in answer["message"]
    assert "rows as arrays" in answer["message"]
    assert runtime.calls == []
    assert stored(aws) == 0
    status, _ = call("POST", "/predict/stream", body)
    assert status == 413


def test_the_largest_request_the_api_model_admits_fits_the_body_limit(service, dataset):
    """100 rows with feature names (~80 KB) pass API Gateway's request model, so the function takes them."""
    status, answer = call("POST", "/predict", {"instances": rows(dataset, 100)})
    assert status == 200, answer
    assert len(answer["predictions"]) == 100


def test_too_many_rows_are_refused_and_the_limit_is_accepted(service, dataset, aws):
    arrays = [list(row.values()) for row in rows(dataset, 100)]  # about 25 KB: under the body limit
    status, answer = call("POST", "/predict", {"instances": [*arrays, arrays[0]]})
    assert status == 400
    assert "at most 100 rows" in answer["message"]
    status, answer = call("POST", "/predict", {"instances": arrays})
    assert status == 200
    assert len(answer["predictions"]) == 100
    assert stored(aws) == 100


def test_a_base64_encoded_body_is_read(service, dataset):
    raw = base64.b64encode(json.dumps({"instances": rows(dataset, 1)}).encode()).decode()
    status, answer = call("POST", "/predict", raw=raw, base64_encoded=True)
    assert status == 200
    assert len(answer["predictions"]) == 1


def test_a_prediction_id_the_route_pattern_does_not_take_is_404_not_500(service):
    """Found by schemathesis: Powertools' not-found reached the catch-all handler (500)."""
    status, answer = call("GET", '/predictions/a"b#c')
    assert status == 404
    assert "no such resource" in answer["message"]


def test_unknown_query_parameters_are_refused(service, dataset, aws):
    status, answer = call("POST", "/predict", {"instances": rows(dataset, 1)}, query={"varaint": "ModelB"})
    assert (status, stored(aws)) == (400, 0)
    assert 'unknown query parameter(s) "varaint"; this route takes only variant' in answer["message"]
    status, answer = call("POST", "/predict/stream", {"instances": rows(dataset, 1)}, query={"x": "1"})
    assert (status, "this route takes none" in answer["message"]) == (400, True)


def test_an_unknown_prediction_is_404(service):
    status, answer = call("GET", "/predictions/no-such-id")
    assert status == 404
    assert answer == {
        "message": "no prediction no-such-id (it may still be queued, or have expired)",
        "requestId": "r-1",
    }


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
    nested = '{"predictionId": "p", "label": ' + "[" * 50_000 + "]" * 50_000 + "}"
    for path in ("/feedback", "/predict/stream"):
        status, refused = call("POST", path, raw=nested)
        assert (status, "nested more than 32 levels deep" in refused["message"]) == (400, True)


# ----- upstream failures: status, request id, nothing internal, nothing stored -----


def stub_runtime(service, aws) -> Stubber:
    """Replace the endpoint with a real sagemaker-runtime client whose answers the test stubs."""
    client = aws.client("sagemaker-runtime")
    service.runtime = client
    stubber = Stubber(client)
    stubber.activate()
    return stubber


def test_a_model_error_is_a_generic_502_with_the_request_id(service, dataset, aws, logged):
    stubber = stub_runtime(service, aws)
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received server error (500) from primary with message 'Traceback ... secret'",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 500, "LogStreamArn": "arn:aws:logs:us-east-1:1:log-group:x"},
    )
    response = respond("POST", "/predict", {"instances": rows(dataset, 2)})
    assert response["statusCode"] == 502
    assert json.loads(response["body"]) == {"message": GENERIC_502, "requestId": "r-1"}
    assert "Retry-After" not in response["multiValueHeaders"]
    assert stored(aws) == 0
    (line,) = [json.loads(line) for line in logged.getvalue().splitlines()]
    assert line["message"] == "upstream failure"
    assert line["correlation_id"] == "r-1"
    assert "ModelError" in line["cause"], "the cause is logged, not returned"


def test_an_answer_that_does_not_fit_the_request_is_502_and_stores_nothing(service, dataset, aws):
    stubber = stub_runtime(service, aws)
    answer = json.dumps({"predictions": [{"label": 1, "probability": 0.9}], "model_version": "v1"}).encode()
    stubber.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "InvokedProductionVariant": "ModelA"},
    )
    status, body = call("POST", "/predict", {"instances": rows(dataset, 2)})
    assert (status, body) == (502, {"message": GENERIC_502, "requestId": "r-1"})
    assert stored(aws) == 0


@pytest.mark.parametrize(
    ("code", "http_status"),
    [("ThrottlingException", 400), ("ServiceUnavailable", 503), ("ModelNotReadyException", 429)],
)
def test_a_busy_endpoint_is_503_with_retry_after(service, dataset, aws, code, http_status):
    stubber = stub_runtime(service, aws)
    stubber.add_client_error("invoke_endpoint", service_error_code=code, http_status_code=http_status)
    response = respond("POST", "/predict", {"instances": rows(dataset, 1)})
    assert response["statusCode"] == 503
    assert response["multiValueHeaders"]["Retry-After"] == ["1"]
    body = json.loads(response["body"])
    assert body["requestId"] == "r-1"
    assert code not in body["message"]
    assert stored(aws) == 0


def test_the_model_runtimes_own_throttling_is_503(service, dataset, runtime, aws):
    runtime.refuse = 1
    status, answer = call("POST", "/predict", {"instances": rows(dataset, 1)})
    assert status == 503
    assert answer["requestId"] == "r-1"
    assert stored(aws) == 0


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/x"),
        ConnectTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/x"),
    ],
    ids=["read", "connect"],
)
def test_an_endpoint_timeout_is_504(service, dataset, aws, error):
    class TimingOut:
        def invoke_endpoint(self, **_: Any) -> dict[str, Any]:
            raise error

    service.runtime = TimingOut()
    status, answer = call("POST", "/predict", {"instances": rows(dataset, 1)})
    assert status == 504
    assert answer == {
        "message": "the prediction service did not answer in time; try again",
        "requestId": "r-1",
    }
    assert stored(aws) == 0


def test_a_throttled_predictions_table_is_503_and_nothing_is_written(service, dataset, aws, runtime):
    with Stubber(service.table.meta.client) as table:
        table.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            http_status_code=400,
            modeled_fields={"CancellationReasons": [{"Code": "ThrottlingError"}, {"Code": "None"}]},
        )
        response = respond("POST", "/predict", {"instances": rows(dataset, 2)})
    assert response["statusCode"] == 503
    assert response["multiValueHeaders"]["Retry-After"] == ["1"]
    assert runtime.calls == [2], "the endpoint answered; its predictions were not stored"
    assert stored(aws) == 0


def test_a_throttled_stream_is_503(service, dataset):
    with Stubber(service.kinesis) as kinesis:
        kinesis.add_client_error(
            "put_record", service_error_code="ProvisionedThroughputExceededException", http_status_code=400
        )
        status, answer = call("POST", "/predict/stream", {"instances": rows(dataset, 1)})
    assert status == 503
    assert answer["requestId"] == "r-1"


def test_a_failing_read_is_an_upstream_error_not_a_500(service):
    with Stubber(service.table.meta.client) as table:
        table.add_client_error(
            "query", service_error_code="ProvisionedThroughputExceededException", http_status_code=400
        )
        table.add_client_error("query", service_error_code="InternalServerError", http_status_code=500)
        assert call("GET", "/predictions/p-1")[0] == 503
        assert call("GET", "/predictions/p-1") == (502, {"message": GENERIC_502, "requestId": "r-1"})


def test_an_unreadable_model_parameter_is_an_upstream_error(service, dataset):
    with Stubber(service.ssm) as ssm:
        ssm.add_client_error("get_parameter", service_error_code="ThrottlingException", http_status_code=400)
        assert call("POST", "/predict", {"instances": rows(dataset, 1)})[0] == 503


def test_an_unexpected_error_is_a_generic_500_with_the_request_id(service, dataset, monkeypatch):
    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("internal detail")

    monkeypatch.setattr(service, "predict", broken)
    status, answer = call("POST", "/predict", {"instances": rows(dataset, 1)})
    assert (status, answer) == (500, {"message": "internal error", "requestId": "r-1"})


# ----- metrics -----


def test_each_prediction_emits_per_variant_metrics(service, dataset, capsys):
    capsys.readouterr()
    call("POST", "/predict", {"instances": rows(dataset, 3)}, query={"variant": "ModelB"})
    documents = emf_lines(capsys.readouterr().out)
    (per_variant,) = [d for d in documents if "Predictions" in d]
    (definition,) = per_variant["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == "MlPipeline"
    assert definition["Dimensions"] == [["service", "variant"], ["service", "variant", "modelVersion"]]
    assert {m["Name"]: m["Unit"] for m in definition["Metrics"]} == {
        "Predictions": "Count",
        "ModelLatency": "Milliseconds",
    }
    assert per_variant["service"] == "ml-pipeline-api"
    assert per_variant["variant"] == "ModelB"
    assert per_variant["modelVersion"] == "v1"
    assert per_variant["Predictions"] == [3.0]
    assert per_variant["ModelLatency"][0] >= 0
    (requests,) = [d for d in documents if "Requests" in d]
    assert requests["service"] == "ml-pipeline-api"
    assert "ClientErrors" not in requests
    assert "ServerErrors" not in requests


def test_refused_and_failed_requests_are_counted(service, dataset, runtime, capsys):
    capsys.readouterr()
    call("POST", "/predict", raw="{not json")
    runtime.refuse = 1
    call("POST", "/predict", {"instances": rows(dataset, 1)})
    documents = emf_lines(capsys.readouterr().out)
    requests = [d for d in documents if "Requests" in d]
    assert [("ClientErrors" in d, "ServerErrors" in d) for d in requests] == [(True, False), (False, True)]
    assert not [d for d in documents if "Predictions" in d], "nothing was predicted"


# ----- the schema cache -----


def test_a_rollback_reaches_the_schema_cache_after_its_ttl(service, aws, monotonic):
    assert service.schema()[0] == "v1"
    aws.client("ssm").put_parameter(Name=f"{PATH}/active-version", Value="v2", Type="String", Overwrite=True)
    monotonic.now = 10.0
    assert service.schema()[0] == "v1", "cached within the 30 s TTL"
    monotonic.now = 31.0
    assert service.schema()[0] == "v2"
