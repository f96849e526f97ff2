"""Dead-letter queues: where a service parks what it gave up on (one shape for every layer)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge
from shared.infra.removal import to_cdk


def dead_letter_queue(
    scope: Construct,
    construct_id: str,
    *,
    config: EnvironmentConfig,
    key: kms.IKey,
    name: str,
    retention_days: int,
    holds: str,
) -> sqs.Queue:
    """A KMS-encrypted, TLS-only queue that is a dead-letter queue itself.

    ``holds`` says what lands in it (it opens the acknowledgement's reason). No SQS queue may
    redrive into it; it has no dead-letter queue of its own, which both policy checks want.
    """
    queue = sqs.Queue(
        scope,
        construct_id,
        queue_name=config.resource_name(name),
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=cdk.Duration.days(retention_days),
        redrive_allow_policy=sqs.RedriveAllowPolicy(redrive_permission=sqs.RedrivePermission.DENY_ALL),
        removal_policy=to_cdk(config.data_removal_policy),
    )
    acknowledge(
        queue,
        nag=["AwsSolutions-SQS3"],
        guard=["sqs_dlq_check"],
        reason=f"{holds} This queue is itself a dead-letter queue: one of its own would only move the same "
        "undeliverable messages one hop further. No SQS queue may redrive into it (redrive permission "
        "denyAll, stricter than the rule's byQueue).",
    )
    return queue
