"""Customer-managed KMS keys: rotation on, alias from the naming scheme, removal from config."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from constructs import Construct

from shared.config import EnvironmentConfig, RemovalPolicy
from shared.infra.removal import to_cdk


def customer_managed_key(
    scope: Construct, construct_id: str, *, config: EnvironmentConfig, purpose: str, description: str
) -> kms.Key:
    """A symmetric key with yearly automatic rotation, aliased ``alias/ml-pipeline-{purpose}-{env}-{region}``."""
    retained = config.data_removal_policy is RemovalPolicy.RETAIN
    return kms.Key(
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
