"""The REST API in front of the prediction function.

Routes (Lambda proxy integration, one function): ``POST /predict`` (``?variant=`` targets a
variant), ``POST /predict/stream`` (202), ``GET /predictions/{predictionId}``, ``POST /feedback``.

- **Auth**: an API key per client with a usage plan (throttle and daily quota from config). The
  callers are server-side systems of the owning team, not end users, so a key with per-client
  throttling and quota is the control that matters; IAM (SigV4) auth is the upgrade path when
  callers run in AWS accounts of their own.
- **Validation**: the body of ``POST /feedback`` is validated against its own small schema, and
  the body of ``POST /predict`` and ``/predict/stream`` against the model's request schema
  (``request-schema.json``, the draft-04 schema ``nox -s train`` writes for the served feature
  set), for every content type, before the function runs; the function validates again against
  the champion's own schema (ranges per version) and answers 4xx for what passes the gateway.
- **No stage cache**: API Gateway keys a cache entry on request parameters only, never on the
  body, and a body does not fit the documented header budget (``api-gateway-limits.md``). The
  function caches ``POST /predict`` answers itself, keyed on the validated rows
  (``shared.answer_cache``), so every request is either answered from an entry of exactly its
  rows or computed; no method is cached here (API Gateway would cache ``GET`` by default).
- **Logs and tracing**: JSON access logs to a KMS-encrypted log group, execution logging at
  INFO (no request/response data), X-Ray tracing, detailed metrics.
- **WAF** (production): a regional web ACL with AWS managed rule groups and a per-IP rate rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge
from shared.infra.logs import EncryptedLogGroup

REQUEST_SCHEMA = Path(__file__).with_name("request-schema.json")
VARIANT_PARAMETER = "method.request.querystring.variant"
REQUEST_MODEL_NAME = "PredictionRequest"
FEEDBACK_MODEL_NAME = "FeedbackRequest"
FEEDBACK_SCHEMA = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": FEEDBACK_MODEL_NAME,
    "description": "The observed outcome of a stored prediction",
    "type": "object",
    "properties": {
        "predictionId": {"type": "string", "minLength": 1, "maxLength": 64},
        "label": {"type": "integer", "enum": [0, 1]},
    },
    "required": ["predictionId", "label"],
    "additionalProperties": False,
}

ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "ip": "$context.identity.sourceIp",
    "apiKeyId": "$context.identity.apiKeyId",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integration.latency",
    "integrationStatus": "$context.integration.status",
    "xrayTraceId": "$context.xrayTraceId",
    "wafResponseCode": "$context.wafResponseCode",
    "error": "$context.error.message",
}


def request_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(REQUEST_SCHEMA.read_text())
    return schema


class PredictionApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        function: lambda_.IFunction,
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        api_config = config.inference.api
        self.access_logs = EncryptedLogGroup(
            self,
            "AccessLogs",
            config=config,
            log_group_name=f"{config.log_group_prefix}/apigateway/access",
            key=log_key,
        ).log_group
        self.stage_name = api_config.stage_name
        self.rest_api = apigateway.RestApi(
            self,
            "Api",
            rest_api_name=config.resource_name("api"),
            description=f"ml-pipeline {config.name}: predictions (sync and stream), read-back, feedback",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            api_key_source_type=apigateway.ApiKeySourceType.HEADER,
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.RETAIN,
            deploy=True,
            retain_deployments=False,
            deploy_options=apigateway.StageOptions(
                stage_name=self.stage_name,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigateway.MethodLoggingLevel.INFO,
                data_trace_enabled=False,  # request bodies are customer data: never in execution logs
                access_log_destination=apigateway.LogGroupLogDestination(self.access_logs),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                throttling_rate_limit=api_config.throttle_rate_limit,
                throttling_burst_limit=api_config.throttle_burst_limit,
                # no cache cluster, and no method cached (the function caches answers)
                cache_cluster_enabled=False,
                caching_enabled=False,
            ),
        )
        acknowledge(
            self.rest_api.node.find_child("CloudWatchRole"),
            nag=[
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]"
            ],
            reason="API Gateway's account-level CloudWatch role uses the AWS managed policy "
            "AmazonAPIGatewayPushToCloudWatchLogs, the documented policy for execution and access logging.",
        )

        model = apigateway.CfnModel(
            self,
            "RequestModel",
            rest_api_id=self.rest_api.rest_api_id,
            name=REQUEST_MODEL_NAME,
            content_type="application/json",
            description="Prediction request: 1..100 rows of the model's features (draft-04 JSON Schema)",
            schema=request_schema(),
        )
        feedback_model = apigateway.CfnModel(
            self,
            "FeedbackModel",
            rest_api_id=self.rest_api.rest_api_id,
            name=FEEDBACK_MODEL_NAME,
            content_type="application/json",
            description="Feedback: a prediction id and the observed label (draft-04 JSON Schema)",
            schema=FEEDBACK_SCHEMA,
        )
        request_model = apigateway.Model.from_model_name(self, "RequestModelRef", REQUEST_MODEL_NAME)
        feedback_request = apigateway.Model.from_model_name(self, "FeedbackModelRef", FEEDBACK_MODEL_NAME)
        # API Gateway validates a body against the model of the request's Content-Type; $default
        # covers any other type, so no Content-Type skips the gateway's validation
        prediction_models = {"application/json": request_model, "$default": request_model}
        body_validator = self.rest_api.add_request_validator(
            "BodyValidator", validate_request_body=True, validate_request_parameters=True
        )
        parameter_validator = self.rest_api.add_request_validator(
            "ParameterValidator", validate_request_body=False, validate_request_parameters=True
        )

        def integration(**kwargs: Any) -> apigateway.LambdaIntegration:
            return apigateway.LambdaIntegration(function, proxy=True, allow_test_invoke=False, **kwargs)

        predict = self.rest_api.root.add_resource("predict")
        self.predict_method = predict.add_method(
            "POST",
            integration(),
            api_key_required=True,
            request_parameters={VARIANT_PARAMETER: False},
            request_models=prediction_models,
            request_validator=body_validator,
        )
        stream = predict.add_resource("stream").add_method(
            "POST",
            integration(),
            api_key_required=True,
            request_models=prediction_models,
            request_validator=body_validator,
        )
        read_back = (
            self.rest_api.root.add_resource("predictions")
            .add_resource("{predictionId}")
            .add_method(
                "GET",
                integration(),
                api_key_required=True,
                request_parameters={"method.request.path.predictionId": True},
                request_validator=parameter_validator,
            )
        )
        feedback = self.rest_api.root.add_resource("feedback").add_method(
            "POST",
            integration(),
            api_key_required=True,
            request_models={"application/json": feedback_request, "$default": feedback_request},
            request_validator=body_validator,
        )
        self.methods = [self.predict_method, stream, read_back, feedback]
        for method in (self.predict_method, stream):
            method.node.add_dependency(model)
        feedback.node.add_dependency(feedback_model)
        for method in self.methods:
            acknowledge(
                method,
                nag=["AwsSolutions-APIG4", "AwsSolutions-COG4"],
                reason="Callers are the owning team's server-side systems: each gets an API key with a usage "
                "plan (throttle and daily quota), required on every method. No end users sign in, so there "
                "is no Cognito user pool; IAM auth is the documented upgrade path.",
            )

        # API Gateway may invoke the function for this API's methods, from this account only
        # (CDK's permissions carry the SourceArn; the SourceAccount is added here)
        for permission in self.node.find_all():
            if isinstance(permission, lambda_.CfnPermission):
                permission.source_account = cdk.Stack.of(self).account

        self.api_key = self.rest_api.add_api_key(
            "ClientKey",
            api_key_name=config.resource_name("api-client"),
            description="Key of the first API client; add one key per client to the usage plan",
        )
        plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            name=config.resource_name("api-plan"),
            description="Per-key throttle and daily quota for prediction clients",
            throttle=apigateway.ThrottleSettings(
                rate_limit=api_config.throttle_rate_limit, burst_limit=api_config.throttle_burst_limit
            ),
            quota=apigateway.QuotaSettings(limit=api_config.quota_per_day, period=apigateway.Period.DAY),
            api_stages=[
                apigateway.UsagePlanPerApiStage(api=self.rest_api, stage=self.rest_api.deployment_stage)
            ],
        )
        plan.add_api_key(self.api_key)

        stage = self.rest_api.deployment_stage
        if api_config.waf_enabled:
            self.web_acl: wafv2.CfnWebACL | None = self._web_acl(config)
            wafv2.CfnWebACLAssociation(
                self, "WebAclAssociation", resource_arn=stage.stage_arn, web_acl_arn=self.web_acl.attr_arn
            )
        else:
            self.web_acl = None
            acknowledge(
                stage,
                nag=["AwsSolutions-APIG3"],
                reason=f"No WAF web ACL in the non-production environment {config.name!r} (cost); production "
                "associates a web ACL with AWS managed rules and a rate rule, and is not acknowledged.",
            )

    def _web_acl(self, config: EnvironmentConfig) -> wafv2.CfnWebACL:
        def managed(name: str, priority: int) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS", name=name
                    )
                ),
                visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                    cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
                ),
            )

        rate_limit = wafv2.CfnWebACL.RuleProperty(
            name="RateLimitPerIp",
            priority=0,
            action=wafv2.CfnWebACL.RuleActionProperty(block={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=config.inference.api.waf_rate_limit_per_ip, aggregate_key_type="IP"
                )
            ),
            visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name="RateLimitPerIp", sampled_requests_enabled=True
            ),
        )
        return wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=config.resource_name("api-waf"),
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True,
                metric_name=config.resource_name("api-waf"),
                sampled_requests_enabled=True,
            ),
            rules=[
                rate_limit,
                managed("AWSManagedRulesCommonRuleSet", 1),
                managed("AWSManagedRulesKnownBadInputsRuleSet", 2),
                managed("AWSManagedRulesAmazonIpReputationList", 3),
            ],
        )
