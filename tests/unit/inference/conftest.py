"""Fixtures of the inference layer's handlers: a stage with both versions and the API service."""

from __future__ import annotations

import pytest

from mlpipe.artifact import read_artifact
from mlpipe.registry import ModelRegistry
from stacks.inference.runtime.api import service as prediction_service
from stacks.inference.runtime.api.service import ApiSettings, PredictionService
from tests.unit.conftest import BUCKET, PATH, TABLE, ModelRuntime

STREAM = "ml-pipeline-predictions-local-us-east-1"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def runtime(trained) -> ModelRuntime:
    return ModelRuntime(trained.extracted["v1"])


@pytest.fixture
def monotonic() -> Clock:
    return Clock()


@pytest.fixture
def service(
    aws, data_stack, predictions_table, trained, runtime, monotonic, monkeypatch
) -> PredictionService:
    registry = ModelRegistry(location=data_stack, s3=aws.client("s3"), ssm=aws.client("ssm"))
    for version in ("v1", "v2"):
        registry.register(read_artifact(trained.artifacts[version].archive), version, actor="ci")
    aws.client("ssm").put_parameter(Name=f"{PATH}/active-version", Value="v1", Type="String", Overwrite=True)
    aws.client("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
    settings = ApiSettings.model_validate(
        {
            "ENDPOINT_NAME": "ml-pipeline-endpoint-local-us-east-1",
            "MODEL_BUCKET": BUCKET,
            "MODEL_PARAMETERS_PATH": PATH,
            "PREDICTIONS_TABLE": TABLE,
            "STREAM_NAME": STREAM,
            "PREDICTION_TTL_DAYS": 30,
        }
    )
    built = PredictionService(
        settings,
        ssm=aws.client("ssm"),
        s3=aws.client("s3"),
        runtime=runtime,
        table=aws.resource("dynamodb").Table(TABLE),
        kinesis=aws.client("kinesis"),
        monotonic=monotonic,
    )
    monkeypatch.setattr(prediction_service, "current", lambda: built)
    return built
