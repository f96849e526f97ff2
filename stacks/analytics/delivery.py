"""The delivery stream: history rows (JSON) in, Parquet under ``predictions/history/dt=…/`` out.

Direct PUT (the tap puts batches of rows), server-side encryption with the data key, Parquet
conversion against the Glue history table (its columns are the only schema), Snappy
compression, failed conversions and deliveries under an error prefix, and its own encrypted
log group for delivery errors.

L1 ``CfnDeliveryStream`` rather than the L2: the role below then holds exactly the statements
the stream needs (the bucket prefixes, the one table's schema, the one log group) and nothing
the L2 adds on its own.

Buffering (config ``analytics``): Parquet conversion requires a buffer of at least 64 MB. At
~100k records/day (~1.3 KB of JSON each, ~5 MB/hour) the 900 s interval always flushes first:
96 objects a day of ~0.2 MB of Parquet, few enough for Athena to open cheaply, and a prediction
is in the history within 15 minutes (plus the tap's batching window).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from shared.analytics import (
    HISTORY_ERROR_PREFIX,
    HISTORY_ERROR_PREFIX_EXPRESSION,
    HISTORY_PREFIX,
    HISTORY_PREFIX_EXPRESSION,
    HISTORY_TABLE,
    delivery_stream_name,
)
from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge_wildcards
from shared.infra.logs import EncryptedLogGroup

LOG_STREAM = "S3Delivery"


class HistoryDelivery(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        results_bucket: s3.IBucket,
        data_key: kms.IKey,
        ops_key: kms.IKey,
        database_name: str,
        table: glue.CfnTable,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        settings = config.analytics
        self.stream_name = delivery_stream_name(config)
        self.log_group = EncryptedLogGroup(
            self,
            "Logs",
            config=config,
            log_group_name=f"{config.log_group_prefix}/firehose/{self.stream_name}",
            key=ops_key,
        ).log_group
        logs.LogStream(self, "DeliveryLogStream", log_group=self.log_group, log_stream_name=LOG_STREAM)

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("firehose.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": config.account}}
            ),
            description=f"{self.stream_name}: writes the history prefixes, reads the history table's schema",
        )
        for prefix in (HISTORY_PREFIX, HISTORY_ERROR_PREFIX):
            results_bucket.grant_put(self.role, f"{prefix}*")
        # Firehose's documented S3 destination calls beside PutObject
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[results_bucket.bucket_arn],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:AbortMultipartUpload"],
                resources=[
                    results_bucket.arn_for_objects(f"{HISTORY_PREFIX}*"),
                    results_bucket.arn_for_objects(f"{HISTORY_ERROR_PREFIX}*"),
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"],
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    stack.format_arn(service="glue", resource="database", resource_name=database_name),
                    stack.format_arn(
                        service="glue", resource="table", resource_name=f"{database_name}/{HISTORY_TABLE}"
                    ),
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:PutLogEvents"],
                resources=[f"{self.log_group.log_group_arn}:log-stream:{LOG_STREAM}"],
            )
        )
        data_key.grant(self.role, "kms:GenerateDataKey", "kms:Decrypt")

        self.delivery_stream = firehose.CfnDeliveryStream(
            self,
            "Stream",
            delivery_stream_name=self.stream_name,
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="CUSTOMER_MANAGED_CMK", key_arn=data_key.key_arn
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=results_bucket.bucket_arn,
                role_arn=self.role.role_arn,
                prefix=HISTORY_PREFIX_EXPRESSION,
                error_output_prefix=HISTORY_ERROR_PREFIX_EXPRESSION,
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=settings.buffer_interval_seconds, size_in_m_bs=settings.buffer_size_mb
                ),
                # Parquet is compressed by its serializer (Snappy); the S3 setting must stay off
                compression_format="UNCOMPRESSED",
                encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                    kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                        awskms_key_arn=data_key.key_arn
                    )
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True, log_group_name=self.log_group.log_group_name, log_stream_name=LOG_STREAM
                ),
                data_format_conversion_configuration=firehose.CfnDeliveryStream.DataFormatConversionConfigurationProperty(
                    enabled=True,
                    input_format_configuration=firehose.CfnDeliveryStream.InputFormatConfigurationProperty(
                        deserializer=firehose.CfnDeliveryStream.DeserializerProperty(
                            open_x_json_ser_de=firehose.CfnDeliveryStream.OpenXJsonSerDeProperty(
                                case_insensitive=False
                            )
                        )
                    ),
                    output_format_configuration=firehose.CfnDeliveryStream.OutputFormatConfigurationProperty(
                        serializer=firehose.CfnDeliveryStream.SerializerProperty(
                            parquet_ser_de=firehose.CfnDeliveryStream.ParquetSerDeProperty(
                                compression="SNAPPY"
                            )
                        )
                    ),
                    schema_configuration=firehose.CfnDeliveryStream.SchemaConfigurationProperty(
                        catalog_id=stack.account,
                        database_name=database_name,
                        table_name=HISTORY_TABLE,
                        region=stack.region,
                        role_arn=self.role.role_arn,
                        version_id="LATEST",
                    ),
                ),
            ),
        )
        self.delivery_stream.node.add_dependency(table)
        # the role's policy must exist before Firehose validates its destination
        self.delivery_stream.node.add_dependency(self.role)
        self.delivery_stream_arn = self.delivery_stream.attr_arn
        acknowledge_wildcards(
            self.role,
            {
                f"Resource::arn:*:s3:::*/{HISTORY_PREFIX}*": "History objects Firehose names itself "
                "(dt=YYYY-MM-DD/…) under the history prefix.",
                f"Resource::arn:*:s3:::*/{HISTORY_ERROR_PREFIX}*": "Records that failed conversion or "
                "delivery, under the error prefix in objects Firehose names itself.",
                "Action::s3:*": "Action families of CDK's S3 put grant (Abort*), limited to the results "
                "bucket and the history and error prefixes.",
                "Action::kms:*": "Action families of CDK's KMS grants for the bucket's key "
                "(GenerateDataKey*, ReEncrypt*), limited to the data key ARN in the same statement.",
            },
        )
