"""The local stage's API Gateway, read from the real synthesized inference template and driven over HTTP."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import uuid
import warnings
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from local.api_gateway import CACHE_HEADER, LocalRestApi, api_spec
from shared.config import get_config
from stacks.inference.api import REQUEST_MODEL_NAME, VARIANT_PARAMETER, request_schema
from tools.deploy_plan import deployment_plan
from tools.synth import synthesize

API = get_config("local").inference.api
STAGE = API.stage_name
# The deployed API has no stage cache (the function caches answers: shared.answer_cache); the
# emulation of API Gateway's stage cache and its documented limits is tested on the template with
# the body-keyed cache an API could declare (``with_body_keyed_cache``)
BODY_HEADER = "X-Request-Body"
BODY_CACHE_KEY = f"integration.request.header.{BODY_HEADER}"
VARIANT_CACHE_KEY = VARIANT_PARAMETER
CACHE_TTL_SECONDS = 300
KEY = "local-test-key-0123456789"
FEEDBACK = '{"predictionId": "p", "label": 1}'  # a valid feedback body (uncached route)
KEY_ID = "k1d2e3"
API_ID = "a1b2c3d4e5"

# starlette 1.10 asks for `httpx2` behind TestClient; the locked test group has httpx 0.28
HTTPX_DEPRECATION = "Using `httpx` with `starlette.testclient` is deprecated"
pytestmark = pytest.mark.filterwarnings(f"ignore:{HTTPX_DEPRECATION}")
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=HTTPX_DEPRECATION)
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def deployed_template(tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("api-gateway") / "cdk.out"
    synthesize(out, environments=["local"])
    (stack,) = [s for s in deployment_plan(out)["local"] if s.stack_name == "ml-pipeline-inference-local"]
    loaded: dict[str, Any] = json.loads(stack.template_file.read_text())
    return loaded


def with_body_keyed_cache(template: dict[str, Any]) -> dict[str, Any]:
    """The template with a stage cache on POST /predict keyed on the body header and the variant."""
    changed = copy.deepcopy(template)
    resources = changed["Resources"]
    (stage,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    stage["CacheClusterEnabled"] = True
    stage["CacheClusterSize"] = "0.5"
    stage["MethodSettings"].append(
        {
            "ResourcePath": "/~1predict",
            "HttpMethod": "POST",
            "CachingEnabled": True,
            "CacheTtlInSeconds": CACHE_TTL_SECONDS,
            "CacheDataEncrypted": True,
        }
    )
    (predict,) = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ApiGateway::Method"
        and VARIANT_PARAMETER in r["Properties"].get("RequestParameters", {})
    ]
    predict["Integration"]["RequestParameters"] = {BODY_CACHE_KEY: "method.request.body"}
    predict["Integration"]["CacheKeyParameters"] = [BODY_CACHE_KEY, VARIANT_CACHE_KEY]
    predict["Integration"]["CacheNamespace"] = "predict"
    return changed


@pytest.fixture(scope="module")
def template(deployed_template) -> dict[str, Any]:
    return with_body_keyed_cache(deployed_template)


def test_the_deployed_api_caches_nothing(deployed_template):
    deployed = api_spec(deployed_template)
    assert deployed.cache_cluster_enabled is False
    assert not [m for m in deployed.methods if m.caching_enabled]
    assert all("not cached" in line for line in deployed.describe())


@pytest.fixture(scope="module")
def spec(template):
    return api_spec(template)


@pytest.fixture(scope="module")
def valid_body(spec) -> str:
    """One row at each feature's minimum, built from the model the template declares."""
    schema = spec.method("POST", "/predict").body_schema
    (single_row,) = [b for b in schema["oneOf"] if b.get("required") == ["features"]]
    features = single_row["properties"]["features"]["properties"]
    return json.dumps({"features": {name: rule["minimum"] for name, rule in features.items()}})


class Recorder:
    """A Lambda handler that records its events and answers what the test sets."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.answer: Any = {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}
        self.failure: Exception | None = None

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        if self.failure is not None:
            raise self.failure
        return self.answer

    def count(self) -> int:
        return len(self.events)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys() -> dict[str, str]:
    return {KEY: KEY_ID}


@pytest.fixture
def gateway(spec, recorder, clock, keys) -> LocalRestApi:
    return LocalRestApi(spec, recorder, lambda: keys, clock=clock, api_id=API_ID)


@pytest.fixture
def client(gateway) -> TestClient:
    return TestClient(gateway.app())


def post(client: TestClient, path: str, body: str, key: str | None = KEY, **params: str):
    headers = {"Content-Type": "application/json"} | ({"x-api-key": key} if key is not None else {})
    return client.post(f"/{STAGE}{path}", content=body, headers=headers, params=params)


# -- the template -------------------------------------------------------------------------------


def test_the_spec_has_the_four_routes_each_behind_an_api_key(spec, template):
    routes = {(m.http_method, m.resource_path) for m in spec.methods}
    assert routes == {
        ("POST", "/predict"),
        ("POST", "/predict/stream"),
        ("GET", "/predictions/{predictionId}"),
        ("POST", "/feedback"),
    }
    assert spec.stage_name == STAGE
    assert spec.cache_cluster_enabled
    assert all(m.api_key_required for m in spec.methods)
    assert all(m.integration_type == "AWS_PROXY" for m in spec.methods)
    (function,) = {m.function_logical_id for m in spec.methods}
    assert template["Resources"][function]["Type"] == "AWS::Lambda::Function"


def test_only_post_predict_is_cached_keyed_on_the_body_header_and_the_variant(spec):
    predict = spec.method("POST", "/predict")
    assert predict.caching_enabled
    assert predict.cache_ttl_seconds == CACHE_TTL_SECONDS == 300
    assert set(predict.cache_key_parameters) == {BODY_CACHE_KEY, VARIANT_CACHE_KEY}
    assert predict.integration_parameters == {BODY_CACHE_KEY: "method.request.body"}
    assert [m for m in spec.methods if m.caching_enabled] == [predict]


def test_validation_follows_the_validators_and_models(spec):
    for path in ("/predict", "/predict/stream"):
        method = spec.method("POST", path)
        assert method.validate_body
        assert method.request_models["application/json"].name == REQUEST_MODEL_NAME
        assert method.body_schema == request_schema()
    read_back = spec.method("GET", "/predictions/{predictionId}")
    assert read_back.required_parameters == ("method.request.path.predictionId",)
    assert read_back.validate_parameters
    assert not read_back.validate_body
    feedback = spec.method("POST", "/feedback")
    assert feedback.validate_body
    assert feedback.body_schema is not None
    assert feedback.body_schema["required"] == ["predictionId", "label"]


def test_the_start_up_listing_names_each_route_its_key_and_its_cache(spec):
    lines = spec.describe()
    assert len(lines) == 4
    (predict,) = [line for line in lines if line.startswith(f"POST /{STAGE}/predict ")]
    assert "API key required" in predict
    assert f"cached {CACHE_TTL_SECONDS} s" in predict
    assert BODY_HEADER in predict
    assert "variant" in predict
    assert sum("not cached" in line for line in lines) == 3
    assert any(line.startswith(f"GET /{STAGE}/predictions/{{predictionId}} ") for line in lines)


# -- routes and keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/{STAGE}/nothing-here"),
        ("GET", f"/{STAGE}/predict"),  # a resource without that method
        ("GET", f"/{STAGE}/predictions"),  # a resource without methods
        ("POST", "/other-stage/predict"),
        ("GET", "/"),
    ],
)
def test_an_unknown_route_is_missing_authentication_token(client, recorder, method, path):
    response = client.request(method, path, headers={"x-api-key": KEY})
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}
    assert recorder.count() == 0


def test_a_missing_wrong_or_revoked_key_is_forbidden(client, recorder, keys, valid_body):
    for key in (None, "not-a-key"):
        response = post(client, "/predict", valid_body, key=key)
        assert response.status_code == 403
        assert response.json() == {"message": "Forbidden"}
    assert recorder.count() == 0
    assert post(client, "/predict", valid_body).status_code == 200
    keys.clear()
    assert post(client, "/predict", valid_body).status_code == 403
    assert recorder.count() == 1


# -- request validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"instances": [{"bogus": 1}]}),
        '{"instances": [',
        "",
        '{"features": NaN}',
        '{"features": ' + "[" * 50_000 + "]" * 50_000 + "}",  # json.loads: RecursionError
        '{"features": ' + "[" * 900 + "]" * 900 + "}",  # parses; too deep for what follows
    ],
    ids=["invalid", "malformed", "empty", "NaN", "nested-50000", "nested-900"],
)
def test_an_invalid_or_malformed_body_is_refused_before_the_function(client, recorder, body):
    response = post(client, "/predict", body)
    assert response.status_code == 400
    assert response.json() == {"message": "Invalid request body"}
    assert recorder.count() == 0


def test_any_content_type_is_validated_against_the_default_model(client, recorder):
    """The template gives the model for $default too, so text/plain does not skip validation."""
    response = client.post(
        f"/{STAGE}/predict/stream",
        content=json.dumps({"instances": [{"bogus": 1}]}),
        headers={"x-api-key": KEY, "Content-Type": "text/plain"},
    )
    assert response.status_code == 400
    assert recorder.count() == 0


def test_a_missing_required_parameter_is_named(template, recorder, valid_body):
    changed = copy.deepcopy(template)
    method = api_spec(template).method("POST", "/predict")
    changed["Resources"][method.logical_id]["Properties"]["RequestParameters"] = {VARIANT_CACHE_KEY: True}
    client = TestClient(LocalRestApi(api_spec(changed), recorder, lambda: {KEY}).app())
    response = post(client, "/predict", valid_body)
    assert response.status_code == 400
    assert response.json() == {"message": "Missing required request parameters: [variant]"}
    assert recorder.count() == 0
    assert post(client, "/predict", valid_body, variant="ModelB").status_code == 200


def test_an_integration_that_is_not_a_lambda_proxy_is_refused(template, recorder):
    changed = copy.deepcopy(template)
    method = api_spec(template).method("POST", "/feedback")
    changed["Resources"][method.logical_id]["Properties"]["Integration"]["Type"] = "MOCK"
    with pytest.raises(ValueError, match="POST /feedback: integration type 'MOCK'"):
        LocalRestApi(api_spec(changed), recorder, lambda: {KEY})


# -- the proxy event and the answer -------------------------------------------------------------


def test_a_valid_request_reaches_the_function_as_a_rest_proxy_event(client, recorder, valid_body, spec):
    response = client.post(
        f"/{STAGE}/predict",
        params={"variant": "ModelB"},
        content=valid_body,
        headers={"x-api-key": KEY, "Content-Type": "application/json", "X-Request-Body": "spoofed"},
    )
    assert response.status_code == 200
    (event,) = recorder.events
    assert event["resource"] == "/predict"
    assert event["path"] == "/predict"
    assert event["httpMethod"] == "POST"
    assert event["body"] == valid_body
    assert event["isBase64Encoded"] is False
    assert event["queryStringParameters"] == {"variant": "ModelB"}
    assert event["multiValueQueryStringParameters"] == {"variant": ["ModelB"]}
    assert event["pathParameters"] is None
    assert event["stageVariables"] is None
    assert event["headers"][BODY_HEADER] == valid_body, "the integration's mapping, not the client's header"
    assert event["multiValueHeaders"][BODY_HEADER] == [valid_body]
    assert event["headers"]["x-api-key"] == KEY
    context = event["requestContext"]
    assert context["stage"] == STAGE
    assert context["path"] == f"/{STAGE}/predict"
    assert context["resourcePath"] == "/predict"
    assert context["httpMethod"] == "POST"
    assert context["apiId"] == API_ID
    assert context["accountId"] == "123456789012"
    assert context["identity"]["apiKey"] == KEY
    assert context["identity"]["apiKeyId"] == KEY_ID
    assert context["identity"]["sourceIp"] == "testclient"
    assert isinstance(context["requestTimeEpoch"], int)
    assert uuid.UUID(context["requestId"])
    assert response.headers["x-amzn-RequestId"] == context["requestId"]
    (lambda_context,) = recorder.contexts
    assert lambda_context.function_name == spec.methods[0].function_logical_id
    assert lambda_context.get_remaining_time_in_millis() > 0


def test_path_parameters_and_repeated_query_values(client, recorder):
    response = client.get(f"/{STAGE}/predictions/p-42?variant=A&variant=B", headers={"x-api-key": KEY})
    assert response.status_code == 200
    (event,) = recorder.events
    assert event["resource"] == "/predictions/{predictionId}"
    assert event["path"] == "/predictions/p-42"
    assert event["pathParameters"] == {"predictionId": "p-42"}
    assert event["requestContext"]["path"] == f"/{STAGE}/predictions/p-42"
    assert event["queryStringParameters"] == {"variant": "B"}
    assert event["multiValueQueryStringParameters"] == {"variant": ["A", "B"]}
    assert event["body"] is None
    assert BODY_HEADER not in event["headers"]
    assert CACHE_HEADER not in response.headers


def test_powertools_routes_the_events_it_is_given(spec, keys, valid_body):
    """The events route in Powertools' REST resolver as the deployed API's do (path without the stage)."""
    resolver = APIGatewayRestResolver()

    @resolver.get("/predictions/<prediction_id>")
    def read_back(prediction_id: str) -> dict[str, Any]:
        return {"id": prediction_id, "stage": resolver.current_event.request_context.stage}

    @resolver.post("/predict")
    def predict() -> dict[str, Any]:
        event = resolver.current_event
        return {"variant": event.get_query_string_value("variant"), "rows": len(event.json_body["features"])}

    client = TestClient(LocalRestApi(spec, resolver.resolve, lambda: keys).app())
    response = client.get(f"/{STAGE}/predictions/p-7", headers={"x-api-key": KEY})
    assert response.status_code == 200
    assert response.json() == {"id": "p-7", "stage": STAGE}
    assert response.headers["content-type"] == "application/json"
    answer = post(client, "/predict", valid_body, variant="ModelA")
    assert answer.json() == {"variant": "ModelA", "rows": len(json.loads(valid_body)["features"])}
    assert post(client, "/feedback", FEEDBACK).status_code == 404, "Powertools' own 404: no such route in it"


def test_the_functions_answer_is_returned_with_headers_merged(client, recorder):
    recorder.answer = {
        "statusCode": 201,
        "headers": {"X-One": "1", "Set-Thing": "ignored: multiValueHeaders wins"},
        "multiValueHeaders": {"Set-Thing": ["a", "b"]},
        "body": "created",
    }
    response = post(client, "/feedback", FEEDBACK)
    assert response.status_code == 201
    assert response.text == "created"
    assert response.headers["x-one"] == "1"
    assert response.headers.get_list("set-thing") == ["a", "b"]
    assert response.headers["content-type"] == "application/json"


def test_a_base64_body_is_decoded_only_for_the_apis_binary_media_types(spec, recorder, keys):
    encoded = base64.b64encode(b"\x00binary").decode()
    recorder.answer = {"statusCode": 200, "body": encoded, "isBase64Encoded": True}
    plain = TestClient(LocalRestApi(spec, recorder, lambda: keys).app())
    headers = {"x-api-key": KEY, "Accept": "application/octet-stream"}
    assert plain.post(f"/{STAGE}/feedback", content=FEEDBACK, headers=headers).text == encoded
    binary_spec = dataclasses.replace(spec, binary_media_types=("application/octet-stream",))
    binary = TestClient(LocalRestApi(binary_spec, recorder, lambda: keys).app())
    assert binary.post(f"/{STAGE}/feedback", content=FEEDBACK, headers=headers).content == b"\x00binary"


@pytest.mark.parametrize(
    "answer",
    [
        {"body": "no status"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "{}", "cookies": ["an HTTP API (payload 2.0) key"]},
        "not a proxy response",
    ],
)
def test_a_malformed_proxy_response_is_a_502(client, recorder, answer):
    recorder.answer = answer
    response = post(client, "/feedback", FEEDBACK)
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_a_failing_function_is_a_502(client, recorder, valid_body, gateway):
    recorder.failure = RuntimeError("boom")
    response = post(client, "/predict", valid_body)
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    recorder.failure = None
    assert post(client, "/predict", valid_body).headers[CACHE_HEADER] == "miss", "a failure is not cached"
    assert recorder.count() == 2


# -- the stage cache ----------------------------------------------------------------------------


def test_the_same_request_is_answered_from_the_cache(client, recorder, valid_body, gateway):
    recorder.answer = {"statusCode": 200, "body": '{"n": 1}'}
    first = post(client, "/predict", valid_body, variant="ModelA")
    recorder.answer = {"statusCode": 200, "body": '{"n": 2}'}
    second = post(client, "/predict", valid_body, variant="ModelA")
    assert (first.headers[CACHE_HEADER], second.headers[CACHE_HEADER]) == ("miss", "hit")
    assert second.json() == {"n": 1}
    assert recorder.count() == 1
    assert second.headers["x-amzn-RequestId"] != first.headers["x-amzn-RequestId"]
    stats = gateway.cache_stats()
    assert (stats.hits, stats.misses, stats.entries) == (1, 1, 1)


def test_a_cache_hit_still_needs_a_valid_key(client, recorder, valid_body):
    post(client, "/predict", valid_body)
    assert post(client, "/predict", valid_body, key=None).status_code == 403
    assert post(client, "/predict", valid_body, key="wrong").status_code == 403
    assert recorder.count() == 1


def test_another_variant_or_body_is_a_miss(client, recorder, valid_body):
    other_body = json.dumps({"instances": [json.loads(valid_body)["features"]]})
    answers = [
        post(client, "/predict", valid_body).headers[CACHE_HEADER],
        post(client, "/predict", valid_body, variant="ModelB").headers[CACHE_HEADER],
        post(client, "/predict", valid_body, variant="ModelA").headers[CACHE_HEADER],
        post(client, "/predict", other_body, variant="ModelB").headers[CACHE_HEADER],
        post(client, "/predict", valid_body, variant="ModelB").headers[CACHE_HEADER],
    ]
    assert answers == ["miss", "miss", "miss", "miss", "hit"]
    assert recorder.count() == 4


def test_an_entry_expires_after_the_ttl(client, recorder, valid_body, clock):
    post(client, "/predict", valid_body)
    clock.now += CACHE_TTL_SECONDS - 0.001
    assert post(client, "/predict", valid_body).headers[CACHE_HEADER] == "hit"
    clock.now += 0.001
    assert post(client, "/predict", valid_body).headers[CACHE_HEADER] == "miss"
    assert recorder.count() == 2


def test_expired_entries_are_dropped_when_a_new_answer_is_stored(
    client, recorder, valid_body, gateway, clock
):
    other_body = json.dumps({"instances": [json.loads(valid_body)["features"]]})
    post(client, "/predict", valid_body)
    clock.now += CACHE_TTL_SECONDS / 2
    post(client, "/predict", valid_body, variant="ModelB")
    assert gateway.cache_stats().entries == 2
    clock.now += CACHE_TTL_SECONDS / 2
    post(client, "/predict", other_body)  # the first entry has expired, the second has not
    assert gateway.cache_stats().entries == 2
    assert post(client, "/predict", valid_body, variant="ModelB").headers[CACHE_HEADER] == "hit"
    assert post(client, "/predict", valid_body).headers[CACHE_HEADER] == "miss"
    clock.now += CACHE_TTL_SECONDS
    post(client, "/predict", valid_body, variant="ModelA")
    assert gateway.cache_stats().entries == 1


def test_a_flush_of_this_stage_empties_the_cache(client, recorder, valid_body, gateway):
    post(client, "/predict", valid_body)
    gateway.flush("another-api", STAGE)
    gateway.flush(API_ID, "another-stage")
    assert post(client, "/predict", valid_body).headers[CACHE_HEADER] == "hit"
    gateway.flush(API_ID, STAGE)
    assert post(client, "/predict", valid_body).headers[CACHE_HEADER] == "miss"
    gateway.flush()
    assert post(client, "/predict", valid_body).headers[CACHE_HEADER] == "miss"
    assert recorder.count() == 3
    assert gateway.cache_stats().flushes == 2


def test_only_2xx_answers_are_cached(client, recorder, valid_body):
    recorder.answer = {"statusCode": 404, "body": '{"message": "no"}'}
    assert [post(client, "/predict", valid_body).headers[CACHE_HEADER] for _ in range(2)] == ["miss", "miss"]
    assert recorder.count() == 2


def test_a_request_whose_key_exceeds_the_header_budget_bypasses_the_cache(client, recorder, valid_body):
    """The body is the key (X-Request-Body): over 10,240 bytes it is sent on, uncached, never refused."""
    rows = json.loads(valid_body)["features"]
    large = json.dumps({"instances": [rows] * 20})
    assert len(large.encode()) > 10_240 >= len(valid_body.encode())
    answers = [post(client, "/predict", large) for _ in range(2)]
    assert [(a.status_code, a.headers[CACHE_HEADER]) for a in answers] == [(200, "bypass")] * 2
    assert recorder.count() == 2
    assert post(client, "/predict", valid_body).headers[CACHE_HEADER] == "miss", "a small body is cached"


def test_an_answer_over_the_cacheable_size_is_not_stored(client, recorder, valid_body):
    recorder.answer = {"statusCode": 200, "body": json.dumps({"pad": "x" * 1_048_576})}
    assert [post(client, "/predict", valid_body).headers[CACHE_HEADER] for _ in range(2)] == ["miss", "miss"]
    assert recorder.count() == 2


def test_methods_without_caching_always_reach_the_function(client, recorder):
    for _ in range(2):
        response = post(client, "/predict/stream", "{}", key=KEY)
        assert response.status_code == 400  # the model refuses an empty object
        feedback = post(client, "/feedback", FEEDBACK)
        assert feedback.status_code == 200
        assert CACHE_HEADER not in feedback.headers
    assert recorder.count() == 2
