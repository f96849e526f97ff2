"""Where a stage's model registry lives, read from the data stack's outputs (never guessed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from botocore.exceptions import ClientError

from mlpipe.errors import MissingStageError
from shared.config import ENVIRONMENTS, EnvironmentConfig
from shared.model_parameters import ModelParameterNames
from shared.outputs import BatchOutputs, DataOutputs, InferenceOutputs

Reconciler = Literal["deploy-function", "direct"]
DEPLOY_FUNCTION: Final = "deploy-function"
DIRECT: Final = "direct"


def reconciler(inference_outputs: Mapping[str, str]) -> Reconciler:
    """Who reconciles a stage's endpoint, read from its inference stack's outputs.

    The deploy function and its EventBridge rules (desired-state change, endpoint state change)
    are created together in the inference stack, which then outputs the function's name. Where
    that output exists the rules fire on every change of the desired state, so the function must
    be the only reconciler: ``mlpipe`` hands each request over and waits for its outcome. A stack
    without it (e.g. an account with only the data stack and an endpoint) has nobody else to
    reconcile, so ``mlpipe`` does (the direct path). Never a user's flag: a forgotten flag in a
    stage with the rules would be two reconcilers racing on one request.
    """
    return DEPLOY_FUNCTION if InferenceOutputs.DEPLOY_FUNCTION_NAME in inference_outputs else DIRECT


@dataclass(frozen=True)
class RegistryLocation:
    """The model bucket and the Parameter Store path of one stage's registry."""

    stage: str
    model_bucket: str
    parameters_path: str  # /ml-pipeline/{env}/models
    predictions_table: str | None = None

    @property
    def parameters(self) -> ModelParameterNames:
        return ModelParameterNames(self.parameters_path)

    @property
    def history_prefix(self) -> str:
        return "registry/history/"


def check_stage(stage: str) -> EnvironmentConfig:
    """The configuration of ``stage``; a usage error naming the known stages for any other name."""
    if stage not in ENVIRONMENTS:
        raise MissingStageError(f"unknown stage {stage!r}; known stages: {', '.join(sorted(ENVIRONMENTS))}")
    return ENVIRONMENTS[stage]


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as err:
        if err.response["Error"]["Code"] == "ValidationError":
            raise MissingStageError(
                f"stack {stack_name} does not exist in this account/region: deploy the stage first "
                "(or start the local stage) and check --stage"
            ) from None
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def registry_location(cloudformation: Any, stage: str) -> RegistryLocation:
    """Read the registry's location from ``ml-pipeline-data-{stage}``'s outputs."""
    stack_name = check_stage(stage).stack_name("data")
    outputs = stack_outputs(cloudformation, stack_name)
    try:
        return RegistryLocation(
            stage=stage,
            model_bucket=outputs[DataOutputs.MODEL_BUCKET_NAME],
            parameters_path=outputs[DataOutputs.MODEL_PARAMETERS_PATH],
            predictions_table=outputs.get(DataOutputs.PREDICTIONS_TABLE_NAME),
        )
    except KeyError as missing:
        raise MissingStageError(f"stack {stack_name} has no output {missing}; is it up to date?") from None


def endpoint_outputs(cloudformation: Any, stage: str) -> dict[str, str]:
    """The inference stack's endpoint outputs (``ml-pipeline-inference-{stage}``)."""
    stack_name = check_stage(stage).stack_name("inference")
    outputs = stack_outputs(cloudformation, stack_name)
    keys = (
        InferenceOutputs.ENDPOINT_NAME,
        InferenceOutputs.SAGEMAKER_EXECUTION_ROLE_ARN,
        InferenceOutputs.INFERENCE_IMAGE_URI,
    )
    missing = [key for key in keys if key not in outputs]
    if missing:
        raise MissingStageError(f"stack {stack_name} has no output {', '.join(missing)}; is it up to date?")
    optional = (
        InferenceOutputs.REST_API_ID,
        InferenceOutputs.API_STAGE_NAME,
        InferenceOutputs.DEPLOY_FUNCTION_NAME,
        InferenceOutputs.ANSWER_CACHE_TABLE,
    )
    return {key: outputs[key] for key in (*keys, *optional) if key in outputs}


def batch_outputs(cloudformation: Any, stage: str) -> dict[str, str]:
    """The batch stack's outputs (``ml-pipeline-batch-{stage}``): what a batch run needs."""
    stack_name = check_stage(stage).stack_name("batch")
    outputs = stack_outputs(cloudformation, stack_name)
    keys = (BatchOutputs.STATE_MACHINE_ARN, BatchOutputs.INPUT_BUCKET_NAME, BatchOutputs.INPUT_PREFIX)
    missing = [key for key in keys if key not in outputs]
    if missing:
        raise MissingStageError(f"stack {stack_name} has no output {', '.join(missing)}; is it up to date?")
    return outputs
