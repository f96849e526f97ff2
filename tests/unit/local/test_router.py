"""The local SageMaker runtime router: boto3's sagemaker-runtime client in front, model servers behind."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest
import uvicorn

from local.router import WeightSource, create_router
from model import server

ENDPOINT = "ml-pipeline-endpoint-local-us-east-1"


class Endpoints:
    """The part of the SageMaker API the router reads: current weights, changed as by mlpipe."""

    def __init__(self) -> None:
        self.weights = {"ModelA": 0.8, "ModelB": 0.2}

    def describe_endpoint(self, EndpointName: str) -> dict:  # noqa: N803 - boto3's parameter name
        assert EndpointName == ENDPOINT
        return {
            "ProductionVariants": [{"VariantName": k, "CurrentWeight": v} for k, v in self.weights.items()]
        }


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def endpoints() -> Endpoints:
    return Endpoints()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runtime_url(trained, endpoints, clock) -> Iterator[str]:
    clients = {
        name: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=server.create_app(trained.extracted[version], variant=name)),
            base_url="http://model",
        )
        for name, version in (("ModelA", "v1"), ("ModelB", "v2"))
    }
    app = create_router({ENDPOINT: clients}, WeightSource(endpoints, clock=clock), rng=random.Random(3))  # noqa: S311
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    router = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not router.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    router.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def client(runtime_url):
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=runtime_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def _body(dataset, rows: int = 1) -> bytes:
    instances = [
        dict(zip(dataset.feature_names, v, strict=True)) for v in dataset.test.features[:rows].tolist()
    ]
    return json.dumps({"instances": instances}).encode()


def test_target_variant_and_the_invoked_variant_header(client, dataset):
    for variant, version in (("ModelA", "v1"), ("ModelB", "v2")):
        answer = client.invoke_endpoint(
            EndpointName=ENDPOINT, Body=_body(dataset), ContentType="application/json", TargetVariant=variant
        )
        assert answer["InvokedProductionVariant"] == variant
        assert json.loads(answer["Body"].read())["model_version"] == version


def test_traffic_follows_the_current_weights_live(client, dataset, endpoints, clock):
    def share_of_b(calls: int) -> float:
        served = [
            client.invoke_endpoint(
                EndpointName=ENDPOINT, Body=_body(dataset), ContentType="application/json"
            )["InvokedProductionVariant"]
            for _ in range(calls)
        ]
        return served.count("ModelB") / calls

    assert 0.05 < share_of_b(200) < 0.35  # weights 0.8/0.2
    endpoints.weights = {"ModelA": 0.0, "ModelB": 1.0}  # mlpipe models weights A=0 B=1
    clock.now += 2  # past the router's cache
    assert share_of_b(20) == 1.0


def test_errors_look_like_sagemakers(client, dataset):
    with pytest.raises(client.exceptions.ModelError) as model_error:
        client.invoke_endpoint(
            EndpointName=ENDPOINT, Body=b'{"instances": [{"x": 1}]}', ContentType="application/json"
        )
    assert model_error.value.response["OriginalStatusCode"] == 400
    assert "missing feature" in model_error.value.response["OriginalMessage"]
    with pytest.raises(client.exceptions.ValidationError, match="variant ModelC does not exist"):
        client.invoke_endpoint(
            EndpointName=ENDPOINT, Body=_body(dataset), ContentType="application/json", TargetVariant="ModelC"
        )
    with pytest.raises(client.exceptions.ValidationError, match="Endpoint nope not found"):
        client.invoke_endpoint(EndpointName="nope", Body=_body(dataset), ContentType="application/json")
