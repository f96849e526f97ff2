"""The data layer's resources as the layers above refer to them: by their configured names.

Grants on these references name the buckets and the table by literal ARNs instead of cross-stack
imports, so each wildcard a grant writes is visible (and acknowledged) as what it is, and a layer
above deploys without an export the data layer would then have to keep forever. The data key is
passed as the object it is (its grants need its ARN, which only the data layer knows).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from shared.config import EnvironmentConfig
from stacks.data.predictions_table import BY_MODEL_VERSION_INDEX


@dataclass(frozen=True)
class DataReferences:
    model_bucket: s3.IBucket
    data_bucket: s3.IBucket
    results_bucket: s3.IBucket
    predictions_table: dynamodb.ITable


def data_references(scope: Construct, *, config: EnvironmentConfig, data_key: kms.IKey) -> DataReferences:
    """References (no resources) to the data layer's buckets and predictions table in ``scope``."""

    def bucket(construct_id: str, purpose: str) -> s3.IBucket:
        return s3.Bucket.from_bucket_attributes(
            scope, construct_id, bucket_name=config.bucket_name(purpose), encryption_key=data_key
        )

    return DataReferences(
        model_bucket=bucket("ModelBucket", "models"),
        data_bucket=bucket("DataBucket", "data"),
        results_bucket=bucket("ResultsBucket", "results"),
        predictions_table=dynamodb.Table.from_table_attributes(
            scope,
            "PredictionsTable",
            table_name=config.resource_name("predictions"),
            encryption_key=data_key,
            global_indexes=[BY_MODEL_VERSION_INDEX],
        ),
    )
