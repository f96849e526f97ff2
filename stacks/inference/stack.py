"""Inference layer: SageMaker endpoint, REST API, Kinesis path, and the deploy function.

Three functions share one code asset (the project's runtime packages) and one dependencies
layer (the locked ``runtime`` group):

- ``api`` (preprocessing): validates a request against the champion's feature schema, invokes
  the endpoint, stores the prediction, or queues the request on the stream; in the VPC;
- ``stream``: the Kinesis consumer; in the VPC;
- ``deploy``: reconciles the endpoint to the desired state in Parameter Store, invoked by
  EventBridge on a change of the desired parameters and on the endpoint's state changes. It calls
  control-plane APIs (SageMaker, SSM, S3) and writes one item, the answer cache's generation, so
  it runs outside the VPC.

The answer cache (``shared.answer_cache``): the API function caches ``POST /predict`` answers in
a DynamoDB table of this stack, keyed on the validated rows; a verified deployment writes the
cache's generation, which invalidates every earlier answer.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from shared import answer_cache
from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge
from shared.infra.python_function import DependenciesLayer, HardenedFunction, source_code, vpc_functions
from shared.infra.queues import dead_letter_queue
from shared.outputs import InferenceOutputs
from stacks.data.references import data_references
from stacks.data.stack import DataStack
from stacks.inference.answer_cache import AnswerCacheTable
from stacks.inference.api import PredictionApi
from stacks.inference.endpoint import ModelEndpoint
from stacks.inference.stream import PredictionStream
from stacks.network.stack import NetworkStack

# the runtime files the functions import (handlers, the prediction service, mlpipe's lifecycle)
RUNTIME_SOURCES = (
    "shared/__init__.py",
    "shared/answer_cache.py",
    "shared/config.py",
    "shared/model_parameters.py",
    "shared/outputs.py",
    "shared/predictions.py",
    "shared/telemetry.py",
    "mlpipe",
    "model/__init__.py",
    "model/schema.py",
    "stacks/__init__.py",
    "stacks/inference/__init__.py",
    "stacks/inference/runtime",
)
HANDLERS = {
    "api": "stacks.inference.runtime.api.handler.handler",
    "stream": "stacks.inference.runtime.stream.handler.handler",
    "deploy": "stacks.inference.runtime.deploy.handler.handler",
}


class InferenceStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        network: NetworkStack,
        data: DataStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        inference = config.inference
        # Grants name the data layer's resources by their configured names (literal ARNs), so each
        # wildcard below is visible, and acknowledged, as what it is
        refs = data_references(self, config=config, data_key=data.data_key)
        self.model_bucket, self.data_bucket = refs.model_bucket, refs.data_bucket
        self.predictions_table = refs.predictions_table
        # Alarms of this layer (the variants' rollback alarms) notify here; subscribe the on-call
        # channel. Encrypted with the ops key, whose policy admits CloudWatch.
        self.alarm_topic = sns.Topic(
            self,
            "AlarmTopic",
            topic_name=config.resource_name("inference-alarms"),
            display_name=f"ml-pipeline {config.name} inference alarms",
            master_key=data.ops_key,
            enforce_ssl=True,
        )
        self.endpoint = ModelEndpoint(
            self,
            "Model",
            config=config,
            vpc=network.vpc,
            security_group=network.compute_security_group,
            model_bucket=self.model_bucket,
            data_bucket=self.data_bucket,
            data_key=data.data_key,
            alarm_topic=self.alarm_topic,
        )
        self.stream = PredictionStream(
            self, "Requests", config=config, data_key=data.data_key, ops_key=data.ops_key
        )

        layer = DependenciesLayer(
            self, "Dependencies", description=f"ml-pipeline {config.name}: locked runtime dependencies"
        ).layer
        code = source_code(RUNTIME_SOURCES)
        shared_environment = {
            "ENDPOINT_NAME": self.endpoint.endpoint_name,
            "MODEL_BUCKET": data.model_bucket.bucket_name,
            "MODEL_PARAMETERS_PATH": data.model_registry.models_path,
            "PREDICTIONS_TABLE": data.predictions_table.table_name,
            "STREAM_NAME": self.stream.stream.stream_name,
            "PREDICTION_TTL_DAYS": str(config.data.prediction_ttl_days),
        }

        make_function = vpc_functions(
            self,
            config=config,
            code=code,
            layer=layer,
            log_key=data.ops_key,
            vpc=network.vpc,
            security_groups=[network.compute_security_group],
        )

        self.answer_cache = AnswerCacheTable(self, "AnswerCache", config=config, key=data.data_key)

        def vpc_function(
            name: str, description: str, sizing: Any, environment: dict[str, str] | None = None
        ) -> HardenedFunction:
            function: HardenedFunction = make_function(
                f"{name.capitalize()}Function",
                name=name,
                description=description,
                handler=HANDLERS[name],
                sizing=sizing,
                environment={**shared_environment, **(environment or {})},
            )
            return function

        cache_environment = {}
        if config.inference.api.cache_ttl_seconds > 0:
            cache_environment = {
                answer_cache.TABLE_ENVIRONMENT: self.answer_cache.table.table_name,
                answer_cache.TTL_ENVIRONMENT: str(config.inference.api.cache_ttl_seconds),
            }
        self.api_function = vpc_function(
            "api",
            "Validates prediction requests, answers from the answer cache or invokes the endpoint, "
            "stores predictions",
            inference.api_function,
            cache_environment,
        )
        self.answer_cache.grant_answers(self.api_function.role)
        self.stream_function = vpc_function(
            "stream", "Consumes queued prediction requests from Kinesis", inference.stream_function
        )
        for function in (self.api_function, self.stream_function):
            self._grant_predictions(function, data)
        self.stream.stream.grant_write(self.api_function.role)
        self.stream.connect(self.stream_function.function, config)

        self.api = PredictionApi(
            self, "Api", config=config, function=self.api_function.function, log_key=data.ops_key
        )

        self.deploy_function = HardenedFunction(
            self,
            "DeployFunction",
            config=config,
            name="deploy",
            description="Reconciles the SageMaker endpoint to the desired model versions and weights",
            code=code,
            handler=HANDLERS["deploy"],
            sizing=inference.deploy_function,
            log_key=data.ops_key,
            layers=[layer],
            environment={
                "ENDPOINT_NAME": self.endpoint.endpoint_name,
                "SAGEMAKER_EXECUTION_ROLE_ARN": self.endpoint.execution_role.role_arn,
                "INFERENCE_IMAGE_URI": self.endpoint.image_uri,
                "MODEL_BUCKET": data.model_bucket.bucket_name,
                "MODEL_PARAMETERS_PATH": data.model_registry.models_path,
                answer_cache.TABLE_ENVIRONMENT: self.answer_cache.table.table_name,
            },
        )
        acknowledge(
            self.deploy_function.function,
            guard=["lambda_inside_vpc_check"],
            reason="The deploy function calls control-plane APIs (SageMaker, SSM, S3) and writes one item, "
            "the answer cache's generation marker (IAM-limited to that key), over AWS's public endpoints "
            "with TLS and SigV4; it reads no customer data, so it runs outside the VPC instead of paying "
            "for interface endpoints of SageMaker's and SSM's APIs.",
        )
        self._grant_deploy(config, data)
        self._event_rules(config, data)
        self._acknowledge_wildcards(config)

        outputs = {
            InferenceOutputs.ENDPOINT_NAME: self.endpoint.endpoint_name,
            InferenceOutputs.SAGEMAKER_EXECUTION_ROLE_ARN: self.endpoint.execution_role.role_arn,
            InferenceOutputs.INFERENCE_IMAGE_URI: self.endpoint.image_uri,
            InferenceOutputs.REST_API_ID: self.api.rest_api.rest_api_id,
            InferenceOutputs.API_STAGE_NAME: self.api.stage_name,
            InferenceOutputs.API_URL: self.api.rest_api.url,
            InferenceOutputs.API_KEY_ID: self.api.api_key.key_id,
            InferenceOutputs.STREAM_NAME: self.stream.stream.stream_name,
            InferenceOutputs.STREAM_FAILURE_QUEUE_URL: self.stream.failures.queue_url,
            InferenceOutputs.API_FUNCTION_NAME: self.api_function.function.function_name,
            InferenceOutputs.STREAM_FUNCTION_NAME: self.stream_function.function.function_name,
            InferenceOutputs.ALARM_TOPIC_ARN: self.alarm_topic.topic_arn,
            InferenceOutputs.DEPLOY_FUNCTION_NAME: self.deploy_function.function.function_name,
            InferenceOutputs.ANSWER_CACHE_TABLE: self.answer_cache.table.table_name,
        }
        for key, value in outputs.items():
            cdk.CfnOutput(self, key, value=value)

    def _grant_predictions(self, function: HardenedFunction, data: DataStack) -> None:
        """Invoke this endpoint, store/read predictions, read the champion version and its schema."""
        role = function.role
        role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[self.endpoint.endpoint_arn])
        )
        self.predictions_table.grant_read_write_data(role)
        data.model_registry.active_version.grant_read(role)
        self.model_bucket.grant_read(role, "models/*/schema.json")

    def _grant_deploy(self, config: EnvironmentConfig, data: DataStack) -> None:
        role = self.deploy_function.role
        registry = data.model_registry
        # completes the task token of a training run waiting for its challenger's deployment
        # (mlpipe.state.PendingDeployment.callback_token); these actions have no resource-level
        # permissions: a token is only valid for the execution that issued it
        role.add_to_policy(
            iam.PolicyStatement(actions=["states:SendTaskSuccess", "states:SendTaskFailure"], resources=["*"])
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ssm:GetParameter",
                    "ssm:GetParameters",
                    "ssm:GetParametersByPath",
                    "ssm:GetParameterHistory",
                    "ssm:PutParameter",
                    "ssm:DeleteParameter",
                ],
                resources=[
                    registry.models_path_arn,
                    self.format_arn(
                        service="ssm", resource="parameter", resource_name=registry.models_path.lstrip("/")
                    ),
                ],
            )
        )
        self.model_bucket.grant_read(role, "models/*")
        self.model_bucket.grant_read(role, "registry/*")
        self.model_bucket.grant_put(role, "registry/*")
        endpoint = self.endpoint.endpoint_name
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:UpdateEndpointWeightsAndCapacities",
                ],
                resources=[self.endpoint.endpoint_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:DescribeModel",
                    "sagemaker:CreateModel",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:AddTags",
                ],
                resources=[
                    self.format_arn(service="sagemaker", resource="model", resource_name=f"{endpoint}-*"),
                    self.format_arn(
                        service="sagemaker", resource="endpoint-config", resource_name=f"{endpoint}-*"
                    ),
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.endpoint.execution_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        self.answer_cache.grant_invalidate(role)

    def _acknowledge_wildcards(self, config: EnvironmentConfig) -> None:
        readers = {
            "Resource::arn:*:s3:::*/models/*/schema.json": "The feature schema of whichever version is the "
            "champion "
            "(models/{version}/schema.json); versions are registered after deployment.",
            "Resource::arn:*:dynamodb:*:table/*/index/*": "The predictions table's indexes (CDK's table "
            "grant); "
            "the by-model-version index is read by analytics queries.",
        }
        self.api_function.acknowledge_wildcards(readers)
        self.stream_function.acknowledge_wildcards(readers)
        endpoint = self.endpoint.endpoint_name
        self.deploy_function.acknowledge_wildcards(
            {
                "Resource::*": "X-Ray PutTraceSegments/PutTelemetryRecords, EC2 Describe* and Step "
                "Functions' "
                "SendTaskSuccess/SendTaskFailure (the training run's task token) support no resource-level "
                "permissions (AWS service authorization reference); a task token is only valid for the "
                "execution that issued it.",
                f"Resource::arn:*:ssm:*:parameter{config.model_parameters_path}/*": "The model registry's "
                "parameters: desired and verified state, the deploy lock and one metadata parameter per "
                "registered version (created at run time, so named by the path prefix).",
                "Resource::arn:*:s3:::*/models/*": "Artifacts of any registered version (registered after "
                "deployment); read-only.",
                "Resource::arn:*:s3:::*/registry/*": "The registry's history records the function appends.",
                f"Resource::arn:*:sagemaker:*:model/{endpoint}-*": "SageMaker models the function creates "
                "per "
                "version, named after this endpoint; their full names carry the artifact checksum.",
                f"Resource::arn:*:sagemaker:*:endpoint-config/{endpoint}-*": "Endpoint configs the function "
                "creates per deployment, named after this endpoint and the request.",
            }
        )

    def _event_rules(self, config: EnvironmentConfig, data: DataStack) -> None:
        """Desired-parameter changes and the endpoint's state changes invoke the deploy function."""
        parameters = config.model_parameters
        dead_letters = dead_letter_queue(
            self,
            "DeployEventsDeadLetters",
            config=config,
            key=data.ops_key,
            name="deploy-events-dlq",
            retention_days=14,
            holds="Events EventBridge could not deliver to the deploy function after its retries.",
        )
        self.deploy_dead_letters = dead_letters
        target = targets.LambdaFunction(
            self.deploy_function.function,
            dead_letter_queue=dead_letters,
            retry_attempts=3,
            max_event_age=cdk.Duration.hours(1),
        )
        events.Rule(
            self,
            "DesiredStateChanged",
            rule_name=config.resource_name("desired-state-changed"),
            description="A change of the desired model versions/weights starts a deployment",
            event_pattern=events.EventPattern(
                source=["aws.ssm"],
                detail_type=["Parameter Store Change"],
                detail={
                    "name": [parameters.active_version, parameters.traffic],
                    "operation": ["Create", "Update"],
                },
            ),
            targets=[target],
        )
        events.Rule(
            self,
            "EndpointStateChanged",
            rule_name=config.resource_name("endpoint-state-changed"),
            description="The endpoint finishing an update lets the deploy function verify and record it",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Endpoint State Change"],
                detail={"EndpointName": [self.endpoint.endpoint_name]},
            ),
            targets=[target],
        )
        events.Rule(
            self,
            "StandbyCheck",
            rule_name=config.resource_name("standby-check"),
            description="Retires the previous champion kept at weight 0 after its rollback grace period",
            schedule=events.Schedule.rate(cdk.Duration.minutes(config.lifecycle.standby_check_minutes)),
            targets=[target],
        )
