"""The SageMaker endpoint: two models, a two-variant endpoint config, guardrails and autoscaling.

- Models: the AWS-published scikit-learn inference image (``shared.config.sklearn_image_uri``)
  with each version's ``model.tar.gz`` from the versioned model bucket, in the isolated
  subnets, with network isolation (the entry point needs no network).
- Endpoint config: variants ``ModelA`` (champion) and ``ModelB`` (challenger) at the configured
  weights, instance type and count; data capture of requests and responses to the data bucket
  (KMS); the ML storage volumes encrypted with the data key.
- Endpoint: blue/green deployment guardrails with auto-rollback on the per-variant alarms below.
  A canary of one instance when every variant has at least two instances (a canary must be at
  most half of a variant's fleet), otherwise all at once followed by a baking period; the
  alarms are watched throughout either way.
- Per-variant alarms: 5XX errors from the model container and model latency p99.
- Auto scaling per variant: target tracking on ``SageMakerVariantInvocationsPerInstance``.

Ownership: CloudFormation creates the endpoint with the first versions (``data.initial_*`` in
config). From then on ``mlpipe`` (the deploy function) owns the versions and weights it serves:
it creates new models and endpoint configs with the same variant names and updates the endpoint
with ``RetainDeploymentConfig``, so these guardrails apply to every later deployment too.
"""

from __future__ import annotations

import hashlib

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from shared.config import SKLEARN_IMAGE_REGISTRIES, EnvironmentConfig, sklearn_image_uri
from shared.infra.acknowledge import acknowledge_wildcards
from shared.infra.vpc_access import allow_vpc_interfaces
from shared.model_parameters import artifact_key


def _name(prefix: str, label: str, *parts: str) -> str:
    """``{prefix}-{label}-{digest of parts}``: unique per content, within SageMaker's 63 characters."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]
    name = f"{prefix}-{label}-{digest}"
    if len(name) > 63:
        raise ValueError(f"SageMaker name {name!r} is longer than 63 characters")
    return name


MODEL_VERSION_ENV = "MODEL_VERSION"


class ModelEndpoint(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        model_bucket: s3.IBucket,
        data_bucket: s3.IBucket,
        data_key: kms.IKey,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        inference = config.inference
        self.endpoint_name = config.resource_name("endpoint")
        self.image_uri = sklearn_image_uri(config.region)

        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": config.account}}
            ),
            description=f"{self.endpoint_name}: read model artifacts, write data capture, logs and metrics",
        )
        self._grant_execution(config, stack, model_bucket, data_bucket, data_key, vpc, security_group)

        subnets = [subnet.subnet_id for subnet in vpc.isolated_subnets]
        vpc_config = sagemaker.CfnModel.VpcConfigProperty(
            security_group_ids=[security_group.security_group_id], subnets=subnets
        )
        models: dict[str, sagemaker.CfnModel] = {}
        for variant in inference.variants:
            version = config.initial_version(variant.name)
            artifact = f"s3://{model_bucket.bucket_name}/{artifact_key(version)}"
            model = sagemaker.CfnModel(
                self,
                f"{variant.name}Model",
                # named after the endpoint (the deploy function's IAM is scoped to that prefix)
                # and what it runs, so a changed image or artifact is a new, replaceable name
                model_name=_name(self.endpoint_name, version, self.image_uri, artifact_key(version)),
                execution_role_arn=self.execution_role.role_arn,
                enable_network_isolation=True,
                vpc_config=vpc_config,
                primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                    image=self.image_uri,
                    model_data_url=artifact,
                    environment={
                        "SAGEMAKER_PROGRAM": "inference.py",
                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                        MODEL_VERSION_ENV: version,
                    },
                ),
                tags=[cdk.CfnTag(key="ModelVersion", value=version)],
            )
            # the role's policy must exist before SageMaker checks it can read the artifact
            model.node.add_dependency(self.execution_role)
            models[variant.name] = model

        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            # endpoint configs are immutable: a changed configuration gets a new name
            endpoint_config_name=_name(
                self.endpoint_name,
                "config",
                inference.model_dump_json(),
                *(m.model_name or "" for m in models.values()),
            ),
            kms_key_id=data_key.key_arn,
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name=variant.name,
                    model_name=models[variant.name].attr_model_name,
                    initial_variant_weight=variant.weight,
                    initial_instance_count=variant.initial_instance_count,
                    instance_type=variant.instance_type,
                )
                for variant in inference.variants
            ],
            data_capture_config=sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True,
                initial_sampling_percentage=inference.data_capture_percent,
                destination_s3_uri=f"s3://{data_bucket.bucket_name}/{config.data.data_capture_prefix}/{self.endpoint_name}",
                kms_key_id=data_key.key_arn,
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
                capture_content_type_header=sagemaker.CfnEndpointConfig.CaptureContentTypeHeaderProperty(
                    json_content_types=["application/json"], csv_content_types=["text/csv"]
                ),
            ),
        )

        self.alarms = self._variant_alarms(config)
        for alarm in self.alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))
            alarm.add_ok_action(cloudwatch_actions.SnsAction(alarm_topic))
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=self.endpoint_name,
            endpoint_config_name=self.endpoint_config.attr_endpoint_config_name,
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=self._blue_green(config),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[
                        sagemaker.CfnEndpoint.AlarmProperty(alarm_name=alarm.alarm_name)
                        for alarm in self.alarms
                    ]
                ),
            ),
        )
        self.endpoint_arn = stack.format_arn(
            service="sagemaker", resource="endpoint", resource_name=self.endpoint_name.lower()
        )
        self._autoscaling(config)

    # ----- IAM -----
    def _grant_execution(  # noqa: PLR0917 (private helper, called once)
        self,
        config: EnvironmentConfig,
        stack: cdk.Stack,
        model_bucket: s3.IBucket,
        data_bucket: s3.IBucket,
        data_key: kms.IKey,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
    ) -> None:
        role = self.execution_role
        # model artifacts (any registered version: mlpipe deploys new versions with this role)
        model_bucket.grant_read(role, "models/*")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObjectVersion"], resources=[model_bucket.arn_for_objects("models/*")]
            )
        )
        data_bucket.grant_put(role, f"{config.data.data_capture_prefix}/{self.endpoint_name}/*")
        data_key.grant_encrypt_decrypt(role)
        # the AWS-published image, from its registry in this region only
        registry = SKLEARN_IMAGE_REGISTRIES[config.region]
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                resources=[
                    stack.format_arn(
                        service="ecr",
                        account=registry,
                        resource="repository",
                        resource_name="sagemaker-scikit-learn",
                    )
                ],
            )
        )
        log_group = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"/aws/sagemaker/Endpoints/{self.endpoint_name}",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group, f"{log_group}:log-stream:*"],
            )
        )
        # account-level or without resource-level permissions: scoped by condition where possible
        # the registry token is account-level: no resource-level permissions (Resource "*")
        role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        # PutMetricData has no resource-level permissions: Resource "*", limited by namespace
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "AWS/SageMaker"]}},
            )
        )
        # SageMaker places the endpoint's network interfaces in the VPC: created at run time (ids
        # unknown), but only in this account/region and the given subnets and security group
        allow_vpc_interfaces(
            role,
            vpc=vpc,
            security_groups=[security_group],
            manage=[
                "ec2:CreateNetworkInterface",
                "ec2:CreateNetworkInterfacePermission",
                "ec2:DeleteNetworkInterface",
                "ec2:DeleteNetworkInterfacePermission",
            ],
            describe=[
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeVpcs",
                "ec2:DescribeDhcpOptions",
                "ec2:DescribeSubnets",
                "ec2:DescribeSecurityGroups",
            ],
        )
        capture = config.data.data_capture_prefix
        acknowledge_wildcards(
            role,
            {
                "Resource::arn:*:s3:::*/models/*": "Artifacts of any registered version: mlpipe deploys "
                "versions "
                "registered after this stack, with this role; read-only.",
                f"Resource::arn:*:s3:::*/{capture}/{self.endpoint_name}/*": "Data capture files "
                "SageMaker writes under this endpoint's prefix, named by date and hour at run time.",
                "Resource::arn:*:ec2:*:network-interface/*": "Network interfaces SageMaker creates in the "
                "VPC at "
                "run time (ids unknown); the statement also names the subnets and the security group.",
                "Resource::*:log-stream:*": "Log streams SageMaker names per instance at run time, in this "
                "endpoint's own log group only.",
                "Resource::*": "ecr:GetAuthorizationToken, cloudwatch:PutMetricData (namespace limited by a "
                "condition) and the EC2 network-interface calls SageMaker makes in the VPC (Describe* and "
                "interfaces created at run time; region limited by a condition) support no resource-level "
                "permissions.",
                "Action::s3:*": "Action families of CDK's S3 grants (GetObject*, GetBucket*, List*, Abort*), "
                "each "
                "in a statement limited to one bucket and key prefix.",
                "Action::kms:*": "Action families of CDK's KMS grants (GenerateDataKey*, ReEncrypt*), "
                "limited to "
                "the data key's ARN.",
            },
        )

    # ----- alarms and guardrails -----
    def _variant_alarms(self, config: EnvironmentConfig) -> list[cloudwatch.Alarm]:
        inference = config.inference
        alarms: list[cloudwatch.Alarm] = []
        for variant in inference.variants:
            dimensions = {"EndpointName": self.endpoint_name, "VariantName": variant.name}
            errors = cloudwatch.Alarm(
                self,
                f"{variant.name}Errors",
                alarm_name=config.guardrail_alarm_names(variant.name)[0],
                alarm_description=f"{variant.name}: model container 5XX errors; rolls a deployment back",
                metric=cloudwatch.Metric(
                    namespace="AWS/SageMaker",
                    metric_name="Invocation5XXErrors",
                    dimensions_map=dimensions,
                    statistic="Sum",
                    period=cdk.Duration.minutes(1),
                ),
                threshold=inference.variant_5xx_errors_per_minute,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=2,
                datapoints_to_alarm=2,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            latency = cloudwatch.Alarm(
                self,
                f"{variant.name}Latency",
                alarm_name=config.guardrail_alarm_names(variant.name)[1],
                alarm_description=(
                    f"{variant.name}: model latency p99 above {inference.variant_model_latency_p99_ms} ms; "
                    "rolls a deployment back"
                ),
                # SageMaker reports ModelLatency in microseconds
                metric=cloudwatch.Metric(
                    namespace="AWS/SageMaker",
                    metric_name="ModelLatency",
                    dimensions_map=dimensions,
                    statistic="p99",
                    period=cdk.Duration.minutes(1),
                ),
                threshold=inference.variant_model_latency_p99_ms * 1000,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=3,
                datapoints_to_alarm=3,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarms += [errors, latency]
        return alarms

    def _blue_green(self, config: EnvironmentConfig) -> sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty:
        inference = config.inference
        canary = inference.canary_instances
        if canary is not None:
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="CANARY",
                canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(type="INSTANCE_COUNT", value=canary),
                wait_interval_in_seconds=inference.canary_wait_seconds,
            )
        else:
            # one instance per variant: no canary is possible, so shift at once and bake (the
            # old fleet stays up for the baking period, ready for an alarm-triggered rollback)
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="ALL_AT_ONCE", wait_interval_in_seconds=inference.baking_seconds
            )
        return sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
            traffic_routing_configuration=routing,
            termination_wait_in_seconds=inference.baking_seconds if canary is not None else 0,
            maximum_execution_timeout_in_seconds=inference.max_deployment_seconds,
        )

    # ----- autoscaling -----
    def _autoscaling(self, config: EnvironmentConfig) -> None:
        inference = config.inference
        self.scalable_targets: dict[str, appscaling.ScalableTarget] = {}
        for variant in inference.variants:
            target = appscaling.ScalableTarget(
                self,
                f"{variant.name}Scaling",
                service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
                resource_id=f"endpoint/{self.endpoint_name}/variant/{variant.name}",
                scalable_dimension="sagemaker:variant:DesiredInstanceCount",
                min_capacity=inference.min_capacity(variant.name),
                max_capacity=inference.autoscaling_max_capacity,
            )
            target.node.add_dependency(self.endpoint)
            target.scale_to_track_metric(
                "InvocationsPerInstance",
                target_value=inference.autoscaling_target_invocations_per_instance,
                predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
                scale_in_cooldown=cdk.Duration.seconds(inference.scale_in_cooldown_seconds),
                scale_out_cooldown=cdk.Duration.seconds(inference.scale_out_cooldown_seconds),
            )
            self.scalable_targets[variant.name] = target
