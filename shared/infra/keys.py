"""Customer-managed KMS keys: rotation on, alias from the naming scheme, removal from config."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from shared.config import EnvironmentConfig, RemovalPolicy
from shared.infra.removal import to_cdk

# In a key policy the resource "*" means the key the policy is attached to, nothing else.
THIS_KEY = "*"


def customer_managed_key(
    scope: Construct, construct_id: str, *, config: EnvironmentConfig, purpose: str, description: str
) -> kms.Key:
    """A symmetric key, rotated yearly, aliased ``alias/ml-pipeline-{purpose}-{env}-{region}``."""
    retained = config.data_removal_policy is RemovalPolicy.RETAIN
    key = kms.Key(
        scope,
        construct_id,
        alias=f"alias/{config.resource_name(purpose)}",
        description=description,
        enable_key_rotation=True,
        rotation_period=cdk.Duration.days(365),
        # A deleted key makes everything it encrypted unreadable: the longest window in prod.
        pending_window=cdk.Duration.days(30 if retained else 7),
        removal_policy=to_cdk(config.data_removal_policy),
    )
    # Grants are how AWS services (DynamoDB, SageMaker, ...) use a key on a caller's behalf;
    # nobody else may create one (AWS Control Tower CT.KMS.PR.3).
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="DenyGrantsExceptForAwsServices",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["kms:CreateGrant"],
            resources=[THIS_KEY],
            conditions={
                "BoolIfExists": {"kms:GrantIsForAWSResource": "false", "aws:PrincipalIsAWSService": "false"}
            },
        )
    )
    return key
