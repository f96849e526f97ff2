"""CloudFormation properties moto mishandles for resources CDK writes, converted before moto's handler.

- ``AWS::KMS::Key``: moto hands the template's ``Tags`` (``Key``/``Value``) to a tagger expecting
  KMS's API form (``TagKey``/``TagValue``) and fails with ``KeyError: 'TagKey'``; it also stores
  ``KeyPolicy`` as the template's object instead of a JSON document.
- ``AWS::SSM::Parameter``: CloudFormation's ``Tags`` is a map; moto expects a list of
  ``Key``/``Value`` pairs and fails with a 500.
- ``AWS::SageMaker::Model``/``EndpointConfig``/``Endpoint``: moto ignores ``ModelName``,
  ``EndpointConfigName`` and ``EndpointName`` and names them after the stack and logical id, so
  the endpoint the stack names (and its outputs, alarms and IAM refer to) would not exist.
- ``AWS::Batch::ComputeEnvironment``: without ``ServiceRole`` AWS Batch uses its service-linked
  role (``AWSServiceRoleForBatch``); moto requires the property and a role that exists. The
  service-linked role is created in moto's IAM and named; moto also ignores
  ``ComputeEnvironmentName`` (the queue's order refers to the environment by its ARN either way).
- ``AWS::Lambda::Function`` with ``PackageType: Image`` (the training layer's functions): moto's
  handler keeps neither ``PackageType`` nor ``ImageConfig``, so the function would have no handler
  at all; both are set on the created function (its ``ImageConfig.Command`` names the handler).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from moto.awslambda import models as lambda_models
from moto.batch import models as batch_models
from moto.iam.models import iam_backends
from moto.kms import models as kms_models
from moto.sagemaker import models as sagemaker_models
from moto.ssm import models as ssm_models

_BY = "fixed by local.emulator.cfn_properties"
GAPS = (
    f"CloudFormation AWS::KMS::Key Tags and KeyPolicy (moto mishandles them): {_BY}",
    f"CloudFormation AWS::SSM::Parameter Tags map (moto expects a list): {_BY}",
    f"CloudFormation AWS::SageMaker::Model/EndpointConfig/Endpoint names (moto ignores them): {_BY}",
    f"CloudFormation AWS::Batch::ComputeEnvironment without ServiceRole (the service-linked role; moto "
    f"requires one): {_BY}",
    f"CloudFormation AWS::Lambda::Function PackageType and ImageConfig of image functions (moto drops them): "
    f"{_BY}",
)
BATCH_SERVICE = "batch.amazonaws.com"

# resource -> the property CloudFormation takes its physical name from
_NAMED = {
    sagemaker_models.Model: "ModelName",
    sagemaker_models.FakeEndpointConfig: "EndpointConfigName",
    sagemaker_models.FakeEndpoint: "EndpointName",
}

Transform = Callable[[dict[str, Any], str], dict[str, Any]]  # (properties, account id) -> fixed


def kms_key(properties: dict[str, Any], _account_id: str = "") -> dict[str, Any]:
    fixed = dict(properties)
    fixed["Tags"] = [
        {"TagKey": tag["Key"], "TagValue": tag["Value"]} if "Key" in tag else tag
        for tag in fixed.get("Tags", [])
    ]
    if isinstance(fixed.get("KeyPolicy"), dict):
        fixed["KeyPolicy"] = json.dumps(fixed["KeyPolicy"])
    return fixed


def ssm_parameter(properties: dict[str, Any], _account_id: str = "") -> dict[str, Any]:
    fixed = dict(properties)
    if isinstance(fixed.get("Tags"), dict):
        fixed["Tags"] = [{"Key": key, "Value": value} for key, value in fixed["Tags"].items()]
    return fixed


def _unchanged(properties: dict[str, Any], _account_id: str) -> dict[str, Any]:
    return dict(properties)


def batch_service_linked_role(account_id: str) -> str:
    """The ARN of AWS Batch's service-linked role in moto's IAM (created on first use)."""
    iam = iam_backends[account_id]["global"]
    for role in iam.roles.values():
        if role.path == f"/aws-service-role/{BATCH_SERVICE}/":
            return str(role.arn)
    return str(iam.create_service_linked_role(BATCH_SERVICE, "AWS Batch service-linked role", "").arn)


def batch_compute_environment(properties: dict[str, Any], account_id: str) -> dict[str, Any]:
    fixed = dict(properties)
    fixed.setdefault("ServiceRole", batch_service_linked_role(account_id))
    return fixed


def _wrap(model: Any, transform: Transform, name_property: str | None = None) -> None:
    if getattr(model, "_mlpipe_fixed", False):
        return
    original = model.create_from_cloudformation_json.__func__

    def create(
        cls: Any,
        /,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        properties = transform(cloudformation_json.get("Properties", {}), account_id)
        fixed = {**cloudformation_json, "Properties": properties}
        if name_property is not None and isinstance(properties.get(name_property), str):
            resource_name = properties[name_property]
        return original(cls, resource_name, fixed, account_id, region_name, **kwargs)

    model.create_from_cloudformation_json = classmethod(create)
    model._mlpipe_fixed = True


def _keep_image_config(model: Any) -> None:
    """After moto creates a function, give an image function its package type and image config."""
    if getattr(model, "_mlpipe_image_config", False):
        return
    original = model.create_from_cloudformation_json.__func__

    def create(cls: Any, /, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
        function = original(cls, resource_name, cloudformation_json, *args, **kwargs)
        properties = cloudformation_json.get("Properties", {})
        if properties.get("PackageType") == "Image":
            function.package_type = "Image"
            function.image_config = lambda_models.ImageConfig(properties.get("ImageConfig", {}))
        return function

    model.create_from_cloudformation_json = classmethod(create)
    model._mlpipe_image_config = True


def install() -> tuple[str, ...]:
    _wrap(kms_models.Key, kms_key)
    _wrap(ssm_models.Parameter, ssm_parameter)
    for model, name_property in _NAMED.items():
        _wrap(model, _unchanged, name_property)
    _wrap(batch_models.ComputeEnvironment, batch_compute_environment, "ComputeEnvironmentName")
    _keep_image_config(lambda_models.LambdaFunction)
    return GAPS
