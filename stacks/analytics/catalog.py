"""The Glue catalog of the analytics layer: the database, the history table and the batch crawler.

- ``prediction_history``: Parquet under ``predictions/history/dt=YYYY-MM-DD/`` in the results
  bucket, partitioned by ``dt`` with partition projection (Athena computes the partitions from
  the date range, so no crawler and no ``MSCK REPAIR`` is needed, and none costs anything). Its
  columns come from ``shared.analytics.history_columns``: the prediction record's and one per
  feature of the served schema. Firehose converts to Parquet against this table.
- the batch outputs (``{output_prefix}/…/part-*.jsonl``): their table is the crawler's, kept
  current by a crawl the batch run starts when it finishes; the crawler only adds and updates
  (``DeleteBehavior: LOG``: a folder that disappears never drops a table or a partition), writes
  its logs and any S3 output under KMS (its security configuration), and its role reads exactly
  the output prefix and writes only this database.
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from shared.analytics import (
    BATCH_TABLE_PREFIX,
    HISTORY_PREFIX,
    HISTORY_TABLE,
    PARTITION_COLUMN,
    crawler_name,
    database_name,
    history_columns,
)
from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge_wildcards

CRAWLER_LOG_GROUP_PREFIX = "/aws-glue/crawlers"
# batch outputs the crawler reads: predictions only (not the rejects or the manifests)
CRAWLER_EXCLUSIONS = ("**/manifest.json", "**/rejects.jsonl")


class AnalyticsCatalog(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        results_bucket: s3.IBucket,
        data_key: kms.IKey,
        ops_key: kms.IKey,
        feature_names: tuple[str, ...],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self.database_name = database_name(config)
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name,
                description=f"ml-pipeline {config.name}: prediction history and batch outputs",
            ),
        )
        self.history_location = f"s3://{results_bucket.bucket_name}/{HISTORY_PREFIX}"
        analytics = config.analytics
        location_template = f"{self.history_location}{PARTITION_COLUMN}=${{{PARTITION_COLUMN}}}/"
        self.history_table = glue.CfnTable(
            self,
            "HistoryTable",
            catalog_id=stack.account,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=HISTORY_TABLE,
                description="Every prediction and its feedback, from the predictions table's stream",
                table_type="EXTERNAL_TABLE",
                partition_keys=[
                    glue.CfnTable.ColumnProperty(
                        name=PARTITION_COLUMN, type="string", comment="delivery day (UTC), YYYY-MM-DD"
                    )
                ],
                parameters={
                    "classification": "parquet",
                    "parquet.compression": "SNAPPY",
                    "EXTERNAL": "TRUE",
                    "projection.enabled": "true",
                    f"projection.{PARTITION_COLUMN}.type": "date",
                    f"projection.{PARTITION_COLUMN}.format": "yyyy-MM-dd",
                    f"projection.{PARTITION_COLUMN}.range": f"{analytics.projection_start},NOW",
                    f"projection.{PARTITION_COLUMN}.interval": "1",
                    f"projection.{PARTITION_COLUMN}.interval.unit": "DAYS",
                    "storage.location.template": location_template,
                },
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=self.history_location,
                    input_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                        parameters={"serialization.format": "1"},
                    ),
                    columns=[
                        glue.CfnTable.ColumnProperty(name=c.name, type=c.type, comment=c.comment)
                        for c in history_columns(feature_names)
                    ],
                    compressed=True,
                    stored_as_sub_directories=False,
                ),
            ),
        )
        self.history_table.node.add_dependency(self.database)
        self._crawler(config, stack, results_bucket, data_key, ops_key)

    def _crawler(
        self,
        config: EnvironmentConfig,
        stack: cdk.Stack,
        results_bucket: s3.IBucket,
        data_key: kms.IKey,
        ops_key: kms.IKey,
    ) -> None:
        output_prefix = config.batch.output_prefix.rstrip("/")
        self.crawler_name = crawler_name(config)
        security_name = config.resource_name("crawler-security")
        self.security_configuration = glue.CfnSecurityConfiguration(
            self,
            "CrawlerSecurity",
            name=security_name,
            encryption_configuration=glue.CfnSecurityConfiguration.EncryptionConfigurationProperty(
                s3_encryptions=[
                    glue.CfnSecurityConfiguration.S3EncryptionProperty(
                        s3_encryption_mode="SSE-KMS", kms_key_arn=data_key.key_arn
                    )
                ],
                cloud_watch_encryption=glue.CfnSecurityConfiguration.CloudWatchEncryptionProperty(
                    cloud_watch_encryption_mode="SSE-KMS", kms_key_arn=ops_key.key_arn
                ),
                job_bookmarks_encryption=glue.CfnSecurityConfiguration.JobBookmarksEncryptionProperty(
                    job_bookmarks_encryption_mode="CSE-KMS", kms_key_arn=data_key.key_arn
                ),
            ),
        )
        self.crawler_role = iam.Role(
            self,
            "CrawlerRole",
            role_name=config.resource_name("batch-crawler"),
            assumed_by=iam.ServicePrincipal("glue.amazonaws.com"),
            description=f"{self.crawler_name}: reads the batch outputs, writes their table only",
        )
        role = self.crawler_role
        # the batch outputs, read-only (the bucket's objects are encrypted with the data key)
        results_bucket.grant_read(role, f"{output_prefix}/*")
        # the catalog: this database and the tables the crawler makes in it (batch_*), nothing else
        catalog = stack.format_arn(service="glue", resource="catalog")
        database = stack.format_arn(service="glue", resource="database", resource_name=self.database_name)
        tables = stack.format_arn(
            service="glue", resource="table", resource_name=f"{self.database_name}/{BATCH_TABLE_PREFIX}*"
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "glue:GetDatabase",
                    "glue:GetTable",
                    "glue:GetTables",
                    "glue:CreateTable",
                    "glue:UpdateTable",
                    "glue:GetPartition",
                    "glue:GetPartitions",
                    "glue:BatchGetPartition",
                    "glue:CreatePartition",
                    "glue:BatchCreatePartition",
                    "glue:UpdatePartition",
                    "glue:BatchUpdatePartition",
                ],
                resources=[catalog, database, tables],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["glue:GetSecurityConfiguration"],
                resources=[catalog],
            )
        )
        # its logs: the crawler log group, encrypted with the ops key (security configuration)
        log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{CRAWLER_LOG_GROUP_PREFIX}*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:AssociateKmsKey",
                ],
                resources=[log_groups, f"{log_groups}:log-stream:*"],
            )
        )
        ops_key.grant(role, "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*")
        self.crawler = glue.CfnCrawler(
            self,
            "Crawler",
            name=self.crawler_name,
            description="Catalogues the batch outputs (part-*.jsonl); started at the end of each batch run",
            role=role.role_arn,
            database_name=self.database_name,
            table_prefix=BATCH_TABLE_PREFIX,
            targets=glue.CfnCrawler.TargetsProperty(
                s3_targets=[
                    glue.CfnCrawler.S3TargetProperty(
                        path=f"s3://{results_bucket.bucket_name}/{output_prefix}/",
                        exclusions=list(CRAWLER_EXCLUSIONS),
                    )
                ]
            ),
            # never delete: a removed folder is logged, its table and partitions stay
            schema_change_policy=glue.CfnCrawler.SchemaChangePolicyProperty(
                update_behavior="UPDATE_IN_DATABASE", delete_behavior="LOG"
            ),
            recrawl_policy=glue.CfnCrawler.RecrawlPolicyProperty(recrawl_behavior="CRAWL_EVERYTHING"),
            crawler_security_configuration=security_name,
            # one table for the output prefix (its folders are partitions), however many inputs
            configuration=json.dumps(
                {
                    "Version": 1.0,
                    "Grouping": {
                        "TableGroupingPolicy": "CombineCompatibleSchemas",
                        "TableLevelConfiguration": len(f"{output_prefix}".split("/")) + 1,
                    },
                    "CrawlerOutput": {"Partitions": {"AddOrUpdateBehavior": "InheritFromTable"}},
                },
                sort_keys=True,
            ),
        )
        self.crawler.node.add_dependency(self.security_configuration)
        self.crawler.node.add_dependency(self.database)
        self.crawler.node.add_dependency(role)
        tables_pattern = f"Resource::arn:*:glue:*:table/{self.database_name}/{BATCH_TABLE_PREFIX}*"
        log_groups_pattern = f"Resource::arn:*:logs:*:log-group:{CRAWLER_LOG_GROUP_PREFIX}*"
        acknowledge_wildcards(
            role,
            {
                f"Resource::arn:*:s3:::*/{output_prefix}/*": "The batch outputs under the output prefix, "
                "one folder per input key (known only at run time); read-only.",
                tables_pattern: "The tables the crawler creates in this "
                f"database, all named with its table prefix {BATCH_TABLE_PREFIX!r}.",
                log_groups_pattern: "Glue names the crawler's log group itself "
                f"({CRAWLER_LOG_GROUP_PREFIX}, or /aws-glue/crawlers-role/... under a security "
                "configuration); limited to Glue's crawler log groups.",
                f"{log_groups_pattern}:log-stream:*": "Log stream names are chosen by Glue at run "
                "time (one per crawler run), in the crawler's log groups only.",
                "Action::s3:*": "Action families of CDK's S3 read grant (GetObject*, GetBucket*, List*), "
                "limited to the results bucket and the output prefix.",
                "Action::kms:*": "Action families of CDK's KMS grants (GenerateDataKey*), limited to the "
                "project's key ARNs in the same statement.",
            },
        )
