"""KMS-encrypted log groups with retention: the only way the project creates a log group."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from shared.config import LOG_RETENTION_DAYS, RemovalPolicy
from shared.infra.removal import to_cdk

_RETENTION = dict(zip(LOG_RETENTION_DAYS, [m for m in logs.RetentionDays if m.name != "INFINITE"], strict=True))


def retention(days: int) -> logs.RetentionDays:
    try:
        return _RETENTION[days]
    except KeyError:
        raise ValueError(f"{days} is not a CloudWatch Logs retention period") from None


class EncryptedLogGroup(Construct):
    """A log group encrypted with ``key``; the key policy admits CloudWatch Logs for this group only."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_group_name: str,
        key: kms.IKey,
        retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        log_group_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=log_group_name,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        # A key of this stack gets a statement for this group alone. A key of another layer
        # (the data layer's ops key) already admits CloudWatch Logs for the project's log
        # group names, so no stack edits another stack's key policy.
        # CloudWatch Logs encrypts with the key on the log group's behalf; the encryption
        # context names the log group, so the grant covers this group and no other.
        logs_service = iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com").with_conditions(
            {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": log_group_arn}}
        )
        if cdk.Stack.of(key) is stack:
            key.grant(
                logs_service, "kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"
            )
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=log_group_name,
            encryption_key=key,
            retention=retention(retention_days),
            removal_policy=to_cdk(removal_policy),
        )
