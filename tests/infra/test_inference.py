"""Template assertions for the inference layer (every environment)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlpipe.lifecycle import MODEL_VERSION_ENV
from shared import answer_cache
from shared.config import ENVIRONMENTS, sklearn_image_uri
from shared.outputs import InferenceOutputs
from stacks.inference.api import VARIANT_PARAMETER, request_schema
from stacks.inference.endpoint import MODEL_VERSION_ENV as STACK_MODEL_VERSION_ENV
from stacks.inference.stack import HANDLERS
from tests.infra.conftest import resources_of

ENVS = sorted(ENVIRONMENTS)


def _one(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    (resource,) = resources_of(template, resource_type).values()
    properties: dict[str, Any] = resource["Properties"]
    return properties


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (logical_id, statement)
        for logical_id, policy in resources_of(template, "AWS::IAM::Policy").items()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


@pytest.mark.parametrize("env", ENVS)
def test_endpoint_config_has_both_variants_with_weights_capture_and_key(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, "inference")
    endpoint_config = _one(template, "AWS::SageMaker::EndpointConfig")
    variants = {v["VariantName"]: v for v in endpoint_config["ProductionVariants"]}
    assert sorted(variants) == ["ModelA", "ModelB"]
    for variant in config.inference.variants:
        assert variants[variant.name]["InitialVariantWeight"] == variant.weight
        assert variants[variant.name]["InitialInstanceCount"] == variant.initial_instance_count
        assert variants[variant.name]["InstanceType"] == variant.instance_type
    assert [variants[n]["InitialVariantWeight"] for n in ("ModelA", "ModelB")] == [0.8, 0.2]
    capture = endpoint_config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == config.inference.data_capture_percent
    assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    assert f"{config.data.data_capture_prefix}/{config.resource_name('endpoint')}" in json.dumps(
        capture["DestinationS3Uri"]
    )
    assert "KmsKeyId" in capture
    assert "KmsKeyId" in endpoint_config


@pytest.mark.parametrize("env", ENVS)
def test_models_serve_the_initial_versions_from_the_published_image_isolated_in_the_vpc(env, template_json):
    config = ENVIRONMENTS[env]
    models = resources_of(template_json(env, "inference"), "AWS::SageMaker::Model")
    served = {}
    for model in models.values():
        props = model["Properties"]
        container = props["PrimaryContainer"]
        assert container["Image"] == sklearn_image_uri(config.region)
        assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
        assert props["EnableNetworkIsolation"] is True
        assert props["VpcConfig"]["Subnets"]
        assert props["VpcConfig"]["SecurityGroupIds"]
        assert props["ModelName"].startswith(f"{config.resource_name('endpoint')}-")
        version = container["Environment"][STACK_MODEL_VERSION_ENV]
        assert (
            container["ModelDataUrl"] == f"s3://{config.bucket_name('models')}/models/{version}/model.tar.gz"
        )
        served[version] = props
    assert sorted(served) == sorted({config.initial_version("ModelA"), config.initial_version("ModelB")})
    # the deploy function copies this container shape; the version variable is the one it sets
    assert STACK_MODEL_VERSION_ENV == MODEL_VERSION_ENV


@pytest.mark.parametrize("env", ENVS)
def test_guardrails_blue_green_with_rollback_on_every_variant_alarm(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, "inference")
    endpoint = _one(template, "AWS::SageMaker::Endpoint")
    assert endpoint["EndpointName"] == config.resource_name("endpoint")
    deployment = endpoint["DeploymentConfig"]
    policy = deployment["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    counts = [v.initial_instance_count for v in config.inference.variants]
    if min(counts) >= 2:
        assert routing["Type"] == "CANARY"
        # a canary of one instance is at most half of every variant's fleet
        assert routing["CanarySize"] == {"Type": "INSTANCE_COUNT", "Value": 1}
        assert all(routing["CanarySize"]["Value"] * 2 <= count for count in counts)
    else:
        assert routing["Type"] == "ALL_AT_ONCE"
        assert routing["WaitIntervalInSeconds"] == config.inference.baking_seconds
    assert policy["MaximumExecutionTimeoutInSeconds"] == config.inference.max_deployment_seconds
    alarm_resources = resources_of(template, "AWS::CloudWatch::Alarm")
    # the endpoint refers to its alarms (so they exist before it, and are the ones defined here)
    rollback_alarms = {a["AlarmName"]["Ref"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]}
    assert rollback_alarms == set(alarm_resources)
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in alarm_resources.values()}
    per_variant: dict[str, set[str]] = {}
    for alarm in alarms.values():
        assert alarm["Namespace"] == "AWS/SageMaker"
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        assert dimensions["EndpointName"] == config.resource_name("endpoint")
        per_variant.setdefault(dimensions["VariantName"], set()).add(alarm["MetricName"])
        assert alarm["AlarmActions"]
        assert alarm["TreatMissingData"] == "notBreaching"
    assert per_variant == {
        "ModelA": {"Invocation5XXErrors", "ModelLatency"},
        "ModelB": {"Invocation5XXErrors", "ModelLatency"},
    }
    latency = [a for a in alarms.values() if a["MetricName"] == "ModelLatency"]
    assert {a["Threshold"] for a in latency} == {config.inference.variant_model_latency_p99_ms * 1000}
    assert {a["ExtendedStatistic"] for a in latency} == {"p99"}


@pytest.mark.parametrize("env", ENVS)
def test_each_variant_scales_on_invocations_per_instance(env, template_json):
    config = ENVIRONMENTS[env].inference
    template = template_json(env, "inference")
    targets = resources_of(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    by_resource = {t["Properties"]["ResourceId"]: (logical_id, t) for logical_id, t in targets.items()}
    endpoint = ENVIRONMENTS[env].resource_name("endpoint")
    assert sorted(by_resource) == [
        f"endpoint/{endpoint}/variant/ModelA",
        f"endpoint/{endpoint}/variant/ModelB",
    ]
    policies = resources_of(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    for resource_id, (logical_id, target) in by_resource.items():
        props = target["Properties"]
        assert props["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
        variant = resource_id.rsplit("/", 1)[-1]
        assert (props["MinCapacity"], props["MaxCapacity"]) == (
            config.min_capacity(variant),
            config.autoscaling_max_capacity,
        )
        # a variant never scales in below the instances it starts with
        assert props["MinCapacity"] <= config.variant(variant).initial_instance_count
        (policy,) = [
            p for p in policies.values() if p["Properties"]["ScalingTargetId"] == {"Ref": logical_id}
        ]
        tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == (
            "SageMakerVariantInvocationsPerInstance"
        )
        assert tracking["TargetValue"] == config.autoscaling_target_invocations_per_instance
        assert tracking["ScaleInCooldown"] == 300
        assert tracking["ScaleOutCooldown"] == 60


@pytest.mark.parametrize("env", ENVS)
def test_no_stage_cache_and_the_variant_is_an_optional_parameter(env, template_json):
    template = template_json(env, "inference")
    stage = _one(template, "AWS::ApiGateway::Stage")
    assert stage.get("CacheClusterEnabled") is False
    assert stage["TracingEnabled"] is True
    assert "DestinationArn" in stage["AccessLogSetting"]
    assert json.loads(stage["AccessLogSetting"]["Format"])["requestId"] == "$context.requestId"
    settings = {(s["ResourcePath"], s["HttpMethod"]): s for s in stage["MethodSettings"]}
    assert set(settings) == {("/*", "*")}
    everything = settings[("/*", "*")]
    assert everything["CachingEnabled"] is False
    assert everything["LoggingLevel"] == "INFO"
    assert everything["DataTraceEnabled"] is False
    methods = [m["Properties"] for m in resources_of(template, "AWS::ApiGateway::Method").values()]
    assert not [m for m in methods if m["Integration"].get("CacheKeyParameters")]
    (predict,) = [m for m in methods if m.get("RequestParameters", {}).get(VARIANT_PARAMETER) is not None]
    assert predict["HttpMethod"] == "POST"
    assert predict["RequestParameters"] == {VARIANT_PARAMETER: False}
    assert "RequestParameters" not in predict["Integration"]


def _function(template: dict[str, Any], handler: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (lid, r["Properties"])
        for lid, r in resources_of(template, "AWS::Lambda::Function").items()
        if r["Properties"].get("Handler") == handler
    ]
    return found


def _role_statements(template: dict[str, Any], function: dict[str, Any]) -> list[dict[str, Any]]:
    role = function["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in resources_of(template, "AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _on_table(statement: dict[str, Any], table: str) -> bool:
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return {"Fn::GetAtt": [table, "Arn"]} in resources


@pytest.mark.parametrize("env", ENVS)
def test_answer_cache_read_and_written_by_the_api_invalidated_by_the_deploy_function(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, "inference")
    tables = resources_of(template, "AWS::DynamoDB::Table")
    (table_id,) = tables
    table = tables[table_id]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": answer_cache.KEY_ATTRIBUTE, "KeyType": "HASH"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": answer_cache.TTL_ATTRIBUTE, "Enabled": True}
    assert table["SSESpecification"]["SSEType"] == "KMS"
    assert "KMSMasterKeyId" in table["SSESpecification"]

    _, api = _function(template, HANDLERS["api"])
    environment = api["Environment"]["Variables"]
    assert environment[answer_cache.TABLE_ENVIRONMENT] == {"Ref": table_id}
    assert environment[answer_cache.TTL_ENVIRONMENT] == str(config.inference.api.cache_ttl_seconds)
    on_table = [s for s in _role_statements(template, api) if _on_table(s, table_id)]
    assert sorted(a for s in on_table for a in _actions(s)) == ["dynamodb:BatchGetItem", "dynamodb:PutItem"]

    _, deploy = _function(template, HANDLERS["deploy"])
    assert deploy["Environment"]["Variables"][answer_cache.TABLE_ENVIRONMENT] == {"Ref": table_id}
    assert "REST_API_ID" not in deploy["Environment"]["Variables"]
    statements = _role_statements(template, deploy)
    (invalidate,) = [s for s in statements if _on_table(s, table_id)]
    assert _actions(invalidate) == ["dynamodb:PutItem"]
    leading_keys = invalidate["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]
    assert leading_keys == [answer_cache.GENERATION_KEY]
    assert not [s for s in statements if any(a.startswith("apigateway:") for a in _actions(s))]

    outputs = template["Outputs"]
    assert outputs[InferenceOutputs.ANSWER_CACHE_TABLE]["Value"] == {"Ref": table_id}


@pytest.mark.parametrize("env", ENVS)
def test_every_method_needs_an_api_key_and_bodies_are_validated_against_the_model_schema(env, template_json):
    api = ENVIRONMENTS[env].inference.api
    template = template_json(env, "inference")
    methods = [m["Properties"] for m in resources_of(template, "AWS::ApiGateway::Method").values()]
    assert len(methods) == 4
    assert all(m["ApiKeyRequired"] is True and "RequestValidatorId" in m for m in methods)
    models = {
        m["Properties"]["Name"]: m["Properties"]
        for m in resources_of(template, "AWS::ApiGateway::Model").values()
    }
    assert models["PredictionRequest"]["Schema"] == request_schema()
    assert models["FeedbackRequest"]["Schema"]["required"] == ["predictionId", "label"]
    with_model = [m for m in methods if m.get("RequestModels")]
    assert len(with_model) == 3  # POST /predict, /predict/stream and /feedback
    for method in with_model:
        # every content type is validated: a body sent as text/plain does not skip the gateway
        assert set(method["RequestModels"]) == {"application/json", "$default"}
    validators = resources_of(template, "AWS::ApiGateway::RequestValidator")
    assert any(v["Properties"]["ValidateRequestBody"] for v in validators.values())
    plan = _one(template, "AWS::ApiGateway::UsagePlan")
    assert plan["Throttle"] == {"RateLimit": api.throttle_rate_limit, "BurstLimit": api.throttle_burst_limit}
    assert plan["Quota"] == {"Limit": api.quota_per_day, "Period": "DAY"}
    assert resources_of(template, "AWS::ApiGateway::UsagePlanKey")
    for permission in resources_of(template, "AWS::Lambda::Permission").values():
        if permission["Properties"]["Principal"] == "apigateway.amazonaws.com":
            assert permission["Properties"]["SourceAccount"] == ENVIRONMENTS[env].account


@pytest.mark.parametrize("env", ENVS)
def test_waf_protects_the_stage_in_production_only(env, template_json):
    template = template_json(env, "inference")
    acls = resources_of(template, "AWS::WAFv2::WebACL")
    associations = resources_of(template, "AWS::WAFv2::WebACLAssociation")
    if ENVIRONMENTS[env].inference.api.waf_enabled:
        (acl,) = acls.values()
        rules = {r["Name"] for r in acl["Properties"]["Rules"]}
        assert {
            "AWSManagedRulesCommonRuleSet",
            "AWSManagedRulesKnownBadInputsRuleSet",
            "RateLimitPerIp",
        } <= rules
        assert len(associations) == 1
    else:
        assert not acls
        assert not associations
    assert ENVIRONMENTS["prod"].inference.api.waf_enabled


@pytest.mark.parametrize("env", ENVS)
def test_stream_mapping_reports_partial_failures_bisects_retries_and_parks_failures(env, template_json):
    stream_config = ENVIRONMENTS[env].inference.stream
    template = template_json(env, "inference")
    stream = _one(template, "AWS::Kinesis::Stream")
    assert stream["StreamEncryption"]["EncryptionType"] == "KMS"
    assert stream["ShardCount"] == stream_config.shard_count
    mapping = _one(template, "AWS::Lambda::EventSourceMapping")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == stream_config.retry_attempts
    assert mapping["MaximumRecordAgeInSeconds"] == stream_config.max_record_age_seconds
    assert mapping["BatchSize"] == stream_config.batch_size
    (failures_id,) = [
        k
        for k, v in resources_of(template, "AWS::SQS::Queue").items()
        if "stream-failures" in v["Properties"]["QueueName"]
    ]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": [failures_id, "Arn"]}
    queue = template["Resources"][failures_id]["Properties"]
    assert "KmsMasterKeyId" in queue


@pytest.mark.parametrize("env", ENVS)
def test_functions_are_python_311_traced_sized_and_placed(env, template_json):
    config = ENVIRONMENTS[env]
    functions = {
        f["Properties"]["FunctionName"]: f["Properties"]
        for f in resources_of(template_json(env, "inference"), "AWS::Lambda::Function").values()
    }
    sizing = {
        config.resource_name("api"): (config.inference.api_function, True),
        config.resource_name("stream"): (config.inference.stream_function, True),
        config.resource_name("deploy"): (config.inference.deploy_function, False),
    }
    assert sorted(functions) == sorted(sizing)
    for name, (size, in_vpc) in sizing.items():
        props = functions[name]
        assert props["Runtime"] == "python3.11"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["MemorySize"] == size.memory_mb
        assert props["Timeout"] == size.timeout_seconds
        assert props["ReservedConcurrentExecutions"] == size.reserved_concurrency
        assert ("VpcConfig" in props) is in_vpc
        assert len(props["Layers"]) == 1
        assert props["LoggingConfig"]["LogFormat"] == "JSON"


@pytest.mark.parametrize("env", ENVS)
def test_invoke_endpoint_is_scoped_to_this_endpoint_and_nothing_gets_a_bare_wildcard(env, template_json):
    config = ENVIRONMENTS[env]
    endpoint_arn = (
        f"arn:aws:sagemaker:{config.region}:{config.account}:endpoint/{config.resource_name('endpoint')}"
    )
    invoking = [
        (p, s)
        for p, s in _statements(template_json(env, "inference"))
        if "sagemaker:InvokeEndpoint" in _actions(s)
    ]
    assert len(invoking) == 2  # the API and the stream consumer
    for _, statement in invoking:
        assert statement["Resource"] == endpoint_arn
    # Resource "*" only for actions without resource-level permissions
    no_resource_level = {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeVpcs",
        "ec2:DescribeDhcpOptions",
        "ecr:GetAuthorizationToken",
        "cloudwatch:PutMetricData",
        # the deploy function completes a training run's task token (no resource-level permissions)
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
    }
    for _, statement in _statements(template_json(env, "inference")):
        if statement["Resource"] == "*" and statement["Effect"] == "Allow":
            assert set(_actions(statement)) <= no_resource_level, statement


@pytest.mark.parametrize("env", ENVS)
def test_desired_state_changes_and_endpoint_changes_invoke_the_deploy_function(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, "inference")
    rules = {
        r["Properties"]["Name"]: r["Properties"] for r in resources_of(template, "AWS::Events::Rule").values()
    }
    desired = rules[config.resource_name("desired-state-changed")]["EventPattern"]
    assert desired["source"] == ["aws.ssm"]
    assert desired["detail-type"] == ["Parameter Store Change"]
    assert sorted(desired["detail"]["name"]) == sorted(
        [config.model_parameters.active_version, config.model_parameters.traffic]
    )
    endpoint = rules[config.resource_name("endpoint-state-changed")]["EventPattern"]
    assert endpoint["detail"] == {"EndpointName": [config.resource_name("endpoint")]}
    # the schedule that retires a standby kept after a promotion once its grace period is over
    standby = rules[config.resource_name("standby-check")]
    assert standby["ScheduleExpression"] == f"rate({config.lifecycle.standby_check_minutes} minutes)"
    assert set(rules) == {
        config.resource_name(name)
        for name in ("desired-state-changed", "endpoint-state-changed", "standby-check")
    }
    for rule in rules.values():
        (target,) = rule["Targets"]
        assert "DeadLetterConfig" in target
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 3


@pytest.mark.parametrize("env", ENVS)
def test_outputs_name_everything_mlpipe_and_the_local_stage_read(env, template_json):
    outputs = template_json(env, "inference")["Outputs"]
    expected = [v for k, v in vars(InferenceOutputs).items() if k.isupper()]
    # not counted: CDK's own export outputs and the RestApi construct's URL output (ApiUrl is ours)
    named = [k for k in outputs if not k.startswith(("ExportsOutput", "ApiEndpoint"))]
    assert sorted(named) == sorted(expected)
