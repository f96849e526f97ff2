"""KMS-encrypted log groups with retention: the only way the project creates a log group."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from shared.config import LOG_RETENTION_DAYS, EnvironmentConfig
from shared.infra.acknowledge import acknowledge
from shared.infra.removal import to_cdk

ONE_YEAR = 365  # AWS Control Tower CT.CLOUDWATCH.PR.2: keep logs at least a year

_RETENTION = dict(
    zip(LOG_RETENTION_DAYS, [m for m in logs.RetentionDays if m.name != "INFINITE"], strict=True)
)


def retention(days: int) -> logs.RetentionDays:
    try:
        return _RETENTION[days]
    except KeyError:
        raise ValueError(f"{days} is not a CloudWatch Logs retention period") from None


def log_group_arn(stack: cdk.Stack, name: str) -> str:
    """ARN of log group ``name`` (``*`` wildcards allowed) in ``stack``'s account and region."""
    return stack.format_arn(
        service="logs", resource="log-group", resource_name=name, arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME
    )


def allow_cloudwatch_logs(key: kms.IKey, log_group_arns: list[str]) -> None:
    """Let CloudWatch Logs use ``key`` for the given log groups and no others.

    CloudWatch Logs calls KMS as itself, on the log group's behalf; the encryption context
    ``aws:logs:arn`` names the log group, which the condition matches.
    """
    region = cdk.Stack.of(key).region
    logs_service = iam.ServicePrincipal(f"logs.{region}.amazonaws.com").with_conditions(
        {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_group_arns}}
    )
    key.grant(
        logs_service,
        "kms:Encrypt*",
        "kms:Decrypt*",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:Describe*",
    )


class EncryptedLogGroup(Construct):
    """A log group encrypted with ``key``; the key policy admits CloudWatch Logs for this group only."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        log_group_name: str,
        key: kms.IKey,
        retention_days: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        days = retention_days if retention_days is not None else config.log_retention_days
        stack = cdk.Stack.of(self)
        # A key of this stack gets a statement for this group alone. A key of another layer
        # (the data layer's ops key) already admits CloudWatch Logs for the project's log
        # group names, so no stack edits another stack's key policy.
        if cdk.Stack.of(key) is stack:
            allow_cloudwatch_logs(key, [log_group_arn(stack, log_group_name)])
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=log_group_name,
            encryption_key=key,
            retention=retention(days),
            removal_policy=to_cdk(config.log_removal_policy),
        )
        if days < ONE_YEAR:
            if config.is_production:
                raise ValueError(
                    f"{log_group_name}: production log groups keep logs at least {ONE_YEAR} days"
                )
            acknowledge(
                self.log_group,
                guard=["cloudwatch_log_group_retention_period_check"],
                reason=f"Non-production environment {config.name!r}: logs are kept {days} days to limit "
                f"cost; production keeps them at least {ONE_YEAR} days and is not acknowledged.",
            )
