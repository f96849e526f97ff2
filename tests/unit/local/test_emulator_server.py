"""The emulated account as a real process: the added operations work over HTTP, on 127.0.0.1 only."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def emulator_url():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "local.emulator.server", "-H", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"emulator exited: {process.stdout.read() if process.stdout else ''}")
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("emulator did not listen within 30 s")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    output, _ = process.communicate(timeout=10)
    assert "emulator gap patched: SageMaker UpdateEndpoint" in output
    assert "emulator gap patched: API Gateway FlushStageCache" in output
    assert "emulator gap patched: CloudFormation AWS::KMS::Key" in output
    assert "emulator gap patched: CloudFormation AWS::SSM::Parameter" in output


def _client(service: Any, url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_update_endpoint_and_flush_stage_cache_over_http(emulator_url):
    sm = _client("sagemaker", emulator_url)
    role = "arn:aws:iam::123456789012:role/local"
    for model in ("m1", "m2"):
        sm.create_model(
            ModelName=model,
            ExecutionRoleArn=role,
            PrimaryContainer={"Image": "i", "ModelDataUrl": "s3://b/k"},
        )
    for config, model in (("c1", "m1"), ("c2", "m2")):
        sm.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "ModelA",
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": 1.0,
                },
                {
                    "VariantName": "ModelB",
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": 0.0,
                },
            ],
        )
    sm.create_endpoint(EndpointName="e", EndpointConfigName="c1")
    sm.update_endpoint(EndpointName="e", EndpointConfigName="c2")
    assert sm.describe_endpoint(EndpointName="e")["EndpointStatus"] == "Updating"
    done = sm.describe_endpoint(EndpointName="e")
    assert (done["EndpointStatus"], done["EndpointConfigName"]) == ("InService", "c2")
    assert {v["VariantName"]: v["CurrentWeight"] for v in done["ProductionVariants"]} == {
        "ModelA": 1.0,
        "ModelB": 0.0,
    }

    apigw = _client("apigateway", emulator_url)
    api = apigw.create_rest_api(name="a")["id"]
    root = apigw.get_resources(restApiId=api)["items"][0]["id"]
    apigw.put_method(restApiId=api, resourceId=root, httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
    apigw.create_deployment(restApiId=api, stageName="local")
    apigw.flush_stage_cache(restApiId=api, stageName="local")
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.flush_stage_cache(restApiId=api, stageName="missing")
