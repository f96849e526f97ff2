"""Data stack: keys, buckets, predictions table, model registry parameters, outputs."""

from __future__ import annotations

import pytest

from mlpipe.state import DesiredState, Traffic
from shared.config import ENVIRONMENTS
from shared.model_parameters import VERSION_PATTERN
from shared.outputs import DataOutputs
from tests.infra.conftest import resources_of

ENVS = sorted(ENVIRONMENTS)
PURPOSES = ("models", "data", "results")


def _buckets(t):
    return {b["Properties"]["BucketName"]: (k, b) for k, b in resources_of(t, "AWS::S3::Bucket").items()}


def _bucket_name(env: str, purpose: str) -> str:
    return ENVIRONMENTS[env].bucket_name(purpose)


@pytest.mark.parametrize("env", ENVS)
def test_keys_rotate_and_deny_grants_except_for_aws_services(env, template_json):
    keys = resources_of(template_json(env, "data"), "AWS::KMS::Key")
    assert len(keys) == 2
    for key in keys.values():
        props = key["Properties"]
        assert props["EnableKeyRotation"] is True
        assert props["RotationPeriodInDays"] == 365
        deny = [s for s in props["KeyPolicy"]["Statement"] if s["Effect"] == "Deny"]
        assert deny == [
            {
                "Sid": "DenyGrantsExceptForAwsServices",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "kms:CreateGrant",
                "Resource": "*",
                "Condition": {
                    "BoolIfExists": {
                        "kms:GrantIsForAWSResource": "false",
                        "aws:PrincipalIsAWSService": "false",
                    }
                },
            }
        ]


def test_ops_key_policy_names_the_services_that_act_as_themselves(template_json):
    keys = resources_of(template_json("prod", "data"), "AWS::KMS::Key")
    ops = next(k for name, k in keys.items() if "OpsKey" in name)
    statements = ops["Properties"]["KeyPolicy"]["Statement"]
    by_service = {}
    for s in statements:
        services = s.get("Principal", {}).get("Service")
        for service in [services] if isinstance(services, str) else services or []:
            by_service[service] = s
    assert set(by_service) == {
        "logs.us-east-1.amazonaws.com",
        "cloudwatch.amazonaws.com",
        "events.amazonaws.com",
    }
    log_arns = by_service["logs.us-east-1.amazonaws.com"]["Condition"]["ArnLike"][
        "kms:EncryptionContext:aws:logs:arn"
    ]
    assert all(":log-group:" in arn and "prod" in arn for arn in log_arns)
    for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):
        statement = by_service[service]
        assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "222222222222"}}
    data = next(k for name, k in keys.items() if "DataKey" in name)
    principals = [
        s.get("Principal") for s in data["Properties"]["KeyPolicy"]["Statement"] if s["Effect"] == "Allow"
    ]
    assert principals == [{"AWS": "arn:aws:iam::222222222222:root"}]


@pytest.mark.parametrize("env", ENVS)
def test_data_buckets_are_versioned_kms_private_logged(env, template_json):
    t = template_json(env, "data")
    buckets = _buckets(t)
    keys = resources_of(t, "AWS::KMS::Key")
    data_key = next(k for k in keys if "DataKey" in k)
    log_bucket_id, _ = buckets[_bucket_name(env, "access-logs")]
    for purpose in PURPOSES:
        _, bucket = buckets[_bucket_name(env, purpose)]
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": [data_key, "Arn"]},
        }
        assert rule["BucketKeyEnabled"] is True
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["LoggingConfiguration"] == {
            "DestinationBucketName": {"Ref": log_bucket_id},
            "LogFilePrefix": f"{purpose}/",
        }
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        assert props["NotificationConfiguration"] == {
            "EventBridgeConfiguration": {"EventBridgeEnabled": True}
        }
        expected = "Retain" if ENVIRONMENTS[env].is_production else "Delete"
        assert bucket["DeletionPolicy"] == expected


@pytest.mark.parametrize("env", ENVS)
def test_every_bucket_policy_denies_plain_http_and_old_tls(env, template_json):
    t = template_json(env, "data")
    buckets = _buckets(t)
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p for p in resources_of(t, "AWS::S3::BucketPolicy").values()
    }
    assert set(policies) == {logical_id for logical_id, _ in buckets.values()}
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        conditions = [s["Condition"] for s in statements if s["Effect"] == "Deny"]
        assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
        assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in conditions


def test_access_log_bucket_uses_sse_s3_and_grants_log_delivery_only(template_json):
    t = template_json("prod", "data")
    log_bucket_id, bucket = _buckets(t)[_bucket_name("prod", "access-logs")]
    (rule,) = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    policy = next(
        p
        for p in resources_of(t, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": log_bucket_id}
    )
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allows
    assert all(s["Principal"] == {"Service": "logging.s3.amazonaws.com"} for s in allows)
    assert all(s["Action"] == "s3:PutObject" for s in allows)


def _rules(t, env, purpose):
    _, bucket = _buckets(t)[_bucket_name(env, purpose)]
    return {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}


def test_lifecycle_rules_follow_the_config(template_json):
    t = template_json("prod", "data")
    d = ENVIRONMENTS["prod"].data
    models = _rules(t, "prod", "models")
    assert "ExpirationInDays" not in models["expire-old-artifact-versions"], "current models never expire"
    assert models["expire-old-artifact-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": d.model_noncurrent_version_expiry_days,
        "NewerNoncurrentVersions": d.noncurrent_versions_to_retain,
    }
    batch = ENVIRONMENTS["prod"].batch
    data = _rules(t, "prod", "data")
    assert data["expire-raw-input"]["Prefix"] == batch.input_prefix
    assert data["expire-raw-input"]["ExpirationInDays"] == d.raw_input_expiry_days
    # the prefix the endpoint's data capture writes to (a mismatch would keep captures forever)
    assert data["expire-data-capture"]["Prefix"] == f"{d.data_capture_prefix}/"
    results = _rules(t, "prod", "results")
    assert results["expire-batch-output"]["Prefix"] == f"{batch.output_prefix}/"
    assert results["expire-batch-output"]["ExpirationInDays"] == d.batch_output_expiry_days
    assert results["expire-batch-runs"]["Prefix"] == f"{batch.runs_prefix}/"
    assert results["tier-analytics"]["Transitions"] == [
        {
            "StorageClass": "INTELLIGENT_TIERING",
            "TransitionInDays": d.analytics_intelligent_tiering_after_days,
        }
    ]
    assert results["expire-athena-results"]["ExpirationInDays"] == 30
    for purpose in (*PURPOSES, "access-logs"):
        rules = _rules(t, "prod", purpose)
        assert rules["abort-incomplete-multipart"]["AbortIncompleteMultipartUpload"] == {
            "DaysAfterInitiation": 7
        }
    logs = _rules(t, "prod", "access-logs")
    assert logs["expire-access-logs"]["ExpirationInDays"] == d.access_log_expiry_days


@pytest.mark.parametrize("env", ENVS)
def test_predictions_table(env, template_json):
    t = template_json(env, "data")
    (table,) = resources_of(t, "AWS::DynamoDB::Table").values()
    props = table["Properties"]
    data_key = next(k for k in resources_of(t, "AWS::KMS::Key") if "DataKey" in k)
    assert props["TableName"] == f"ml-pipeline-predictions-{env}-us-east-1"
    assert props["KeySchema"] == [
        {"AttributeName": "predictionId", "KeyType": "HASH"},
        {"AttributeName": "timestamp", "KeyType": "RANGE"},
    ]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expirationTime", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Fn::GetAtt": [data_key, "Arn"]},
    }
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    (gsi,) = props["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "by-model-version"
    assert gsi["KeySchema"] == [
        {"AttributeName": "modelVersion", "KeyType": "HASH"},
        {"AttributeName": "timestamp", "KeyType": "RANGE"},
    ]
    production = ENVIRONMENTS[env].is_production
    assert props.get("DeletionProtectionEnabled", False) is production
    assert table["DeletionPolicy"] == ("Retain" if production else "Delete")


@pytest.mark.parametrize("env", ENVS)
def test_model_registry_parameters(env, template_json):
    params = {
        p["Properties"]["Name"]: p["Properties"]
        for p in resources_of(template_json(env, "data"), "AWS::SSM::Parameter").values()
    }
    assert sorted(params) == [
        f"/ml-pipeline/{env}/models/active-version",
        f"/ml-pipeline/{env}/models/traffic",
    ]
    active = params[f"/ml-pipeline/{env}/models/active-version"]
    assert active["Value"] == ENVIRONMENTS[env].data.initial_model_version
    assert active["AllowedPattern"] == VERSION_PATTERN.pattern == r"^v[1-9]\d{0,5}$"


@pytest.mark.parametrize("env", ENVS)
def test_traffic_parameter_is_what_mlpipe_reads_and_matches_the_endpoint(env, template_json):
    config = ENVIRONMENTS[env]
    (traffic,) = [
        p["Properties"]["Value"]
        for p in resources_of(template_json(env, "data"), "AWS::SSM::Parameter").values()
        if p["Properties"]["Name"].endswith("/traffic")
    ]
    desired = DesiredState(
        champion=config.data.initial_model_version, traffic=Traffic.model_validate_json(traffic)
    )
    # the desired state the stack seeds is the endpoint the inference stack creates
    for name, target in desired.variants().items():
        assert target.version == config.initial_version(name)
        assert target.weight == pytest.approx(config.inference.variant(name).weight)


@pytest.mark.parametrize("env", ENVS)
def test_outputs_for_later_layers(env, template_json):
    # CDK's own cross-stack exports (ExportsOutput...) come on top of the named outputs
    outputs = {
        k: v for k, v in template_json(env, "data")["Outputs"].items() if not k.startswith("ExportsOutput")
    }
    expected = [v for k, v in vars(DataOutputs).items() if k.isupper()]
    assert sorted(outputs) == sorted(expected)
    assert outputs[DataOutputs.MODEL_PARAMETERS_PATH]["Value"] == f"/ml-pipeline/{env}/models"
