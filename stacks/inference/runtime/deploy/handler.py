"""Deploy function (Lambda): the event-driven caller of ``mlpipe``'s reconcile.

Two EventBridge rules invoke it:

- ``Parameter Store Change`` of the desired parameters (``active-version``, ``traffic``): start a
  deployment (lock, SageMaker models, endpoint config, UpdateEndpoint) and return at once;
- ``SageMaker Endpoint State Change`` of this endpoint: finish the deployment in progress (verify
  the endpoint runs what was asked, record the verified state or the failure, release the lock,
  invalidate the API's answer cache).

- ``Scheduled Event`` of the standby rule: retire the previous champion kept at weight 0 after a
  promotion once its rollback grace period (``lifecycle.rollback_grace_seconds``) has passed.

Where this function exists it is the stage's only reconciler (``mlpipe.stage.reconciler``):
``mlpipe`` takes the deploy lock for its request, writes the desired state and waits; the
parameter-change event makes this function adopt that request (same id) and deploy it.

A deployment takes minutes to an hour, longer than a Lambda may run, so nothing waits here. After
a deployment finishes, a desired state that changed meanwhile starts the next one, so operators'
requests made during a deployment are not lost. The adapter is thin: the logic is ``mlpipe``'s.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlpipe.cache import answer_cache_invalidator
from mlpipe.errors import ConflictError, MlpipeError
from mlpipe.lifecycle import EndpointTarget, Lifecycle
from mlpipe.registry import ModelRegistry
from mlpipe.stage import DEPLOY_FUNCTION, RegistryLocation
from shared import answer_cache
from shared.config import get_config

logger = Logger(service="ml-pipeline-deploy")

PARAMETER_CHANGE = "Parameter Store Change"
ENDPOINT_CHANGE = "SageMaker Endpoint State Change"
SCHEDULED = "Scheduled Event"


class Settings(BaseModel):
    """The function's environment, set by the inference stack."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    stage: str = Field(alias="STAGE", min_length=2)
    endpoint_name: str = Field(alias="ENDPOINT_NAME", min_length=1)
    execution_role_arn: str = Field(
        alias="SAGEMAKER_EXECUTION_ROLE_ARN", pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/"
    )
    image_uri: str = Field(alias="INFERENCE_IMAGE_URI", min_length=1)
    model_bucket: str = Field(alias="MODEL_BUCKET", min_length=3)
    parameters_path: str = Field(alias="MODEL_PARAMETERS_PATH", pattern=r"^/")
    answer_cache_table: str = Field(alias=answer_cache.TABLE_ENVIRONMENT, min_length=3)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Settings:
        return cls.model_validate(dict(environ if environ is not None else os.environ))


@dataclass(frozen=True)
class Outcome:
    action: str  # started | finished | waiting | busy | ignored
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, "detail": self.detail}


def build_lifecycle(settings: Settings, session: Any) -> Lifecycle:
    location = RegistryLocation(
        stage=settings.stage, model_bucket=settings.model_bucket, parameters_path=settings.parameters_path
    )
    s3, ssm = session.client("s3"), session.client("ssm")
    lifecycle = get_config(settings.stage).lifecycle
    return Lifecycle(
        location=location,
        target=EndpointTarget(
            endpoint_name=settings.endpoint_name,
            execution_role_arn=settings.execution_role_arn,
            image_uri=settings.image_uri,
        ),
        registry=ModelRegistry(location=location, s3=s3, ssm=ssm),
        ssm=ssm,
        sagemaker=session.client("sagemaker"),
        s3=s3,
        actor=f"deploy-function:{settings.stage}",
        reconciler=DEPLOY_FUNCTION,
        lock_ttl_seconds=lifecycle.lock_ttl_seconds,
        rollback_grace_seconds=lifecycle.rollback_grace_seconds,
        on_verified=[
            answer_cache_invalidator(session.client("dynamodb"), table_name=settings.answer_cache_table)
        ],
    )


def _start(lifecycle: Lifecycle) -> Outcome:
    try:
        pending = lifecycle.start()
    except ConflictError:
        # a deployment is running; its finish starts the next one if the desired state moved on
        return Outcome("busy", "a deployment is in progress; it will pick up the new desired state")
    return Outcome("started", f"request {pending.request_id} -> {pending.endpoint_config}")


def _finish(lifecycle: Lifecycle) -> Outcome:
    if lifecycle.pending() is None:
        return Outcome("ignored", "no deployment in progress")
    verified = lifecycle.finish()
    if verified is None:
        return Outcome("waiting", "the endpoint is still updating")
    if verified.as_desired() != lifecycle.desired():
        started = _start(lifecycle)
        return Outcome(
            "finished", f"verified {verified.request_id}; desired state changed since: {started.action}"
        )
    return Outcome("finished", f"verified {verified.request_id}")


def _retire(lifecycle: Lifecycle) -> Outcome:
    """Past the grace period, write the desired state without the standby and start deploying it."""
    desired = lifecycle.desired()
    if desired.traffic.standby is None:
        return Outcome("ignored", "no standby is kept")
    if not lifecycle.standby_expired(desired):
        return Outcome(
            "ignored", f"standby {desired.traffic.standby} is kept until {desired.traffic.standby_until}"
        )
    try:
        pending = lifecycle.start_retirement(desired)
    except ConflictError:
        return Outcome("busy", "a deployment is in progress; the next scheduled event retires the standby")
    return Outcome("started", f"retiring standby {desired.traffic.standby}: request {pending.request_id}")


def route(event: EventBridgeEvent, settings: Settings, lifecycle: Lifecycle) -> Outcome:
    desired_parameters = {lifecycle.location.parameters.active_version, lifecycle.location.parameters.traffic}
    if event.detail_type == PARAMETER_CHANGE:
        name = event.detail.get("name")
        if name not in desired_parameters:
            return Outcome("ignored", f"parameter {name} is not part of the desired state")
        return _start(lifecycle)
    if event.detail_type == SCHEDULED:
        return _retire(lifecycle)
    if event.detail_type == ENDPOINT_CHANGE:
        if event.detail.get("EndpointName") != settings.endpoint_name:
            return Outcome("ignored", f"endpoint {event.detail.get('EndpointName')} is not this stage's")
        return _finish(lifecycle)
    return Outcome("ignored", f"event {event.detail_type!r} is not handled")


@logger.inject_lambda_context
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, str]:
    try:
        settings = Settings.from_environment()
    except ValidationError as err:
        logger.error("invalid function configuration", extra={"errors": err.errors(include_input=False)})
        raise
    session = boto3.session.Session()
    lifecycle = build_lifecycle(settings, session)
    callback = Callback.of(lifecycle, session)
    try:
        outcome = route(event, settings, lifecycle)
    except MlpipeError as err:
        # recorded in last-request by mlpipe; the verified state is unchanged. Logged, not retried:
        # a retry would repeat a refused or rolled-back deployment.
        logger.error("deployment failed", extra={"reason": str(err)})
        callback.failed(str(err))
        return Outcome("failed", str(err)).as_dict()
    if outcome.action == "finished":
        callback.verified(lifecycle)
    logger.info("deploy function", extra=outcome.as_dict())
    return outcome.as_dict()


@dataclass
class Callback:
    """The Step Functions task waiting for the deployment in progress (``PendingDeployment.callback_token``).

    Read before the event is handled (finishing releases the lock that carries it); completed
    once the request is verified (SendTaskSuccess with the verified state) or has failed
    (SendTaskFailure with mlpipe's reason). A token Step Functions no longer knows (the run timed
    out or was stopped) is logged, not raised: the deployment itself is unaffected.
    """

    states: Any
    request_id: str | None = None
    token: str | None = None

    @classmethod
    def of(cls, lifecycle: Lifecycle, session: Any) -> Callback:
        pending = lifecycle.pending()
        callback = cls(states=session.client("stepfunctions"))
        if pending is not None and pending.callback_token:
            callback.request_id, callback.token = pending.request_id, pending.callback_token
        return callback

    def verified(self, lifecycle: Lifecycle) -> None:
        verified = lifecycle.verified()
        if self.token is None or verified is None or verified.request_id != self.request_id:
            return
        self._send(
            "send_task_success",
            output=json.dumps({"request_id": self.request_id, "verified": verified.model_dump(mode="json")}),
        )

    def failed(self, reason: str) -> None:
        if self.token is None:
            return
        self._send("send_task_failure", error="DeploymentFailed", cause=reason[:32_000])

    def _send(self, method: str, **kwargs: str) -> None:
        try:
            getattr(self.states, method)(taskToken=self.token, **kwargs)
        except ClientError as err:
            logger.warning(
                "the waiting run no longer accepts the outcome",
                extra={"request_id": self.request_id, "error": err.response["Error"]["Code"]},
            )
