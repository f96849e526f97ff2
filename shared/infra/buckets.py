"""The project's S3 bucket: versioned, KMS-encrypted, TLS-only, private, access-logged."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge
from shared.infra.removal import to_cdk

OBJECT_LOCK_REASON = (
    "Object Lock would stop lifecycle expiry and on-request deletion of locked versions, which "
    "the retention rules of this data require; versioning with retained noncurrent versions, the "
    "RETAIN removal policy in prod and KMS-encrypted TLS-only access protect against loss instead."
)


def secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    config: EnvironmentConfig,
    purpose: str,
    key: kms.IKey,
    access_log_bucket: s3.IBucket,
    lifecycle_rules: Sequence[s3.LifecycleRule],
) -> s3.Bucket:
    """A bucket named ``ml-pipeline-{purpose}-{env}-{region}-{account}``.

    SSE-KMS with an S3 Bucket Key (one KMS call per object prefix instead of per request);
    ``enforce_ssl`` writes the Deny-on-``aws:SecureTransport=false`` bucket policy and TLS 1.2
    as the minimum; ACLs are disabled (bucket owner enforced); server access logs go to the
    access log bucket under ``{purpose}/``.
    """
    bucket = s3.Bucket(
        scope,
        construct_id,
        bucket_name=config.bucket_name(purpose),
        versioned=True,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=access_log_bucket,
        server_access_logs_prefix=f"{purpose}/",
        lifecycle_rules=list(lifecycle_rules),
        removal_policy=to_cdk(config.data_removal_policy),
    )
    enable_eventbridge_notifications(bucket)
    acknowledge(
        bucket,
        guard=["s3_bucket_object_lock_enabled_check"],
        reason=OBJECT_LOCK_REASON,
    )
    return bucket


def enable_eventbridge_notifications(bucket: s3.Bucket) -> None:
    """Send the bucket's object events to EventBridge (batch runs start on object-created events).

    Set on the CloudFormation resource: the L2 ``event_bridge_enabled`` goes through a
    notification custom resource (a Lambda) that CloudFormation's own property makes unneeded.
    """
    cfn_bucket = bucket.node.default_child
    if not isinstance(cfn_bucket, s3.CfnBucket):
        raise TypeError(f"{bucket.node.path}: expected a CfnBucket as default child")
    cfn_bucket.add_property_override(
        "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
    )


def abort_incomplete_uploads() -> s3.LifecycleRule:
    return s3.LifecycleRule(
        id="abort-incomplete-multipart", abort_incomplete_multipart_upload_after=cdk.Duration.days(7)
    )
