"""The two alert topics: ``paging`` (wake someone) and ``notice`` (look during working hours).

Both are encrypted with the data layer's ops key, whose key policy admits CloudWatch (alarm
actions) and EventBridge (the Batch job-failure rule) with ``aws:SourceAccount``; subscriptions
come from config (``observability.subscriptions``).
"""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.config import AlertSubscription, EnvironmentConfig


def _subscription(scope: Construct, index: int, wanted: AlertSubscription) -> sns.ITopicSubscription:
    if wanted.protocol == "email":
        return subscriptions.EmailSubscription(wanted.endpoint)
    if wanted.protocol == "https":
        return subscriptions.UrlSubscription(wanted.endpoint, protocol=sns.SubscriptionProtocol.HTTPS)
    if wanted.protocol == "sqs":
        queue = sqs.Queue.from_queue_arn(scope, f"Subscriber{index}", wanted.endpoint)
        return subscriptions.SqsSubscription(queue, raw_message_delivery=True)
    function = lambda_.Function.from_function_arn(scope, f"Subscriber{index}", wanted.endpoint)
    return subscriptions.LambdaSubscription(function)


class AlertTopics(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.paging = sns.Topic(
            self,
            "Paging",
            topic_name=config.resource_name("paging"),
            display_name=f"ml-pipeline {config.name}: page the on-call engineer",
            master_key=key,
            enforce_ssl=True,
        )
        self.notice = sns.Topic(
            self,
            "Notice",
            topic_name=config.resource_name("notice"),
            display_name=f"ml-pipeline {config.name}: notices for working hours",
            master_key=key,
            enforce_ssl=True,
        )
        topics = {"paging": self.paging, "notice": self.notice}
        for index, wanted in enumerate(config.observability.subscriptions):
            topics[wanted.topic].add_subscription(_subscription(self, index, wanted))
