"""moto's Step Functions interpreter with the emulator's Lambda and Batch tasks.

(local.emulator.stepfunctions)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.emulator import cfn_properties
from local.emulator import stepfunctions as emulator

REGION = "us-east-1"


class InputBrokenError(Exception):
    """A handler's own error: Step Functions sees its class name."""


@pytest.fixture
def account() -> Iterator[dict[str, Any]]:
    emulator.install()
    cfn_properties.install()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        session = boto3.session.Session(region_name=REGION)
        ec2 = session.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="jobs", Description="jobs", VpcId=vpc)["GroupId"]
        role = session.client("iam").create_role(RoleName="run", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        batch = session.client("batch")
        environment = batch.create_compute_environment(
            computeEnvironmentName="fargate",
            type="MANAGED",
            state="ENABLED",
            computeResources={
                "type": "FARGATE",
                "maxvCpus": 4,
                "subnets": [subnet],
                "securityGroupIds": [group],
            },
            serviceRole=cfn_properties.batch_service_linked_role("123456789012"),
        )["computeEnvironmentArn"]
        queue = batch.create_job_queue(
            jobQueueName="jobs",
            priority=1,
            state="ENABLED",
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )["jobQueueArn"]
        definition = batch.register_job_definition(
            jobDefinitionName="predict",
            type="container",
            platformCapabilities=["FARGATE"],
            containerProperties={
                "image": "job",
                "command": ["python", "-m", "job", "Ref::input"],
                "environment": [{"name": "OUTPUT_PREFIX", "value": "s3://results/out"}],
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
                "executionRoleArn": role,
            },
            timeout={"attemptDurationSeconds": 600},
        )["jobDefinitionArn"]
        yield {"session": session, "role": role, "queue": queue, "definition": definition}
    emulator.detach()


def run(account: dict[str, Any], definition: dict[str, Any], run_input: dict[str, Any]) -> dict[str, Any]:
    sfn = account["session"].client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"m{time.monotonic_ns()}", definition=json.dumps(definition), roleArn=account["role"]
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="run", input=json.dumps(run_input))[
        "executionArn"
    ]
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.1)
    return dict(described)


def batch_definition(account: dict[str, Any]) -> dict[str, Any]:
    return {
        "StartAt": "RunBatchJob",
        "States": {
            "RunBatchJob": {
                "Type": "Task",
                "Resource": "arn:aws:states:::batch:submitJob.sync",
                "Parameters": {
                    "JobDefinition": account["definition"],
                    "JobName": "predict",
                    "JobQueue": account["queue"],
                    "Parameters": {"input.$": "$.uri"},
                },
                "ResultSelector": {"jobId.$": "$.JobId", "status.$": "$.Status"},
                "Catch": [
                    {"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.error", "Next": "JobFailed"}
                ],
                "End": True,
            },
            "JobFailed": {
                "Type": "Pass",
                "Parameters": {"failed": True, "error.$": "$.error.Error"},
                "End": True,
            },
        },
    }


def test_a_batch_job_runs_the_definitions_command_and_sync_returns_step_functions_casing(account):
    calls: list[tuple[list[str], dict[str, str], float | None]] = []

    def job_runner(command: list[str], environment: dict[str, str], timeout: float | None) -> int:
        calls.append((command, environment, timeout))
        return 0

    emulator.attach(functions={}, job_runner=job_runner)
    result = run(account, batch_definition(account), {"uri": "s3://data/batch/input/day.csv"})
    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["status"] == "SUCCEEDED"
    assert output["jobId"]
    ((command, environment, timeout),) = calls
    assert command == ["python", "-m", "job", "s3://data/batch/input/day.csv"]  # Ref::input substituted
    assert environment["OUTPUT_PREFIX"] == "s3://results/out"
    assert environment["AWS_BATCH_JOB_ID"] == output["jobId"]
    assert timeout == 600  # the job definition's attempt timeout, for the runner to enforce


def test_a_job_that_exits_non_zero_fails_its_task_and_the_catch_sees_it(account):
    emulator.attach(functions={}, job_runner=lambda _command, _env, _timeout: 1)
    result = run(account, batch_definition(account), {"uri": "s3://data/batch/input/day.csv"})
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"failed": True, "error": "States.TaskFailed"}


def test_lambda_tasks_call_the_attached_function_and_its_errors_keep_their_class_name(account):
    session = account["session"]
    lambda_client = session.client("lambda")
    for name in ("ok", "broken"):
        lambda_client.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role=account["role"],
            Handler="handler.handler",
            Code={"ZipFile": b"not run"},
        )

    def ok(_name: str, event: dict[str, Any]) -> dict[str, Any]:
        return {"doubled": event["value"] * 2}

    def broken(_name: str, _event: dict[str, Any]) -> None:
        raise InputBrokenError("row 3 is not a number")

    emulator.attach(functions={"ok": ok, "broken": broken}, job_runner=None)

    def invoke(function: str, then: dict[str, Any]) -> dict[str, Any]:
        return {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": function, "Payload.$": "$"},
            "OutputPath": "$.Payload",
            **then,
        }

    definition = {
        "StartAt": "Ok",
        "States": {
            "Ok": invoke("ok", {"Next": "Broken"}),
            "Broken": invoke(
                "broken",
                {
                    "Catch": [
                        {"ErrorEquals": ["InputBrokenError"], "ResultPath": "$.error", "Next": "Caught"}
                    ],
                    "End": True,
                },
            ),
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    result = run(account, definition, {"value": 21})
    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["doubled"] == 42
    assert output["error"]["Error"] == "InputBrokenError"
    assert "row 3 is not a number" in output["error"]["Cause"]


def test_sdk_integration_answers_carry_timestamps_as_iso_strings(account):
    """An aws-sdk task whose answer has timestamps (DescribeBestJob's training job, here S3's bucket
    list): the state holds ISO 8601 strings, so DescribeExecution can answer with the output."""
    account["session"].client("s3").create_bucket(Bucket="stamped")
    definition = {
        "StartAt": "List",
        "States": {
            "List": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:s3:listBuckets",
                "ResultSelector": {"buckets.$": "$.Buckets"},
                "End": True,
            }
        },
    }
    described = run(account, definition, {})
    assert described["status"] == "SUCCEEDED", described
    (bucket,) = json.loads(described["output"])["buckets"]
    created = bucket["CreationDate"]
    assert isinstance(created, str)
    assert created.endswith("Z")
    assert datetime.fromisoformat(created.replace("Z", "+00:00")).tzinfo is not None


def test_iso_timestamps_converts_nested_datetimes_and_leaves_the_rest():
    moment = datetime(2026, 12, 3, 15, 4, 5, 123456, tzinfo=UTC)
    answer = {"At": moment, "List": [{"When": moment.replace(tzinfo=None)}, 3, "x"], "N": None}
    assert emulator.iso_timestamps(answer) == {
        "At": "2026-12-03T15:04:05.123Z",
        "List": [{"When": "2026-12-03T15:04:05.123Z"}, 3, "x"],
        "N": None,
    }
