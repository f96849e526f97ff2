"""Analytics layer: every prediction in S3 as Parquet, catalogued in Glue, queried in Athena.

    predictions table ─ stream ─ analytics-tap (Lambda, VPC) ─ Firehose (Parquet, KMS)
        └ s3://results/predictions/history/dt=YYYY-MM-DD/*.parquet ─ Glue prediction_history
    batch run's Finish/Report ─ glue:StartCrawler ─ crawler ─ Glue batch_output
    Athena workgroup (enforced, engine v3, SSE_KMS results, bytes cutoff) + named queries

Deployed after the batch layer: the batch run starts this layer's crawler by the name both
derive from ``shared.analytics.crawler_name`` (see there), so neither stack imports the other's
resources and there is no cycle.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from shared.analytics import HISTORY_TABLE, batch_output_table, named_queries, served_feature_names
from shared.config import EnvironmentConfig
from shared.infra.python_function import DependenciesLayer, HardenedFunction, source_code, vpc_functions
from shared.outputs import AnalyticsOutputs
from stacks.analytics.athena import AnalyticsQueries
from stacks.analytics.catalog import AnalyticsCatalog
from stacks.analytics.delivery import HistoryDelivery
from stacks.analytics.tap import HistoryTap
from stacks.data.references import data_references
from stacks.data.stack import DataStack
from stacks.network.stack import NetworkStack

TAP_HANDLER = "stacks.analytics.runtime.tap.handler.handler"
RUNTIME_SOURCES = (
    "shared/__init__.py",
    "shared/config.py",
    "shared/predictions.py",
    "shared/analytics.py",
    "model/__init__.py",
    "model/schema.py",
    "stacks/__init__.py",
    "stacks/analytics/__init__.py",
    "stacks/analytics/runtime",
)


class AnalyticsStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        network: NetworkStack,
        data: DataStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        refs = data_references(self, config=config, data_key=data.data_key)
        self.results_bucket = refs.results_bucket
        feature_names = served_feature_names()

        self.catalog = AnalyticsCatalog(
            self,
            "Catalog",
            config=config,
            results_bucket=self.results_bucket,
            data_key=data.data_key,
            ops_key=data.ops_key,
            feature_names=feature_names,
        )
        self.delivery = HistoryDelivery(
            self,
            "Delivery",
            config=config,
            results_bucket=self.results_bucket,
            data_key=data.data_key,
            ops_key=data.ops_key,
            database_name=self.catalog.database_name,
            table=self.catalog.history_table,
        )
        layer = DependenciesLayer(
            self, "Dependencies", description=f"ml-pipeline {config.name}: locked runtime dependencies"
        ).layer
        make_function = vpc_functions(
            self,
            config=config,
            code=source_code(RUNTIME_SOURCES),
            layer=layer,
            log_key=data.ops_key,
            vpc=network.vpc,
            security_groups=[network.compute_security_group],
        )
        self.tap_function: HardenedFunction = make_function(
            "TapFunction",
            name="analytics-tap",
            description="Puts the predictions table's stream records on the history delivery stream",
            handler=TAP_HANDLER,
            sizing=config.analytics.tap_function,
            environment={
                "DELIVERY_STREAM_NAME": self.delivery.stream_name,
                "FEATURE_NAMES": ",".join(feature_names),
            },
        )
        # the stream's ARN carries a label chosen at table creation: the data layer exports it
        self.tap = HistoryTap(
            self,
            "Tap",
            config=config,
            function=self.tap_function.function,
            table=data.predictions_table,
            delivery_stream_arn=self.delivery.delivery_stream_arn,
            ops_key=data.ops_key,
        )
        self.tap_function.acknowledge_wildcards(
            {
                "Resource::*": "X-Ray PutTraceSegments/PutTelemetryRecords, EC2 Describe* and DynamoDB "
                "ListStreams (the event source mapping's stream lookup) support no resource-level "
                "permissions (AWS service authorization reference); the stream reads name the stream.",
            }
        )

        self.queries = AnalyticsQueries(
            self,
            "Queries",
            config=config,
            results_bucket=self.results_bucket,
            data_key=data.data_key,
            database=self.catalog.database,
            database_name=self.catalog.database_name,
            queries=named_queries(config, feature_names),
        )

        outputs = {
            AnalyticsOutputs.DATABASE_NAME: self.catalog.database_name,
            AnalyticsOutputs.HISTORY_TABLE_NAME: HISTORY_TABLE,
            AnalyticsOutputs.HISTORY_LOCATION: self.catalog.history_location,
            AnalyticsOutputs.BATCH_OUTPUT_TABLE_NAME: batch_output_table(config),
            AnalyticsOutputs.CRAWLER_NAME: self.catalog.crawler_name,
            AnalyticsOutputs.WORKGROUP_NAME: self.queries.workgroup_name,
            AnalyticsOutputs.ATHENA_RESULTS_LOCATION: self.queries.results_location,
            AnalyticsOutputs.DELIVERY_STREAM_NAME: self.delivery.stream_name,
            AnalyticsOutputs.TAP_FUNCTION_NAME: self.tap_function.function.function_name,
            AnalyticsOutputs.TAP_FAILURE_QUEUE_URL: self.tap.failures.queue_url,
        }
        for key, value in outputs.items():
            cdk.CfnOutput(self, key, value=value)
