"""Parameter Store hierarchy of the model registry.

``/ml-pipeline/{env}/models/active-version`` (the champion) and ``traffic`` (the challenger and
its share) are created here, seeded from config so the desired state matches the endpoint the
inference stack first creates. ``/ml-pipeline/{env}/models/versions/{version}/metadata``
entries are written by ``mlpipe models register`` (one per registered version, with artifact
URI, object version, sha256, metrics and baseline), so they are not CloudFormation resources;
the construct exposes the hierarchy's ARN pattern for IAM grants.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.model_parameters import VERSION_PATTERN


class ModelRegistryParameters(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        self.active_version = ssm.StringParameter(
            self,
            "ActiveVersion",
            parameter_name=config.model_parameters.active_version,
            string_value=config.data.initial_model_version,
            description="Model version the inference layer serves; roll back by setting a previous version",
            allowed_pattern=VERSION_PATTERN.pattern,
            tier=ssm.ParameterTier.STANDARD,
        )
        # The challenger and its share, seeded so the desired state matches the endpoint the
        # inference stack creates; `mlpipe models deploy/weights/promote/rollback` change it.
        self.traffic = ssm.StringParameter(
            self,
            "Traffic",
            parameter_name=config.model_parameters.traffic,
            string_value=json.dumps(config.initial_traffic, sort_keys=True),
            description="Challenger version served by ModelB and its traffic share (JSON)",
            tier=ssm.ParameterTier.STANDARD,
        )
        self.models_path = config.model_parameters_path
        # ARN of every parameter below /ml-pipeline/{env}/models, for grants in later layers.
        self.models_path_arn = cdk.Stack.of(self).format_arn(
            service="ssm",
            resource="parameter",
            resource_name=f"{self.models_path.lstrip('/')}/*",
        )
