"""Resources moto's CloudFormation skips: taken out, references made literal, created by API."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from local.emulator.cfn_resources import ApiCreator, take_out


def template() -> dict:
    return {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": {"Statement": []}, "RoleName": "firehose"},
            },
            "Stream": {
                "Type": "AWS::KinesisFirehose::DeliveryStream",
                "Properties": {
                    "DeliveryStreamName": "history",
                    "DeliveryStreamType": "DirectPut",
                    "ExtendedS3DestinationConfiguration": {
                        "BucketARN": "arn:aws:s3:::results",
                        "RoleARN": {"Fn::GetAtt": ["Role", "Arn"]},
                    },
                },
            },
            "Workgroup": {"Type": "AWS::Athena::WorkGroup", "Properties": {"Name": "wg"}},
            "Query": {
                "Type": "AWS::Athena::NamedQuery",
                "Properties": {
                    "Name": "q",
                    "Database": "db",
                    "QueryString": "SELECT 1",
                    "WorkGroup": {"Ref": "Workgroup"},
                },
                "DependsOn": ["Workgroup"],
            },
            "Policy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {"Resource": {"Fn::GetAtt": ["Stream", "Arn"]}},
                "DependsOn": ["Stream", "Role"],
            },
        },
        "Outputs": {"Name": {"Value": {"Ref": "Stream"}}},
    }


def test_take_out_leaves_literals_where_the_references_were():
    body = template()
    removed = take_out(body, region="us-east-1", account="123456789012")
    assert set(removed) == {"Stream", "Workgroup", "Query"}
    assert set(body["Resources"]) == {"Role", "Policy"}
    policy = body["Resources"]["Policy"]
    assert (
        policy["Properties"]["Resource"] == "arn:aws:firehose:us-east-1:123456789012:deliverystream/history"
    )
    assert policy["DependsOn"] == ["Role"]
    assert body["Outputs"]["Name"]["Value"] == "history"


def test_created_through_the_apis_with_references_resolved():
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        session.client("s3").create_bucket(Bucket="results")
        body = template()
        removed = take_out(body, region="us-east-1", account="123456789012")
        cfn = session.client("cloudformation")
        cfn.create_stack(StackName="s", TemplateBody=json.dumps(body), Capabilities=["CAPABILITY_NAMED_IAM"])
        (patch,) = ApiCreator(session).create("s", removed)
        assert "AWS::KinesisFirehose::DeliveryStream history" in patch
        described = session.client("firehose").describe_delivery_stream(DeliveryStreamName="history")
        destination = described["DeliveryStreamDescription"]["Destinations"][0]
        assert destination["ExtendedS3DestinationDescription"]["RoleARN"].endswith(":role/firehose")
        athena = session.client("athena")
        assert athena.get_work_group(WorkGroup="wg")["WorkGroup"]["Name"] == "wg"
        (query_id,) = athena.list_named_queries(WorkGroup="wg")["NamedQueryIds"]
        assert athena.get_named_query(NamedQueryId=query_id)["NamedQuery"]["QueryString"] == "SELECT 1"
