"""Register function (Lambda): a promoted candidate into the registry, then to the endpoint as challenger.

Two actions, both through ``mlpipe``'s own code (the CLI's registry and lifecycle):

- ``{"action": "register", "run_id", "bucket", "model_version", "model_artifact": "s3://…/model.tar.gz",
  "job_name", "evaluation_key"}``: downloads the trained archive, checks it (``mlpipe.artifact``),
  registers it as ``model_version`` (uploaded to the model bucket, pinned by its S3 version and
  sha256, SSM metadata) and writes the model item with its lineage (run, job, evaluation) to the
  metadata table. Registering the same bytes again (a retried state) is a no-op; other bytes
  under an existing version are refused (``ConflictError``). Output ``{"version", "sha256",
  "created"}``.
- ``{"action": "deploy", "run_id", "model_version", "weight", "task_token"}`` (the state's
  ``.waitForTaskToken``): writes the desired state — the champion unchanged, ``model_version``
  as challenger at ``weight`` — with the deploy lock carrying the task token
  (``Lifecycle.submit``), and records the A/B configuration (who, when, what weight, request id).
  It returns at once; the stage's deploy function, which owns the rollout, completes the token
  when the request is verified or has failed. A deployment in progress is ``ConflictError``
  naming its holder (the run fails with that reason: nothing is overwritten).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlpipe.artifact import read_artifact
from mlpipe.lifecycle import EndpointTarget, Lifecycle
from mlpipe.registry import ModelRegistry
from mlpipe.stage import DEPLOY_FUNCTION, RegistryLocation
from mlpipe.state import DesiredState, Traffic
from shared import training
from shared.config import get_config
from stacks.training.runtime.inputs import problems

logger = Logger(service="ml-pipeline-training-register")

_VERSION = r"^v[1-9]\d{0,5}$"


class InvalidRegisterInputError(ValueError):
    """The event is not a register or deploy request (the message names the field)."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    stage: str = Field(alias="STAGE", min_length=2)
    model_bucket: str = Field(alias="MODEL_BUCKET", min_length=3)
    table: str = Field(alias="METADATA_TABLE", min_length=3)
    endpoint_name: str = Field(alias="ENDPOINT_NAME", min_length=1)
    execution_role_arn: str = Field(alias="SAGEMAKER_EXECUTION_ROLE_ARN", pattern=r"^arn:aws[a-z-]*:iam::")
    image_uri: str = Field(alias="INFERENCE_IMAGE_URI", min_length=1)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Settings:
        return cls.model_validate(dict(environ if environ is not None else os.environ))


class RegisterRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str = Field(pattern=r"^register$")
    run_id: str = Field(pattern=training.RUN_ID_PATTERN.pattern)
    bucket: str = Field(min_length=3)
    data_key: str | None = None
    model_version: str = Field(pattern=_VERSION)
    model_artifact: str = Field(pattern=r"^s3://[^/]+/.+\.tar\.gz$")
    job_name: str = Field(min_length=1, max_length=63)
    evaluation_key: str = Field(min_length=1)


class DeployRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str = Field(pattern=r"^deploy$")
    run_id: str = Field(pattern=training.RUN_ID_PATTERN.pattern)
    model_version: str = Field(pattern=_VERSION)
    weight: float = Field(gt=0.0, lt=1.0)
    task_token: str = Field(min_length=1, max_length=2048)


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


class Registrar:
    def __init__(self, settings: Settings, session: Any, *, clock: Any = None) -> None:
        self.settings = settings
        config = get_config(settings.stage)
        self.s3 = session.client("s3")
        ssm = session.client("ssm")
        self.location = RegistryLocation(
            stage=settings.stage,
            model_bucket=settings.model_bucket,
            parameters_path=config.model_parameters_path,
        )
        self.registry = ModelRegistry(location=self.location, s3=self.s3, ssm=ssm)
        self.lifecycle = Lifecycle(
            location=self.location,
            target=EndpointTarget(
                endpoint_name=settings.endpoint_name,
                execution_role_arn=settings.execution_role_arn,
                image_uri=settings.image_uri,
            ),
            registry=self.registry,
            ssm=ssm,
            sagemaker=session.client("sagemaker"),
            s3=self.s3,
            actor="",
            reconciler=DEPLOY_FUNCTION,
            lock_ttl_seconds=config.lifecycle.lock_ttl_seconds,
            rollback_grace_seconds=config.lifecycle.rollback_grace_seconds,
        )
        self.table = session.resource("dynamodb").Table(settings.table)
        self.clock = clock or (lambda: datetime.now(UTC))

    def register(self, request: RegisterRequest) -> dict[str, Any]:
        bucket, key = _split_uri(request.model_artifact)
        actor = f"training-run:{request.run_id}"
        with tempfile.TemporaryDirectory() as work:
            path = Path(work) / "model.tar.gz"
            self.s3.download_file(bucket, key, str(path))
            artifact = read_artifact(path)
            record, created = self.registry.register(
                artifact, request.model_version, actor=actor, now=self.clock()
            )
        self.table.put_item(
            Item=json.loads(
                json.dumps(
                    {
                        **training.model_key(record.version),
                        "version": record.version,
                        "runId": request.run_id,
                        "jobName": request.job_name,
                        "sha256": record.sha256,
                        "artifact": request.model_artifact,
                        "evaluation": f"s3://{request.bucket}/{request.evaluation_key}",
                        "registeredAt": self.clock().isoformat(timespec="seconds"),
                    }
                ),
                parse_float=Decimal,
            )
        )
        logger.info(
            "registered", extra={"version": record.version, "new_version": created, "run_id": request.run_id}
        )
        return {"version": record.version, "sha256": record.sha256, "created": created}

    def deploy(self, request: DeployRequest) -> dict[str, Any]:
        actor = f"training-run:{request.run_id}"
        self.lifecycle.actor = actor
        current = self.lifecycle.desired().without_standby()
        desired = DesiredState(
            champion=current.champion,
            traffic=Traffic(challenger=request.model_version, challenger_weight=request.weight),
        )
        request_id = self.lifecycle.submit(desired, callback_token=request.task_token)
        at = self.clock().isoformat(timespec="seconds")
        self.table.put_item(
            Item={
                training.PARTITION_KEY: training.AB_CONFIG_PARTITION,
                training.SORT_KEY: f"{at}#{request_id}",
                "requestId": request_id,
                "actor": actor,
                "at": at,
                "champion": desired.champion,
                "challenger": request.model_version,
                "challengerWeight": Decimal(str(request.weight)),
            }
        )
        logger.info(
            "challenger requested", extra={"request_id": request_id, "version": request.model_version}
        )
        return {"request_id": request_id}


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    registrar = Registrar(Settings.from_environment(), boto3.session.Session())
    try:
        action = event.get("action")
        if action == "register":
            return registrar.register(RegisterRequest.model_validate(event))
        if action == "deploy":
            return registrar.deploy(DeployRequest.model_validate(event))
    except ValidationError as err:
        raise InvalidRegisterInputError(problems(err)) from None
    raise InvalidRegisterInputError(f"action: expected 'register' or 'deploy', got {event.get('action')!r}")
