"""Imports inside EventBridge rule patterns are resolved before moto creates the stack."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from local.emulator.events import install, resolve_pattern_imports

QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/ml-pipeline-batch-local"


def template() -> dict:
    return {
        "Resources": {
            "JobFailed": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "EventPattern": {
                        "source": ["aws.batch"],
                        "detail": {"status": ["FAILED"], "jobQueue": [{"Fn::ImportValue": "batch:Queue"}]},
                    }
                },
            },
            "Other": {
                "Type": "AWS::SQS::Queue",
                "Properties": {"Tags": [{"Fn::ImportValue": "batch:Queue"}]},
            },
        }
    }


def test_an_import_in_a_rule_pattern_becomes_the_exports_value():
    resolved = template()
    assert resolve_pattern_imports(resolved, {"batch:Queue": QUEUE}) == 1
    pattern = resolved["Resources"]["JobFailed"]["Properties"]["EventPattern"]
    assert pattern == {"source": ["aws.batch"], "detail": {"status": ["FAILED"], "jobQueue": [QUEUE]}}
    # only rule patterns: other properties keep their imports for CloudFormation to resolve
    assert resolved["Resources"]["Other"] == template()["Resources"]["Other"]


def test_an_unknown_export_is_left_for_cloudformation_to_refuse():
    resolved = template()
    assert resolve_pattern_imports(resolved, {}) == 0
    assert resolved == template()


def test_put_events_reaches_an_sns_target_and_skips_a_lambda_target():
    install()
    with mock_aws():
        events, sns, sqs = (boto3.client(n, region_name="us-east-1") for n in ("events", "sns", "sqs"))
        topic = sns.create_topic(Name="paging")["TopicArn"]
        queue = sqs.create_queue(QueueName="subscriber")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["QueueArn"])
        events.put_rule(Name="drift", EventPattern=json.dumps({"detail-type": ["DataDriftDetected"]}))
        events.put_targets(
            Rule="drift",
            Targets=[
                {"Id": "topic", "Arn": topic},
                {"Id": "fn", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:retrain"},
            ],
        )
        answer = events.put_events(
            Entries=[{"Source": "ml-pipeline", "DetailType": "DataDriftDetected", "Detail": "{}"}]
        )
        assert answer["FailedEntryCount"] == 0
        (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
        assert json.loads(json.loads(message["Body"])["Message"])["detail-type"] == "DataDriftDetected"
