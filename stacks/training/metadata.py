"""The training metadata table: experiments, runs, model versions with lineage, A/B configurations.

Names and item kinds are ``shared.training``'s (the runtime reads the same). One table with
generic keys (``pk``, ``sk``) and three sparse indexes:

- ``by-experiment`` (``experiment``, ``startedAt``): the runs of an experiment by time;
- ``by-status`` (``runStatus``, ``startedAt``): running, failed, ... runs by time;
- ``by-model-version`` (``modelVersion``): the run that trained a version.

SSM stays the desired-state pointer of the endpoint; this table is the history. PITR on, the
data key (runs carry data checksums and metrics of customer data), TTL for the run lock only.
"""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from shared import training
from shared.config import EnvironmentConfig
from shared.infra.removal import to_cdk


def _string(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class MetadataTable(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=config.resource_name("training-metadata"),
            partition_key=_string(training.PARTITION_KEY),
            sort_key=_string(training.SORT_KEY),
            # a few writes per run and a few reads per CLI call: on-demand costs cents
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=training.TTL_ATTRIBUTE,
            removal_policy=to_cdk(config.data_removal_policy),
        )
        self.table.add_global_secondary_index(
            index_name=training.BY_EXPERIMENT_INDEX,
            partition_key=_string(training.EXPERIMENT_ATTRIBUTE),
            sort_key=_string(training.STARTED_AT_ATTRIBUTE),
        )
        self.table.add_global_secondary_index(
            index_name=training.BY_STATUS_INDEX,
            partition_key=_string(training.STATUS_ATTRIBUTE),
            sort_key=_string(training.STARTED_AT_ATTRIBUTE),
        )
        self.table.add_global_secondary_index(
            index_name=training.BY_MODEL_VERSION_INDEX,
            partition_key=_string(training.MODEL_VERSION_ATTRIBUTE),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
