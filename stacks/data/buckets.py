"""The data layer's buckets and their lifecycle rules."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

# key prefixes other layers write to (shared with them); lifecycle rules are attached to them
from shared.analytics import ANALYTICS_PREFIX, ATHENA_RESULTS_PREFIX
from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge
from shared.infra.buckets import OBJECT_LOCK_REASON, abort_incomplete_uploads, secure_bucket
from shared.infra.removal import to_cdk


class DataBuckets(Construct):
    """``models`` (artifacts), ``data`` (batch input/output, data capture), ``results``
    (analytics Parquet, Athena results) and ``access-logs`` (server access logs of the others)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        d = config.data
        days = cdk.Duration.days
        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            bucket_name=config.bucket_name("access-logs"),
            versioned=True,
            # S3 server access logging delivers only to buckets with SSE-S3 (SSE-KMS targets are
            # not supported), so this is the one bucket without the customer-managed key.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=days(d.access_log_expiry_days),
                    noncurrent_version_expiration=days(7),
                ),
                abort_incomplete_uploads(),
            ],
            removal_policy=to_cdk(config.data_removal_policy),
        )
        acknowledge(
            self.access_log_bucket,
            nag=["AwsSolutions-S1"],
            guard=["s3_bucket_logging_enabled_check"],
            reason="This bucket is the server access log target; logging it into itself would loop and "
            "logging it elsewhere would need a second log bucket with the same question.",
        )
        acknowledge(
            self.access_log_bucket,
            guard=["s3_bucket_default_encryption_kms_check", "S3_BUCKET_KMS_ENCRYPTION"],
            reason="S3 server access logging delivers only to buckets encrypted with SSE-S3, not SSE-KMS "
            "(AWS S3 documentation), so this bucket uses S3-managed keys.",
        )
        acknowledge(
            self.access_log_bucket,
            guard=["s3_event_notifications_enabled_check"],
            reason="Access logs are read by people and Athena on demand; nothing acts on each delivery, "
            "and log delivery writes many objects an hour that would only create idle events.",
        )
        acknowledge(
            self.access_log_bucket, guard=["s3_bucket_object_lock_enabled_check"], reason=OBJECT_LOCK_REASON
        )

        def noncurrent_versions() -> s3.LifecycleRule:
            return s3.LifecycleRule(
                id="expire-noncurrent-versions",
                noncurrent_version_expiration=days(d.noncurrent_version_expiry_days),
                noncurrent_versions_to_retain=d.noncurrent_versions_to_retain,
            )

        def bucket(construct_id: str, *, purpose: str, lifecycle_rules: list[s3.LifecycleRule]) -> s3.Bucket:
            return secure_bucket(
                self,
                construct_id,
                config=config,
                purpose=purpose,
                key=key,
                access_log_bucket=self.access_log_bucket,
                lifecycle_rules=lifecycle_rules,
            )

        self.model_bucket = bucket(
            "ModelBucket",
            purpose="models",
            lifecycle_rules=[
                # Current model versions never expire: rollback needs them. Replaced artifacts
                # are kept long enough to audit and re-deploy an old version.
                s3.LifecycleRule(
                    id="expire-old-artifact-versions",
                    noncurrent_version_expiration=days(d.model_noncurrent_version_expiry_days),
                    noncurrent_versions_to_retain=d.noncurrent_versions_to_retain,
                ),
                abort_incomplete_uploads(),
            ],
        )
        self.data_bucket = bucket(
            "DataBucket",
            purpose="data",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-raw-input",
                    prefix=config.batch.input_prefix,
                    expiration=days(d.raw_input_expiry_days),
                ),
                s3.LifecycleRule(
                    id="expire-data-capture",
                    prefix=f"{d.data_capture_prefix}/",
                    expiration=days(d.raw_input_expiry_days),
                ),
                noncurrent_versions(),
                abort_incomplete_uploads(),
            ],
        )
        self.results_bucket = bucket(
            "ResultsBucket",
            purpose="results",
            lifecycle_rules=[
                # Analytics Parquet is queried at unpredictable intervals after its first month:
                # Intelligent-Tiering moves cold partitions down without retrieval fees.
                s3.LifecycleRule(
                    id="tier-analytics",
                    prefix=ANALYTICS_PREFIX,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                            transition_after=days(d.analytics_intelligent_tiering_after_days),
                        )
                    ],
                ),
                s3.LifecycleRule(
                    id="expire-athena-results", prefix=ATHENA_RESULTS_PREFIX, expiration=days(30)
                ),
                # batch results and run manifests (the inputs' manifests keep re-runs idempotent
                # for as long as the inputs themselves live, which is far shorter)
                s3.LifecycleRule(
                    id="expire-batch-output",
                    prefix=f"{config.batch.output_prefix}/",
                    expiration=days(d.batch_output_expiry_days),
                ),
                s3.LifecycleRule(
                    id="expire-batch-runs",
                    prefix=f"{config.batch.runs_prefix}/",
                    expiration=days(d.batch_output_expiry_days),
                ),
                noncurrent_versions(),
                abort_incomplete_uploads(),
            ],
        )
