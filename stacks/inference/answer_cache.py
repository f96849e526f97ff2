"""The answer cache table of ``POST /predict`` (names and item layout: ``shared.answer_cache``)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from shared import answer_cache
from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge


class AnswerCacheTable(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = key
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=config.resource_name("answer-cache"),
            partition_key=dynamodb.Attribute(
                name=answer_cache.KEY_ATTRIBUTE, type=dynamodb.AttributeType.STRING
            ),
            # a read and at most a write per POST /predict: far below where provisioned pays
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            # answers are predictions for customer data: the data key, as the predictions table
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            time_to_live_attribute=answer_cache.TTL_ATTRIBUTE,
            removal_policy=cdk.RemovalPolicy.DESTROY,  # nothing in it outlives its TTL
        )
        acknowledge(
            self.table,
            nag=["AwsSolutions-DDB3"],
            guard=["DYNAMODB_PITR_ENABLED", "dynamodb_table_pitr_enabled_check"],
            reason="The answer cache holds copies of answers for at most the cache TTL (minutes); every "
            "entry is recomputed from the model on a miss, so there is nothing to restore and no backup "
            "to pay for. The predictions themselves are in the predictions table, which has PITR.",
        )

    def grant_answers(self, grantee: iam.IGrantable) -> None:
        """Read an answer with the generation (BatchGetItem) and store answers (PutItem)."""
        self.table.grant(grantee, "dynamodb:BatchGetItem", "dynamodb:PutItem")
        self.key.grant_encrypt_decrypt(grantee)

    def grant_invalidate(self, grantee: iam.IGrantable) -> None:
        """Write the generation item only (a verified deployment invalidates every answer)."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["dynamodb:PutItem"],
            resource_arns=[self.table.table_arn],
            conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [answer_cache.GENERATION_KEY]}},
        )
        self.key.grant_encrypt_decrypt(grantee)
