"""Athena: one workgroup whose settings queries cannot override, and the named queries.

Engine version 3; results in the results bucket under ``athena-results/`` with SSE_KMS and the
data key; a per-query bytes-scanned cutoff from config; CloudWatch metrics on. The named
queries are the ``.sql`` files of ``shared/queries`` (the same files the local stage runs in
DuckDB), rendered by ``shared.analytics.named_queries``.
"""

from __future__ import annotations

from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from shared.analytics import ATHENA_RESULTS_PREFIX, NamedQuery, workgroup_name
from shared.config import EnvironmentConfig

ENGINE_VERSION = "Athena engine version 3"


class AnalyticsQueries(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        results_bucket: s3.IBucket,
        data_key: kms.IKey,
        database: glue.CfnDatabase,
        database_name: str,
        queries: tuple[NamedQuery, ...],
    ) -> None:
        super().__init__(scope, construct_id)
        self.workgroup_name = workgroup_name(config)
        self.results_location = f"s3://{results_bucket.bucket_name}/{ATHENA_RESULTS_PREFIX}"
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=self.workgroup_name,
            description=f"ml-pipeline {config.name}: prediction history and batch outputs",
            state="ENABLED",
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version=ENGINE_VERSION
                ),
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=config.analytics.bytes_scanned_cutoff,
                requester_pays_enabled=False,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=self.results_location,
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_KMS", kms_key=data_key.key_arn
                    ),
                ),
            ),
        )
        self.named_queries: dict[str, athena.CfnNamedQuery] = {}
        for query in queries:
            named = athena.CfnNamedQuery(
                self,
                "".join(part.capitalize() for part in query.name.split("_")) + "Query",
                name=query.name,
                description=query.description[:1024],
                database=database_name,
                query_string=query.sql,
                work_group=self.workgroup.ref,
            )
            named.node.add_dependency(database)
            self.named_queries[query.name] = named
