"""The tap: the predictions table's stream → the ``analytics-tap`` function → the delivery stream.

Every producer (API, stream consumer, batch job, feedback) writes the predictions table, so its
stream is the one place the history is fed from; no handler writes the history itself. The
event source mapping reports partial batch failures (only the failed record and those after it
in its shard are retried), bisects a failing batch to isolate a poison record, retries a
bounded number of times, skips records older than the maximum age, and sends what it gives up
on to an SQS queue (the shard and sequence numbers, for replay), as the Kinesis consumer's does.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.queues import dead_letter_queue


class HistoryTap(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        function: lambda_.IFunction,
        table: dynamodb.ITable,
        delivery_stream_arn: str,
        ops_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.analytics
        self.failures = dead_letter_queue(
            self,
            "Failures",
            config=config,
            key=ops_key,
            name="analytics-tap-failures",
            retention_days=settings.tap_failure_queue_retention_days,
            holds="The on-failure destination of the tap's event source mapping: shard and sequence "
            "pointers of predictions-table stream records that failed every retry, which operators "
            "replay by hand.",
        )
        function.add_event_source(
            event_sources.DynamoEventSource(
                table,
                starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                batch_size=settings.tap_batch_size,
                max_batching_window=cdk.Duration.seconds(settings.tap_max_batching_window_seconds),
                report_batch_item_failures=True,
                bisect_batch_on_error=True,
                retry_attempts=settings.tap_retry_attempts,
                max_record_age=cdk.Duration.seconds(settings.tap_max_record_age_seconds),
                on_failure=event_sources.SqsDlq(self.failures),
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["firehose:PutRecordBatch"],
                resources=[delivery_stream_arn],
            )
        )
