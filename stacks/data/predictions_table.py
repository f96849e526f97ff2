"""The predictions table: every real-time, stream and batch prediction, expiring by TTL."""

from __future__ import annotations

from typing import Final

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.removal import to_cdk

PARTITION_KEY: Final = "predictionId"
SORT_KEY: Final = "timestamp"  # ISO-8601 UTC, sorts chronologically as a string
TTL_ATTRIBUTE: Final = "expirationTime"  # epoch seconds, written by every producer
BY_MODEL_VERSION_INDEX: Final = "by-model-version"


class PredictionsTable(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=config.resource_name("predictions"),
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            # ~100k writes/day (about 1.2/s, peaks of 10x) is far below where provisioned capacity pays.
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=TTL_ATTRIBUTE,
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
            deletion_protection=config.is_production,
            removal_policy=to_cdk(config.data_removal_policy),
        )
        # A/B comparison and drift queries read one model version's predictions in time order.
        self.table.add_global_secondary_index(
            index_name=BY_MODEL_VERSION_INDEX,
            partition_key=dynamodb.Attribute(name="modelVersion", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.by_model_version_index = BY_MODEL_VERSION_INDEX
