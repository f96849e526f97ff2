"""Data layer: keys, buckets, predictions table, model registry parameters."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.outputs import DataOutputs
from stacks.data.buckets import DataBuckets
from stacks.data.keys import DataKeys
from stacks.data.model_registry import ModelRegistryParameters
from stacks.data.predictions_table import PredictionsTable


class DataStack(cdk.Stack):
    """Exposes keys, buckets, ``predictions_table`` and ``model_registry`` to the layers above."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        keys = DataKeys(self, "Keys", config=config)
        self.data_key = keys.data_key
        self.ops_key = keys.ops_key
        buckets = DataBuckets(self, "Buckets", config=config, key=self.data_key)
        self.model_bucket = buckets.model_bucket
        self.data_bucket = buckets.data_bucket
        self.results_bucket = buckets.results_bucket
        self.access_log_bucket = buckets.access_log_bucket
        predictions = PredictionsTable(self, "Predictions", config=config, key=self.data_key)
        self.predictions_table = predictions.table
        self.model_registry = ModelRegistryParameters(self, "ModelRegistry", config=config)

        stream_arn = self.predictions_table.table_stream_arn
        if stream_arn is None:  # the table is declared with a stream; this guards a refactor
            raise ValueError("the predictions table must have a stream")
        outputs = {
            DataOutputs.DATA_KEY_ARN: self.data_key.key_arn,
            DataOutputs.OPS_KEY_ARN: self.ops_key.key_arn,
            DataOutputs.MODEL_BUCKET_NAME: self.model_bucket.bucket_name,
            DataOutputs.DATA_BUCKET_NAME: self.data_bucket.bucket_name,
            DataOutputs.RESULTS_BUCKET_NAME: self.results_bucket.bucket_name,
            DataOutputs.ACCESS_LOG_BUCKET_NAME: self.access_log_bucket.bucket_name,
            DataOutputs.PREDICTIONS_TABLE_NAME: self.predictions_table.table_name,
            DataOutputs.PREDICTIONS_TABLE_STREAM_ARN: stream_arn,
            DataOutputs.PREDICTIONS_BY_MODEL_VERSION_INDEX: predictions.by_model_version_index,
            DataOutputs.ACTIVE_VERSION_PARAMETER: self.model_registry.active_version.parameter_name,
            DataOutputs.MODEL_PARAMETERS_PATH: self.model_registry.models_path,
        }
        for key, value in outputs.items():
            cdk.CfnOutput(self, key, value=value)
