"""moto's Kinesis -> Lambda trigger is taken off the streams (the local stage polls instead)."""

from __future__ import annotations

import io
import zipfile

from local.emulator import kinesis


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def test_moto_no_longer_invokes_the_consumer_on_put_record(aws):
    kinesis_client = aws.client("kinesis")
    kinesis_client.create_stream(StreamName="requests", ShardCount=1)
    arn = kinesis_client.describe_stream(StreamName="requests")["StreamDescription"]["StreamARN"]
    role = aws.client("iam").create_role(RoleName="consumer", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lambda_client = aws.client("lambda")
    lambda_client.create_function(
        FunctionName="consumer",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": _zip()},
    )
    lambda_client.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="consumer", StartingPosition="LATEST"
    )
    assert kinesis.detach_lambda_triggers("123456789012", "us-east-1") == ["requests"]
    assert kinesis.detach_lambda_triggers("123456789012", "us-east-1") == []
    # PutRecord no longer reaches moto's Lambda (which would start Docker); the mapping remains
    kinesis_client.put_record(StreamName="requests", Data=b"{}", PartitionKey="p")
    assert len(lambda_client.list_event_source_mappings(FunctionName="consumer")["EventSourceMappings"]) == 1
