"""The drift monitor: a scheduled function comparing recent predictions with the training baseline.

Runs outside the VPC: it calls DynamoDB (Query on the predictions table's model-version index),
SSM, S3 (the baseline), CloudWatch (PutMetricData) and EventBridge (PutEvents); the VPC has no
interface endpoints for the last two, and two more would cost more than the layer. Every call is
TLS and IAM-scoped below. numpy comes in a layer of its own (the ``monitor`` group).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared import telemetry
from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge
from shared.infra.python_function import DependenciesLayer, HardenedFunction, source_code
from stacks.data.predictions_table import BY_MODEL_VERSION_INDEX

HANDLER = "stacks.observability.runtime.drift.handler.handler"
RUNTIME_SOURCES = (
    "shared/__init__.py",
    "shared/model_parameters.py",
    "shared/predictions.py",
    "shared/telemetry.py",
    "mlpipe/__init__.py",
    "mlpipe/errors.py",
    "mlpipe/state.py",
    "stacks/__init__.py",
    "stacks/observability/__init__.py",
    "stacks/observability/runtime",
)


class DriftMonitor(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        table_name: str,
        model_bucket: s3.IBucket,
        data_key: kms.IKey,
        log_key: kms.IKey,
        runtime_layer: lambda_.ILayerVersion,
        dead_letters: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        drift = config.observability.drift
        stack = cdk.Stack.of(self)
        monitor_layer = DependenciesLayer(
            self, "Statistics", description=f"ml-pipeline {config.name}: numpy", group="monitor"
        ).layer
        self.function = HardenedFunction(
            self,
            "Function",
            config=config,
            name="drift-monitor",
            description="Compares the last window of predictions per variant with the training baseline",
            code=source_code(RUNTIME_SOURCES),
            handler=HANDLER,
            sizing=drift.function,
            log_key=log_key,
            layers=[runtime_layer, monitor_layer],
            environment={
                "PREDICTIONS_TABLE": table_name,
                "MODEL_BUCKET": model_bucket.bucket_name,
                "MODEL_PARAMETERS_PATH": config.model_parameters_path,
                "VARIANTS": ",".join(v.name for v in config.inference.variants),
                **drift.environment(),
                "EVENT_BUS_NAME": "default",
            },
        )
        acknowledge(
            self.function.function,
            guard=["lambda_inside_vpc_check"],
            reason="The drift monitor calls CloudWatch PutMetricData and EventBridge PutEvents, which "
            "have no interface endpoint in the VPC, besides DynamoDB, SSM and S3; all calls are TLS and "
            "IAM-scoped.",
        )
        role = self.function.role
        table_arn = stack.format_arn(service="dynamodb", resource="table", resource_name=table_name)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"], resources=[f"{table_arn}/index/{BY_MODEL_VERSION_INDEX}"]
            )
        )
        parameters = config.model_parameters
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameter"],
                resources=[
                    stack.format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))
                    for name in (parameters.active_version, parameters.traffic)
                ],
            )
        )
        model_bucket.grant_read(role, "models/*/baseline.json")
        data_key.grant_decrypt(role)
        # PutMetricData has no resource-level permissions; the condition keeps it to the namespace
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": telemetry.DEFAULT_NAMESPACE}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["events:PutEvents"],
                resources=[stack.format_arn(service="events", resource="event-bus", resource_name="default")],
            )
        )
        self.function.acknowledge_wildcards(
            {
                "Resource::*": "cloudwatch:PutMetricData has no resource-level permissions; the statement's "
                "condition limits it to the project's namespace.",
                "Resource::arn:*:s3:::*/models/*/baseline.json": "The training baseline of whichever "
                "version a variant serves (models/{version}/baseline.json); read-only.",
            }
        )
        self.schedule = events.Rule(
            self,
            "Schedule",
            rule_name=config.resource_name("drift-monitor"),
            description="Runs the drift monitor over the last window of predictions",
            schedule=events.Schedule.expression(drift.schedule),
            targets=[
                targets.LambdaFunction(
                    self.function.function,
                    dead_letter_queue=dead_letters,
                    retry_attempts=2,
                    max_event_age=cdk.Duration.minutes(30),
                )
            ],
        )
