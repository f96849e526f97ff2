"""The asynchronous path: a Kinesis stream of queued requests and its consumer's event source mapping.

``POST /predict/stream`` puts one record per request; the consumer predicts and stores it. The
mapping reports partial batch failures (only the failed record and what follows it in its shard
is retried), bisects a failing batch to isolate a poison record, retries a bounded number of
times, skips records older than the maximum age, and sends what it gives up on to an SQS queue
(the record's shard and sequence numbers, for replay with ``GetRecords``). Processing is
idempotent, so a retried batch never writes a prediction twice.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge
from shared.infra.queues import dead_letter_queue
from shared.infra.removal import to_cdk


class PredictionStream(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        data_key: kms.IKey,
        ops_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stream_config = config.inference.stream
        provisioned = stream_config.mode == "PROVISIONED"
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_name=config.resource_name("requests"),
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=data_key,  # records carry the request's features
            stream_mode=kinesis.StreamMode.PROVISIONED if provisioned else kinesis.StreamMode.ON_DEMAND,
            shard_count=stream_config.shard_count if provisioned else None,
            retention_period=cdk.Duration.hours(stream_config.retention_hours),
            removal_policy=to_cdk(config.data_removal_policy),
        )
        acknowledge(
            self.stream,
            nag=["AwsSolutions-KDS3"],
            reason="The stream is encrypted with the project's customer-managed data key (rotated yearly, "
            "key "
            "policy under the project's control, the same key as the table and buckets holding the same "
            "data) instead of the AWS managed aws/kinesis key.",
        )
        self.failures = dead_letter_queue(
            self,
            "Failures",
            config=config,
            key=ops_key,
            name="stream-failures",
            retention_days=stream_config.failure_queue_retention_days,
            holds="The on-failure destination of the stream's event source mapping: shard and sequence "
            "pointers of records that failed every retry, which operators replay by hand.",
        )

    def connect(self, consumer: lambda_.IFunction, config: EnvironmentConfig) -> None:
        """Attach ``consumer`` to the stream with the mapping settings from config."""
        stream_config = config.inference.stream
        consumer.add_event_source(
            event_sources.KinesisEventSource(
                self.stream,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=stream_config.batch_size,
                max_batching_window=cdk.Duration.seconds(stream_config.max_batching_window_seconds),
                report_batch_item_failures=True,
                bisect_batch_on_error=True,
                retry_attempts=stream_config.retry_attempts,
                max_record_age=cdk.Duration.seconds(stream_config.max_record_age_seconds),
                parallelization_factor=stream_config.parallelization_factor,
                on_failure=event_sources.SqsDlq(self.failures),
            )
        )
