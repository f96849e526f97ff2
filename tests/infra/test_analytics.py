"""Template assertions for the analytics layer (every environment).

The tap (stream → function → Firehose), the delivery stream (Parquet against the Glue table,
KMS, prefixes, buffering), the catalog (database, history table with partition projection and
the served schema's columns, the crawler with its security configuration and never-delete
policy), the Athena workgroup and named queries, least privilege of every role, the outputs and
the stage's order. Expected values come from ``shared.config`` and ``shared.analytics``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.analytics import (
    ATHENA_RESULTS_PREFIX,
    HISTORY_ERROR_PREFIX,
    HISTORY_PREFIX,
    HISTORY_TABLE,
    QUERIES_DIR,
    QUERY_DESCRIPTIONS,
    batch_output_table,
    crawler_name,
    database_name,
    delivery_stream_name,
    history_columns,
    named_queries,
    served_feature_names,
    workgroup_name,
)
from shared.config import ENVIRONMENTS, EnvironmentConfig
from shared.outputs import AnalyticsOutputs, DataOutputs
from tests.infra.conftest import resources_of

ENVS = sorted(ENVIRONMENTS)
LAYER = "analytics"
TemplateJson = Callable[[str, str], dict[str, Any]]


def _one(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    found = resources_of(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    ((logical_id, resource),) = found.items()
    return logical_id, resource["Properties"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _import_of(template_json: TemplateJson, env: str, layer: str, output_key: str) -> dict[str, str]:
    producer = template_json(env, layer)
    value = producer["Outputs"][output_key]["Value"]
    exports = [
        o["Export"]["Name"] for o in producer["Outputs"].values() if "Export" in o and o["Value"] == value
    ]
    assert len(exports) == 1, f"{layer} exports {output_key}'s value {len(exports)} times"
    return {"Fn::ImportValue": exports[0]}


def _statements(template: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    role = template["Resources"][role_id]["Properties"]
    assert not role.get("ManagedPolicyArns"), f"{role_id} has managed policies"
    documents = [
        p["Properties"]["PolicyDocument"]
        for p in resources_of(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    statements = [s for d in documents for s in d["Statement"]]
    assert statements
    assert all(s["Effect"] == "Allow" for s in statements)
    return statements


def _by_action(statements: list[dict[str, Any]]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for statement in statements:
        for action in _as_list(statement["Action"]):
            found.setdefault(action, []).extend(_as_list(statement["Resource"]))
    return found


def _text(value: Any) -> str:
    """A resource (string or Fn::Join) as text, tokens as their JSON, for prefix checks."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        delimiter, parts = value["Fn::Join"]
        return str(delimiter).join(_text(p) for p in parts)
    return json.dumps(value, sort_keys=True)


def _results_bucket(config: EnvironmentConfig) -> str:
    return config.bucket_name("results")


def _role_id(value: Any) -> str:
    assert set(value) == {"Fn::GetAtt"}, value
    return str(value["Fn::GetAtt"][0])


# ----- catalog -----------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_database_and_history_table_with_the_served_schemas_columns_and_projection(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    _, database = _one(template, "AWS::Glue::Database")
    assert database["DatabaseInput"]["Name"] == database_name(config)
    _, table = _one(template, "AWS::Glue::Table")
    assert table["DatabaseName"] == database_name(config)
    table_input = table["TableInput"]
    assert table_input["Name"] == HISTORY_TABLE
    storage = table_input["StorageDescriptor"]
    columns = [(c["Name"], c["Type"]) for c in storage["Columns"]]
    expected = [(c.name, c.type) for c in history_columns(served_feature_names())]
    assert columns == expected
    # every feature of the served request schema is a double column, in schema order
    features = [name for name, kind in columns if kind == "double"][-len(served_feature_names()) :]
    assert tuple(features) == served_feature_names()
    assert table_input["PartitionKeys"] == [
        {"Name": "dt", "Type": "string", "Comment": "delivery day (UTC), YYYY-MM-DD"}
    ]
    location = f"s3://{_results_bucket(config)}/{HISTORY_PREFIX}"
    assert storage["Location"] == location
    assert storage["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert storage["InputFormat"].endswith("MapredParquetInputFormat")
    parameters = table_input["Parameters"]
    assert parameters["classification"] == "parquet"
    assert parameters["projection.enabled"] == "true"
    assert parameters["projection.dt.type"] == "date"
    assert parameters["projection.dt.format"] == "yyyy-MM-dd"
    assert parameters["projection.dt.range"] == f"{config.analytics.projection_start},NOW"
    assert parameters["projection.dt.interval.unit"] == "DAYS"
    assert parameters["storage.location.template"] == f"{location}dt=${{dt}}/"


@pytest.mark.parametrize("env", ENVS)
def test_crawler_catalogues_batch_outputs_never_deletes_and_runs_under_kms(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    _, crawler = _one(template, "AWS::Glue::Crawler")
    assert crawler["Name"] == crawler_name(config)
    assert crawler["DatabaseName"] == database_name(config)
    (target,) = crawler["Targets"]["S3Targets"]
    assert target["Path"] == f"s3://{_results_bucket(config)}/{config.batch.output_prefix}/"
    assert set(target["Exclusions"]) == {"**/manifest.json", "**/rejects.jsonl"}
    assert crawler["SchemaChangePolicy"] == {"DeleteBehavior": "LOG", "UpdateBehavior": "UPDATE_IN_DATABASE"}
    assert "Schedule" not in crawler  # started by the batch run, not on a timer
    settings = json.loads(crawler["Configuration"])
    assert settings["Grouping"]["TableGroupingPolicy"] == "CombineCompatibleSchemas"
    # one table at the output prefix's folder: s3://bucket/batch/output -> level 3
    assert settings["Grouping"]["TableLevelConfiguration"] == len(config.batch.output_prefix.split("/")) + 1
    assert crawler["TablePrefix"] + config.batch.output_prefix.rsplit("/", 1)[-1] == batch_output_table(
        config
    )

    _, security = _one(template, "AWS::Glue::SecurityConfiguration")
    assert crawler["CrawlerSecurityConfiguration"] == security["Name"]
    encryption = security["EncryptionConfiguration"]
    data_key = _import_of(template_json, env, "data", DataOutputs.DATA_KEY_ARN)
    ops_key = _import_of(template_json, env, "data", DataOutputs.OPS_KEY_ARN)
    assert encryption["S3Encryptions"] == [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": data_key}]
    assert encryption["CloudWatchEncryption"] == {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": ops_key}


@pytest.mark.parametrize("env", ENVS)
def test_crawler_role_reads_the_output_prefix_and_writes_only_its_own_tables(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    _, crawler = _one(template, "AWS::Glue::Crawler")
    by_action = _by_action(_statements(template, _role_id(crawler["Role"])))
    assert not [a for a in by_action if a.startswith("s3:") and ("Put" in a or "Delete" in a)]
    s3_objects = {
        _text(r) for a, rs in by_action.items() if a.startswith("s3:") for r in rs if "/" in _text(r)
    }
    assert s3_objects == {f"arn:aws:s3:::{_results_bucket(config)}/{config.batch.output_prefix}/*"}
    arn = f"arn:aws:glue:{config.region}:{config.account}:"
    database = database_name(config)
    glue = {r for a, rs in by_action.items() if a.startswith("glue:") for r in rs}
    assert glue == {f"{arn}catalog", f"{arn}database/{database}", f"{arn}table/{database}/batch_*"}
    assert not [a for a in by_action if a.startswith("glue:Delete") or a == "glue:*"]
    for action, resources in by_action.items():
        assert "*" not in resources, action


# ----- delivery ----------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_delivery_stream_converts_to_parquet_against_the_table_under_kms(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    _, stream = _one(template, "AWS::KinesisFirehose::DeliveryStream")
    data_key = _import_of(template_json, env, "data", DataOutputs.DATA_KEY_ARN)
    assert stream["DeliveryStreamName"] == delivery_stream_name(config)
    assert stream["DeliveryStreamType"] == "DirectPut"
    assert stream["DeliveryStreamEncryptionConfigurationInput"] == {
        "KeyType": "CUSTOMER_MANAGED_CMK",
        "KeyARN": data_key,
    }
    s3 = stream["ExtendedS3DestinationConfiguration"]
    assert s3["BucketARN"] == f"arn:aws:s3:::{_results_bucket(config)}"
    assert s3["Prefix"] == f"{HISTORY_PREFIX}dt=!{{timestamp:yyyy-MM-dd}}/"
    assert s3["ErrorOutputPrefix"].startswith(HISTORY_ERROR_PREFIX)
    assert "!{firehose:error-output-type}" in s3["ErrorOutputPrefix"]
    assert s3["EncryptionConfiguration"] == {"KMSEncryptionConfig": {"AWSKMSKeyARN": data_key}}
    assert s3["BufferingHints"] == {
        "IntervalInSeconds": config.analytics.buffer_interval_seconds,
        "SizeInMBs": config.analytics.buffer_size_mb,
    }
    assert s3["BufferingHints"]["SizeInMBs"] >= 64  # Firehose's minimum with format conversion
    assert s3["CloudWatchLoggingOptions"]["Enabled"] is True
    conversion = s3["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert "OpenXJsonSerDe" in conversion["InputFormatConfiguration"]["Deserializer"]
    assert conversion["OutputFormatConfiguration"]["Serializer"] == {
        "ParquetSerDe": {"Compression": "SNAPPY"}
    }
    schema = conversion["SchemaConfiguration"]
    assert schema["DatabaseName"] == database_name(config)
    assert schema["TableName"] == HISTORY_TABLE
    assert schema["VersionId"] == "LATEST"
    assert schema["RoleARN"] == s3["RoleARN"]


@pytest.mark.parametrize("env", ENVS)
def test_delivery_role_writes_the_history_and_error_prefixes_and_reads_one_tables_schema(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    _, stream = _one(template, "AWS::KinesisFirehose::DeliveryStream")
    role_id = _role_id(stream["ExtendedS3DestinationConfiguration"]["RoleARN"])
    role = template["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": config.account}
    }
    by_action = _by_action(_statements(template, role_id))
    bucket = _results_bucket(config)
    objects = {_text(r) for a, rs in by_action.items() if a.startswith("s3:") for r in rs if "/" in _text(r)}
    assert objects == {
        f"arn:aws:s3:::{bucket}/{HISTORY_PREFIX}*",
        f"arn:aws:s3:::{bucket}/{HISTORY_ERROR_PREFIX}*",
    }
    assert not [a for a in by_action if a.startswith("s3:Delete")]
    arn = f"arn:aws:glue:{config.region}:{config.account}:"
    database = database_name(config)
    glue = {r for a, rs in by_action.items() if a.startswith("glue:") for r in rs}
    assert glue == {f"{arn}catalog", f"{arn}database/{database}", f"{arn}table/{database}/{HISTORY_TABLE}"}
    assert {a for a in by_action if a.startswith("glue:")} == {
        "glue:GetTable",
        "glue:GetTableVersion",
        "glue:GetTableVersions",
    }
    for action, resources in by_action.items():
        assert "*" not in resources, action


# ----- the tap -----------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_tap_reads_the_table_stream_with_partial_failures_bisect_and_a_failure_queue(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    _, mapping = _one(template, "AWS::Lambda::EventSourceMapping")
    assert mapping["EventSourceArn"] == _import_of(
        template_json, env, "data", DataOutputs.PREDICTIONS_TABLE_STREAM_ARN
    )
    settings = config.analytics
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRetryAttempts"] == settings.tap_retry_attempts
    assert mapping["MaximumRecordAgeInSeconds"] == settings.tap_max_record_age_seconds
    assert mapping["BatchSize"] == settings.tap_batch_size
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    queue_id = mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    queue = template["Resources"][queue_id]["Properties"]
    assert queue["QueueName"] == config.resource_name("analytics-tap-failures")
    assert queue["KmsMasterKeyId"] == _import_of(template_json, env, "data", DataOutputs.OPS_KEY_ARN)


@pytest.mark.parametrize("env", ENVS)
def test_tap_function_puts_on_its_delivery_stream_only(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    functions = resources_of(template, "AWS::Lambda::Function")
    (tap,) = [
        f["Properties"]
        for f in functions.values()
        if f["Properties"]["FunctionName"] == config.resource_name("analytics-tap")
    ]
    assert tap["Handler"] == "stacks.analytics.runtime.tap.handler.handler"
    environment = tap["Environment"]["Variables"]
    assert environment["DELIVERY_STREAM_NAME"] == delivery_stream_name(config)
    assert tuple(environment["FEATURE_NAMES"].split(",")) == served_feature_names()
    assert tap["VpcConfig"]["SubnetIds"], "the tap runs in the VPC's isolated subnets"
    stream_id, _ = _one(template, "AWS::KinesisFirehose::DeliveryStream")
    by_action = _by_action(_statements(template, _role_id(tap["Role"])))
    assert by_action["firehose:PutRecordBatch"] == [{"Fn::GetAtt": [stream_id, "Arn"]}]
    dynamodb = {a for a in by_action if a.startswith("dynamodb:")}
    assert dynamodb == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    }
    # the stream read the event source mapping needs, on the table's stream only
    stream_arn = _import_of(template_json, env, "data", DataOutputs.PREDICTIONS_TABLE_STREAM_ARN)
    for action in ("dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream"):
        assert by_action[action] == [stream_arn], action


def test_the_vpc_has_the_firehose_endpoint_the_tap_calls():
    for config in ENVIRONMENTS.values():
        assert "kinesis-firehose" in {e.service for e in config.network.interface_endpoints}


# ----- Athena ------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_workgroup_is_enforced_v3_kms_encrypted_with_a_scan_cutoff_and_metrics(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    _, workgroup = _one(template, "AWS::Athena::WorkGroup")
    assert workgroup["Name"] == workgroup_name(config)
    settings = workgroup["WorkGroupConfiguration"]
    assert settings["EnforceWorkGroupConfiguration"] is True
    assert settings["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}
    assert settings["PublishCloudWatchMetricsEnabled"] is True
    assert settings["BytesScannedCutoffPerQuery"] == config.analytics.bytes_scanned_cutoff
    results = settings["ResultConfiguration"]
    assert results["OutputLocation"] == f"s3://{_results_bucket(config)}/{ATHENA_RESULTS_PREFIX}"
    assert results["EncryptionConfiguration"] == {
        "EncryptionOption": "SSE_KMS",
        "KmsKey": _import_of(template_json, env, "data", DataOutputs.DATA_KEY_ARN),
    }


@pytest.mark.parametrize("env", ENVS)
def test_named_queries_are_the_sql_files_rendered_in_the_workgroup(env, template_json):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    workgroup_id, _ = _one(template, "AWS::Athena::WorkGroup")
    queries = {
        q["Properties"]["Name"]: q["Properties"]
        for q in resources_of(template, "AWS::Athena::NamedQuery").values()
    }
    assert set(queries) == set(QUERY_DESCRIPTIONS) == {p.stem for p in QUERIES_DIR.glob("*.sql")}
    for query in named_queries(config, served_feature_names()):
        deployed = queries[query.name]
        assert deployed["QueryString"] == query.sql
        assert deployed["Database"] == database_name(config)
        assert deployed["WorkGroup"] == {"Ref": workgroup_id}
        assert "{" not in deployed["QueryString"], "an unfilled placeholder"
    drift = queries["feature_drift_daily"]["QueryString"]
    assert all(f"'{name}'" in drift for name in served_feature_names())
    assert batch_output_table(config) in queries["batch_runs_summary"]["QueryString"]


# ----- outputs, order ----------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_outputs_name_every_resource_mlpipe_and_later_layers_use(env, template_json):
    config = ENVIRONMENTS[env]
    outputs = template_json(env, LAYER)["Outputs"]
    keys = {v for k, v in vars(AnalyticsOutputs).items() if k.isupper()}
    assert keys <= set(outputs)
    assert outputs[AnalyticsOutputs.DATABASE_NAME]["Value"] == database_name(config)
    assert outputs[AnalyticsOutputs.CRAWLER_NAME]["Value"] == crawler_name(config)
    assert outputs[AnalyticsOutputs.WORKGROUP_NAME]["Value"] == workgroup_name(config)
    assert outputs[AnalyticsOutputs.BATCH_OUTPUT_TABLE_NAME]["Value"] == batch_output_table(config)


@pytest.mark.parametrize("env", ENVS)
def test_analytics_deploys_after_batch(env, plan):
    order = [s.stack_name for s in plan[env]]
    config = ENVIRONMENTS[env]
    assert order.index(config.stack_name("analytics")) > order.index(config.stack_name("batch"))


@pytest.mark.parametrize("env", ENVS)
def test_every_wildcard_acknowledgement_has_a_reason(env, template_json):
    template = template_json(env, LAYER)
    for logical_id, policy in resources_of(template, "AWS::IAM::Policy").items():
        for entry in policy.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            assert len(entry.get("reason", "")) >= 25, (logical_id, entry)
