"""The project's S3 bucket: versioned, KMS-encrypted, TLS-only, private, access-logged."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.removal import to_cdk


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
    return s3.Bucket(
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


def abort_incomplete_uploads() -> s3.LifecycleRule:
    return s3.LifecycleRule(id="abort-incomplete-multipart", abort_incomplete_multipart_upload_after=cdk.Duration.days(7))
