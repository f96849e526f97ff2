"""Shared unit-test fixtures: a moto account shaped like a stage, model archives, trained models."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local.emulator import apigateway as apigateway_ext
from local.emulator import sagemaker as sagemaker_ext
from mlpipe.artifact import read_artifact
from mlpipe.registry import ModelRegistry
from mlpipe.stage import RegistryLocation
from model import data, server, train
from shared import answer_cache
from shared.outputs import DataOutputs, InferenceOutputs


@dataclass(frozen=True)
class Trained:
    output: Path
    artifacts: dict[str, train.Artifact]
    extracted: dict[str, Path]

    def metrics(self, version: str) -> dict:
        metrics: dict = json.loads((self.extracted[version] / "metrics.json").read_text())
        return metrics


@pytest.fixture(scope="session")
def dataset() -> data.Dataset:
    return data.load_dataset()


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    output = tmp_path_factory.mktemp("models")
    artifacts = {artifact.version: artifact for artifact in train.train(output)}
    extracted = {}
    for version, artifact in artifacts.items():
        target = tmp_path_factory.mktemp(f"extracted-{version}")
        with tarfile.open(artifact.archive, "r:gz") as tar:
            tar.extractall(target, filter="data")
        extracted[version] = target
    return Trained(output, artifacts, extracted)


def feature_rows(dataset: data.Dataset, split: data.Split, count: int) -> list[dict[str, float]]:
    """The first ``count`` rows of a split in the canonical object form."""
    return [dict(zip(dataset.feature_names, row, strict=True)) for row in split.features[:count].tolist()]


BUCKET = "ml-pipeline-models-local-us-east-1-123456789012"
PATH = "/ml-pipeline/local/models"
TABLE = "ml-pipeline-predictions-local-us-east-1"
ENDPOINT = "ml-pipeline-endpoint-local-us-east-1"
ANSWER_CACHE_TABLE = "ml-pipeline-answer-cache-local-us-east-1"
ROLE = "arn:aws:iam::123456789012:role/ml-pipeline-sagemaker-local"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
VPC = {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0a", "subnet-0b"]}


@pytest.fixture
def aws(monkeypatch) -> Iterator[boto3.session.Session]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


@pytest.fixture
def data_stack(aws) -> RegistryLocation:
    """The parts of ml-pipeline-data-local the registry uses: a versioned bucket and the outputs."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    template = {
        "Resources": {
            "Active": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": f"{PATH}/active-version", "Type": "String", "Value": "v1"},
            }
        },
        "Outputs": {
            DataOutputs.MODEL_BUCKET_NAME: {"Value": BUCKET},
            DataOutputs.MODEL_PARAMETERS_PATH: {"Value": PATH},
            DataOutputs.PREDICTIONS_TABLE_NAME: {"Value": TABLE},
        },
    }
    aws.client("cloudformation").create_stack(
        StackName="ml-pipeline-data-local", TemplateBody=json.dumps(template)
    )
    return RegistryLocation(stage="local", model_bucket=BUCKET, parameters_path=PATH)


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def make_artifact(tmp_path) -> Callable[..., Path]:
    """make_artifact(name, accuracy=..., drop=(...)) -> a model.tar.gz with the trained layout."""

    def make(name: str = "model", *, accuracy: float = 0.95, drop: tuple[str, ...] = ()) -> Path:
        members = {
            "model.joblib": f"weights of {name}".encode(),
            "schema.json": json.dumps({"features": [{"name": "x", "type": "number"}]}).encode(),
            "metrics.json": json.dumps(
                {"algorithm": name, "test_metrics": {"accuracy": accuracy}, "n_test": 114}
            ).encode(),
            "baseline.json": json.dumps({"x": {"mean": 0.0, "std": 1.0}}).encode(),
            "code/inference.py": b"def model_fn(model_dir):\n    return model_dir\n",
        }
        for member in drop:
            members.pop(member)
        return _archive(tmp_path / f"{name}.tar.gz", members)

    return make


@pytest.fixture
def emulator():
    sagemaker_ext.install()
    sagemaker_ext.reset()
    yield sagemaker_ext
    sagemaker_ext.reset()


@pytest.fixture
def stage(aws, data_stack, make_artifact, emulator):
    """v1 and v2 registered; the endpoint as the inference stack creates it (v1 on both variants)."""
    registry = ModelRegistry(location=data_stack, s3=aws.client("s3"), ssm=aws.client("ssm"))
    registered = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    registry.register(read_artifact(make_artifact("logreg", accuracy=0.95)), "v1", actor="ci", now=registered)
    registry.register(
        read_artifact(make_artifact("boosting", accuracy=0.96)), "v2", actor="ci", now=registered
    )
    sm = aws.client("sagemaker")
    for name in ("stack-model-a", "stack-model-b"):
        sm.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/models/v1/model.tar.gz"},
            VpcConfig=VPC,
        )
    sm.create_endpoint_config(
        EndpointConfigName="stack-config",
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
            for variant, model, weight in (("ModelA", "stack-model-a", 1.0), ("ModelB", "stack-model-b", 0.0))
        ],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://data/data-capture/",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
    )
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="stack-config")
    return registry


@pytest.fixture
def lambda_context():
    """A Lambda context object as the runtime passes it (Powertools reads these attributes)."""

    class Context:
        function_name = "ml-pipeline-test-local-us-east-1"
        memory_limit_in_mb = 256
        invoked_function_arn = (
            "arn:aws:lambda:us-east-1:123456789012:function:ml-pipeline-test-local-us-east-1"
        )
        aws_request_id = "00000000-0000-0000-0000-000000000000"

    return Context()


@pytest.fixture
def rest_api(aws) -> Iterator[tuple[str, str]]:
    """An API with a deployed stage in the moto account, with FlushStageCache added; (api id, stage)."""
    apigateway_ext.install()
    apigateway_ext.reset()
    client = aws.client("apigateway")
    api_id = client.create_rest_api(name="ml-pipeline-api-local-us-east-1")["id"]
    root = client.get_resources(restApiId=api_id)["items"][0]["id"]
    client.put_method(restApiId=api_id, resourceId=root, httpMethod="GET", authorizationType="NONE")
    client.put_integration(restApiId=api_id, resourceId=root, httpMethod="GET", type="MOCK")
    client.create_deployment(restApiId=api_id, stageName="local")
    yield api_id, "local"
    apigateway_ext.reset()


@pytest.fixture
def predictions_table(aws):
    """The predictions table as the data stack declares it (keys and the by-model-version index)."""
    dynamodb = aws.resource("dynamodb")
    return dynamodb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": "predictionId", "KeyType": "HASH"},
            {"AttributeName": "timestamp", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "predictionId", "AttributeType": "S"},
            {"AttributeName": "timestamp", "AttributeType": "S"},
            {"AttributeName": "modelVersion", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-model-version",
                "KeySchema": [
                    {"AttributeName": "modelVersion", "KeyType": "HASH"},
                    {"AttributeName": "timestamp", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


@pytest.fixture
def answer_cache_table(aws):
    """The answer cache table as the inference stack declares it (shared.answer_cache)."""
    return aws.resource("dynamodb").create_table(
        TableName=ANSWER_CACHE_TABLE,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": answer_cache.KEY_ATTRIBUTE, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": answer_cache.KEY_ATTRIBUTE, "AttributeType": "S"}],
    )


def cache_generation(table: Any) -> str | None:
    """The answer cache's current generation (None: never invalidated)."""
    item = table.get_item(Key={answer_cache.KEY_ATTRIBUTE: answer_cache.GENERATION_KEY}).get("Item")
    return None if item is None else str(item[answer_cache.GENERATION_ATTRIBUTE])


@pytest.fixture
def inference_stack(aws, stage, rest_api, answer_cache_table):
    """The inference stack's outputs mlpipe reads (the endpoint itself comes from the stage fixture)."""
    template = {
        "Resources": {
            "Marker": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": "/probe/inference", "Type": "String", "Value": "x"},
            }
        },
        "Outputs": {
            InferenceOutputs.ENDPOINT_NAME: {"Value": ENDPOINT},
            InferenceOutputs.SAGEMAKER_EXECUTION_ROLE_ARN: {"Value": ROLE},
            InferenceOutputs.INFERENCE_IMAGE_URI: {"Value": IMAGE},
            InferenceOutputs.REST_API_ID: {"Value": rest_api[0]},
            InferenceOutputs.API_STAGE_NAME: {"Value": rest_api[1]},
            InferenceOutputs.ANSWER_CACHE_TABLE: {"Value": ANSWER_CACHE_TABLE},
        },
    }
    aws.client("cloudformation").create_stack(
        StackName="ml-pipeline-inference-local", TemplateBody=json.dumps(template)
    )


class ModelRuntime:
    """``sagemaker-runtime`` stand-in: the trained model's own entry point answers, as the container would.

    The first ``refuse`` requests are refused with ThrottlingException (the job's retries are
    botocore's; here a refused request marks its rows failed, which the test checks).
    """

    def __init__(self, model_dir: Path, variant: str = "ModelA", refuse: int = 0) -> None:
        self.entry = server.load_entry_point(model_dir)
        self.model = self.entry.model_fn(str(model_dir))
        self.variant = variant
        self.refuse = refuse
        self.calls: list[int] = []

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        variant = kwargs.get("TargetVariant", self.variant)
        rows = self.entry.input_fn(kwargs["Body"], kwargs["ContentType"])
        self.calls.append(len(rows))
        if self.refuse:
            self.refuse -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "InvokeEndpoint"
            )
        body, _ = self.entry.output_fn(self.entry.predict_fn(rows, self.model), kwargs["Accept"])
        return {"Body": io.BytesIO(body.encode()), "InvokedProductionVariant": variant}
