"""The prediction service below HTTP: body parsing, error classification, retries and timeouts."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from model.schema import RequestError
from stacks.inference.runtime.api import service as prediction_service
from stacks.inference.runtime.api.service import (
    ENDPOINT_CLIENT_CONFIG,
    MAX_BODY_BYTES,
    STORE_CLIENT_CONFIG,
    PayloadTooLargeError,
    UpstreamBusyError,
    UpstreamError,
    UpstreamTimeoutError,
    from_environment,
    parse_body,
    upstream_error,
)
from tests.unit.conftest import BUCKET, PATH, TABLE

ENVIRONMENT = {
    "ENDPOINT_NAME": "ml-pipeline-endpoint-local-us-east-1",
    "MODEL_BUCKET": BUCKET,
    "MODEL_PARAMETERS_PATH": PATH,
    "PREDICTIONS_TABLE": TABLE,
    "STREAM_NAME": "ml-pipeline-predictions-local-us-east-1",
    "PREDICTION_TTL_DAYS": "30",
}
API_FUNCTION_TIMEOUT_SECONDS = 10  # shared.config's api_function


# ----- the request body -----


def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413():
    document = '{"features": {}}'
    assert parse_body(document.ljust(MAX_BODY_BYTES)) == {"features": {}}
    with pytest.raises(PayloadTooLargeError, match=f"the body is {MAX_BODY_BYTES + 1} bytes") as refused:
        parse_body(document.ljust(MAX_BODY_BYTES + 1))
    assert refused.value.status_code == 413


def test_the_size_limit_counts_bytes_not_characters():
    document = '{"features": {"é": 1}}'  # "é" is two bytes in UTF-8
    with pytest.raises(PayloadTooLargeError, match=f"the body is {MAX_BODY_BYTES + 1} bytes"):
        parse_body(document.ljust(MAX_BODY_BYTES))
    assert parse_body(document.ljust(MAX_BODY_BYTES - 1)) == {"features": {"é": 1}}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_numbers_are_refused(constant):
    with pytest.raises(RequestError, match=f"{constant} is not a number in JSON"):
        parse_body(f'{{"instances": [[{constant}]]}}')


def test_base64_bodies_are_decoded_and_invalid_base64_is_refused():
    encoded = base64.b64encode(b'{"features": {"x": 1}}').decode()
    assert parse_body(encoded, base64_encoded=True) == {"features": {"x": 1}}
    with pytest.raises(RequestError, match="not valid JSON text"):
        parse_body("!!not base64!!", base64_encoded=True)
    with pytest.raises(RequestError, match="the body is not valid UTF-8 text"):
        parse_body(base64.b64encode(b"\xff\xfe{").decode(), base64_encoded=True)


# ----- classification of upstream failures -----


def client_error(code: str, http_status: int = 400, **fields: Any) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": http_status},
        **fields,
    }
    return ClientError(response, "Operation")


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (client_error("ModelError", 424, OriginalStatusCode=500), UpstreamError, 502),
        (client_error("ModelError", 424, OriginalStatusCode=400), UpstreamError, 502),
        (client_error("InternalFailure", 500), UpstreamError, 502),
        (client_error("ValidationError", 400), UpstreamError, 502),
        (client_error("ThrottlingException"), UpstreamBusyError, 503),
        (client_error("ServiceUnavailable", 503), UpstreamBusyError, 503),
        (client_error("ProvisionedThroughputExceededException"), UpstreamBusyError, 503),
        (client_error("RequestLimitExceeded"), UpstreamBusyError, 503),
        (client_error("SomethingNew", 429), UpstreamBusyError, 503),
        (
            client_error("TransactionCanceledException", CancellationReasons=[{"Code": "ThrottlingError"}]),
            UpstreamBusyError,
            503,
        ),
        (
            client_error("TransactionCanceledException", CancellationReasons=[{"Code": "ValidationError"}]),
            UpstreamError,
            502,
        ),
        (ReadTimeoutError(endpoint_url="https://x"), UpstreamTimeoutError, 504),
        (ConnectTimeoutError(endpoint_url="https://x"), UpstreamTimeoutError, 504),
        (EndpointConnectionError(endpoint_url="https://x"), UpstreamError, 502),
        (ValueError("the endpoint answered 1 rows for 2"), UpstreamError, 502),
    ],
)
def test_upstream_failures_map_to_502_503_504(error, kind, status):
    mapped = upstream_error(error, "InvokeEndpoint")
    assert type(mapped) is kind
    assert mapped.status == status
    assert (mapped.retry_after_seconds is not None) == (status == 503)
    assert str(error) in str(mapped), "the cause stays in the message for the log"
    assert str(error) not in mapped.public_message


# ----- bounded retries with backoff, timeouts -----


def worst_case_seconds(config: Any) -> float:
    attempts = config.retries["total_max_attempts"]  # the first attempt included
    # botocore "standard" mode sleeps rand(0, 1) * 2 ** (attempt - 1) s after a failed attempt
    backoff = sum(2 ** (attempt - 1) for attempt in range(1, attempts))
    return float(attempts * (config.connect_timeout + config.read_timeout) + backoff)


def test_retries_and_timeouts_fit_the_function_timeout():
    configs: tuple[Any, ...] = (ENDPOINT_CLIENT_CONFIG, STORE_CLIENT_CONFIG)  # botocore-stubs omit .retries
    for config in configs:
        assert config.retries["mode"] == "standard"
        assert 2 <= config.retries["total_max_attempts"] <= 3
    one_request = worst_case_seconds(ENDPOINT_CLIENT_CONFIG) + worst_case_seconds(STORE_CLIENT_CONFIG)
    assert one_request < API_FUNCTION_TIMEOUT_SECONDS


def test_the_lambda_service_uses_the_bounded_clients(aws):
    built = from_environment(ENVIRONMENT)
    runtime = built.runtime.meta.config
    assert (runtime.connect_timeout, runtime.read_timeout) == (0.5, 1.5)
    assert runtime.retries == {"mode": "standard", "total_max_attempts": 2}
    for client in (built.ssm, built.s3, built.kinesis, built.table.meta.client):
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
        assert client.meta.config.read_timeout == 1.0


class _Raw(io.BytesIO):
    def stream(self, **_: Any) -> Any:
        yield self.getvalue()


def _answer(status: int, body: dict[str, Any], headers: dict[str, str]) -> AWSResponse:
    data = json.dumps(body).encode()
    all_headers: Any = {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}
    return AWSResponse("https://runtime.sagemaker.us-east-1.amazonaws.com", status, all_headers, _Raw(data))


THROTTLED = (400, {"message": "Rate exceeded"}, {"x-amzn-ErrorType": "ThrottlingException"})
ANSWERED = (
    200,
    {"predictions": [{"label": 1, "probability": 0.9}], "model_version": "v1"},
    {"x-Amzn-Invoked-Production-Variant": "ModelA"},
)


@pytest.fixture
def lambda_service(aws, predictions_table, monkeypatch):
    """The service ``current()`` builds in Lambda, its endpoint answering on the wire as scripted."""
    built = from_environment(ENVIRONMENT)
    script: list[Any] = []
    attempts: list[str] = []

    def send(request: Any, **_: Any) -> AWSResponse:
        attempts.append(request.url)
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, Exception):
            raise step
        return _answer(*step)

    built.runtime.meta.events.register_first("before-send.sagemaker-runtime.InvokeEndpoint", send)
    sleeps: list[float] = []
    monkeypatch.setattr("time.sleep", sleeps.append)  # botocore's backoff sleeps through time.sleep
    return built, script, attempts, sleeps


def test_a_throttled_endpoint_is_retried_with_backoff_then_503(lambda_service):
    built, script, attempts, sleeps = lambda_service
    script.append(THROTTLED)
    with pytest.raises(UpstreamBusyError):
        built.predict_rows([[1.0]], ["p-1"], variant=None, source="api")
    assert len(attempts) == 2, "bounded: two attempts in all"
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 1
    assert built.table.scan()["Count"] == 0


def test_a_retry_that_succeeds_stores_the_prediction(lambda_service):
    built, script, attempts, _ = lambda_service
    script.extend([THROTTLED, ANSWERED])
    answer = built.predict_rows([[1.0]], ["p-1"], variant=None, source="api")
    assert answer["predictions"] == [{"predictionId": "p-1", "label": 1, "probability": 0.9}]
    assert len(attempts) == 2
    assert built.table.scan()["Count"] == 1


def test_a_read_timeout_is_retried_then_504(lambda_service):
    built, script, attempts, _ = lambda_service
    script.append(ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"))
    with pytest.raises(UpstreamTimeoutError):
        built.predict_rows([[1.0]], ["p-1"], variant=None, source="api")
    assert len(attempts) == 2
    assert built.table.scan()["Count"] == 0


def test_current_builds_the_service_once(aws, monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    prediction_service.current.cache_clear()
    try:
        assert prediction_service.current() is prediction_service.current()
        assert prediction_service.current().settings.endpoint_name == ENVIRONMENT["ENDPOINT_NAME"]
    finally:
        prediction_service.current.cache_clear()
