"""The data layer's customer-managed keys and their key policies.

``data_key`` encrypts data at rest: buckets, the predictions table, and (in later layers)
the Kinesis stream, SQS queues and SageMaker endpoint volumes and data capture. Those
services use the key *as the calling role* (S3, DynamoDB, Kinesis, SQS and SageMaker call
KMS with the caller's credentials, ``kms:ViaService``), so the key policy delegates to IAM
(the account root statement CDK writes) and each role gets a least-privilege grant on this
key's ARN from CDK (``key.grant_encrypt_decrypt(role)``); no service principal needs its own
statement, and none gets one.

``ops_key`` encrypts operational data: log groups, SNS alarm topics and dead-letter queues.
There the services act as themselves, so the key policy names them:
- CloudWatch Logs (``logs.{region}.amazonaws.com``), for the project's log groups only
  (encryption context ``aws:logs:arn`` matched against the project's log group names);
- CloudWatch (``cloudwatch.amazonaws.com``), which publishes alarm notifications to
  KMS-encrypted SNS topics;
- EventBridge (``events.amazonaws.com``), which delivers to encrypted SNS topics and SQS
  dead-letter queues.
Each is limited to this account with ``aws:SourceAccount``.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from shared.config import PROJECT, EnvironmentConfig
from shared.infra.keys import customer_managed_key
from shared.infra.logs import allow_cloudwatch_logs, log_group_arn


class DataKeys(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        self.data_key = customer_managed_key(
            self,
            "DataKey",
            config=config,
            purpose="data",
            description=f"ml-pipeline {config.name}: data at rest (S3, DynamoDB, Kinesis, SQS, SageMaker)",
        )
        self.ops_key = customer_managed_key(
            self,
            "OpsKey",
            config=config,
            purpose="ops",
            description=f"ml-pipeline {config.name}: log groups, alarm topics, dead-letter queues",
        )
        stack = cdk.Stack.of(self)

        # Log groups the later layers create: the project's own names, Lambda's and the
        # vended-log groups of Step Functions and API Gateway, all carrying the env name.
        allow_cloudwatch_logs(
            self.ops_key,
            [
                log_group_arn(stack, f"{config.log_group_prefix}/*"),
                log_group_arn(stack, f"/aws/lambda/{PROJECT}-*-{config.name}-{config.region}"),
                log_group_arn(stack, f"/aws/vendedlogs/*{PROJECT}-*-{config.name}-{config.region}*"),
                # Glue crawlers under a security configuration: /aws-glue/crawlers-role/{role}-{config}
                log_group_arn(stack, f"/aws-glue/crawlers-role/{PROJECT}-*-{config.name}-{config.region}-*"),
            ],
        )
        # CloudWatch alarms publishing to encrypted SNS topics; EventBridge delivering to
        # encrypted SNS topics and SQS dead-letter queues.
        for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):
            principal = iam.ServicePrincipal(service).with_conditions(
                {"StringEquals": {"aws:SourceAccount": config.account}}
            )
            self.ops_key.grant(principal, "kms:Decrypt", "kms:GenerateDataKey*")
