"""The local EventBridge: the templates' rules, pattern matching, service events by polling, retries."""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local.events import (
    MAX_LOCAL_RETRIES,
    EventDispatcher,
    check_pattern,
    event_buckets,
    event_rules,
    event_status,
    matches,
    rate_seconds,
    sqs_dead_letters,
)
from shared.config import get_config
from shared.eventbridge import TargetInputError, target_input
from tests.unit.conftest import IMAGE, ROLE
from tools.deploy_plan import deployment_plan
from tools.synth import synthesize

ACCOUNT, REGION = "123456789012", "us-east-1"
INFERENCE = "ml-pipeline-inference-local"
BATCH = "ml-pipeline-batch-local"
SCHEDULE_RULE = "ml-pipeline-batch-schedule-local-us-east-1"
INPUT_RULE = "ml-pipeline-batch-input-created-local-us-east-1"
OBSERVABILITY = "ml-pipeline-observability-local"
TRAINING = "ml-pipeline-training-local"
TRAINING_SCHEDULE_RULE = "ml-pipeline-training-schedule-local-us-east-1"
TRAINING_DRIFT_RULE = "ml-pipeline-training-drift-local-us-east-1"
TRAINING_DATA_RULE = "ml-pipeline-training-data-created-local-us-east-1"
TRAINING_RUNS_FUNCTION = "ml-pipeline-training-runs-local-us-east-1"
DRIFT_RULE = "ml-pipeline-drift-monitor-local-us-east-1"
JOB_FAILED_RULE = "ml-pipeline-batch-job-failed-local-us-east-1"
DESIRED_RULE = "ml-pipeline-desired-state-changed-local-us-east-1"
ENDPOINT_RULE = "ml-pipeline-endpoint-state-changed-local-us-east-1"
STANDBY_RULE = "ml-pipeline-standby-check-local-us-east-1"
ACTIVE = "/ml-pipeline/local/models/active-version"
TRAFFIC = "/ml-pipeline/local/models/traffic"
UNWATCHED = "/ml-pipeline/local/models/registry-notes"
ENDPOINT = "ml-pipeline-endpoint-local-us-east-1"
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}"
DEPLOY_FUNCTION = "ml-pipeline-deploy-local-us-east-1"
MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:machine-physical"
NOW = datetime(2026, 11, 24, 12, 0, 0, 123000, tzinfo=UTC)


# --- the synthesized templates and the emulated account -----------------------------------------


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("events") / "cdk.out"
    synthesize(out, environments=["local"])
    return {
        plan.stack_name: json.loads(plan.template_file.read_text()) for plan in deployment_plan(out)["local"]
    }


def function_names(templates: dict[str, dict]) -> dict[str, str]:
    """Logical id -> FunctionName of every Lambda function of the templates (the physical names)."""
    return {
        logical_id: resource["Properties"]["FunctionName"]
        for template in templates.values()
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function" and "FunctionName" in resource["Properties"]
    }


def deploy_function_id(templates: dict[str, dict]) -> str:
    (logical_id,) = [i for i, name in function_names(templates).items() if name == DEPLOY_FUNCTION]
    return logical_id


class Functions:
    """The stage's in-process Lambda runner: records invocations; the first ``failures`` raise."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.failures = failures

    def invoke(self, name: str, event: dict) -> dict:
        self.calls.append((name, event))
        if self.failures:
            self.failures -= 1
            raise RuntimeError("function error")
        return {"action": "started"}


@pytest.fixture
def account(aws, emulator):
    """The desired-state parameter and the endpoint the inference stack's rules name (traffic unset)."""
    ssm = aws.client("ssm")
    ssm.put_parameter(Name=ACTIVE, Value="v1", Type="String", Description="champion model version")
    ssm.put_parameter(Name=UNWATCHED, Value="x", Type="String")
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model(ModelName="model-v1", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    for config in ("config-1", "config-2"):
        sagemaker.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "ModelA",
                    "ModelName": "model-v1",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": 1.0,
                }
            ],
        )
    sagemaker.create_endpoint(
        EndpointName=ENDPOINT,
        EndpointConfigName="config-1",
        Tags=[{"Key": "Project", "Value": "ml-pipeline"}],
    )
    return aws


def dispatcher_for(session, rules, functions, *, sagemaker=None, dead=None, **options) -> EventDispatcher:
    names = dict(options.pop("names", {}))
    return EventDispatcher(
        rules,
        ssm=session.client("ssm"),
        sagemaker=sagemaker or session.client("sagemaker"),
        s3=session.client("s3"),
        stepfunctions=session.client("stepfunctions"),
        invoke=functions.invoke,
        resolve=lambda _stack, logical_id: names[logical_id],
        account=ACCOUNT,
        region=REGION,
        clock=lambda: NOW,
        dead_letter=options.pop("dead_letter", None if dead is None else dead.append),
        **options,
    )


@pytest.fixture
def stage_dispatcher(account, templates):
    """The dispatcher as the stage builds it from the synthesized templates, its baseline taken."""
    functions = Functions()
    dispatcher = dispatcher_for(
        account,
        event_rules(templates),
        functions,
        names=function_names(templates),
        buckets=event_buckets(templates),
    )
    assert dispatcher.poll() == []
    return dispatcher, functions


def overwrite(session, name: str, value: str) -> None:
    session.client("ssm").put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


# --- hand-written templates for what the synthesized one does not have ----------------------------

FUNCTION = {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "fn-physical"}}
QUEUE = {"Type": "AWS::SQS::Queue", "Properties": {}}
PERMISSION = {
    "Type": "AWS::Lambda::Permission",
    "Properties": {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Fn::GetAtt": ["Fn", "Arn"]},
        "Principal": "events.amazonaws.com",
    },
}


def rule(name: str, *targets: dict, pattern=None, schedule=None, state="ENABLED") -> dict:
    props: dict = {"Name": name, "State": state, "Targets": list(targets)}
    if pattern is not None:
        props["EventPattern"] = pattern
    if schedule is not None:
        props["ScheduleExpression"] = schedule
    return {"Type": "AWS::Events::Rule", "Properties": props}


def to_function(target_id: str = "T0", **extra) -> dict:
    return {"Id": target_id, "Arn": {"Fn::GetAtt": ["Fn", "Arn"]}, **extra}


def hand_template(**rules: dict) -> dict[str, dict]:
    return {"hand": {"Resources": {"Fn": FUNCTION, "Queue": QUEUE, "Permission": PERMISSION, **rules}}}


def ssm_pattern(*names: str, operations=("Create", "Update", "Delete")) -> dict:
    return {
        "source": ["aws.ssm"],
        "detail-type": ["Parameter Store Change"],
        "detail": {"name": list(names), "operation": list(operations)},
    }


# --- event_rules --------------------------------------------------------------------------------


def test_the_batch_rules_are_read_from_the_synthesized_template(templates):
    rules = {r.name: r for r in event_rules(templates) if r.stack_name == BATCH}
    assert set(rules) == {SCHEDULE_RULE, INPUT_RULE}
    schedule, created = rules[SCHEDULE_RULE], rules[INPUT_RULE]
    assert schedule.schedule_expression == get_config("local").batch.schedule
    assert schedule.event_pattern is None
    pattern = created.event_pattern
    assert pattern is not None
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"] == {"key": [{"prefix": get_config("local").batch.input_prefix}]}


def test_the_inference_rules_are_read_from_the_synthesized_template(templates):
    rules = {r.name: r for r in event_rules(templates)}
    assert {r.stack_name for r in rules.values()} == {INFERENCE, BATCH, TRAINING, OBSERVABILITY}
    rules = {name: rule for name, rule in rules.items() if rule.stack_name == INFERENCE}
    assert set(rules) == {DESIRED_RULE, ENDPOINT_RULE, STANDBY_RULE}
    desired, endpoint, standby = rules[DESIRED_RULE], rules[ENDPOINT_RULE], rules[STANDBY_RULE]
    assert (
        standby.schedule_expression == f"rate({get_config('local').lifecycle.standby_check_minutes} minutes)"
    )
    assert standby.event_pattern is None
    assert desired.enabled
    assert endpoint.enabled
    assert desired.schedule_expression is None
    assert desired.event_bus == "default"
    assert desired.event_pattern == {
        "source": ["aws.ssm"],
        "detail-type": ["Parameter Store Change"],
        "detail": {"name": [ACTIVE, TRAFFIC], "operation": ["Create", "Update"]},
    }
    assert endpoint.event_pattern == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Endpoint State Change"],
        "detail": {"EndpointName": [ENDPOINT]},
    }
    for spec in (desired, endpoint, standby):
        (target,) = spec.targets
        assert target.function_logical_id == deploy_function_id(templates)
        assert target.unsupported is None
        assert target.retry_policy
        assert target.maximum_retry_attempts == 3
        assert target.dead_letter_arn is not None
        assert target.dead_letter_arn.startswith("DeployEventsDeadLetters")
        assert target.invoke_permission, "CDK grants events.amazonaws.com the invoke"


def test_other_target_types_are_recorded_as_unsupported_with_their_arn():
    templates = hand_template(
        Rule=rule(
            "mixed",
            to_function("ToFunction"),
            {"Id": "ToQueue", "Arn": {"Fn::GetAtt": ["Queue", "Arn"]}},
            {"Id": "ToLiteral", "Arn": "arn:aws:sns:us-east-1:123456789012:topic"},
            to_function(
                "Reserved", InputTransformer={"InputPathsMap": {"aws.x": "$.id"}, "InputTemplate": "<aws.x>"}
            ),
            pattern={"source": ["custom"]},
        )
    )
    (spec,) = event_rules(templates)
    function, queue, literal, transformed = spec.targets
    assert function.unsupported is None
    assert not function.retry_policy
    assert function.maximum_retry_attempts == 185, "AWS's default without a RetryPolicy"
    assert function.dead_letter_arn is None
    assert (queue.function_logical_id, queue.arn) == (None, "Queue.Arn")
    assert queue.unsupported is not None
    assert (literal.function_logical_id, literal.arn) == (None, "arn:aws:sns:us-east-1:123456789012:topic")
    assert transformed.function_logical_id == "Fn"
    assert transformed.unsupported is not None
    assert "InputTransformer.InputPathsMap key 'aws.x' may not start with aws." in transformed.unsupported


def test_a_function_without_an_events_permission_is_flagged():
    templates = hand_template(Rule=rule("r", to_function(), pattern={"source": ["custom"]}))
    del templates["hand"]["Resources"]["Permission"]
    (spec,) = event_rules(templates)
    assert not spec.targets[0].invoke_permission
    dispatcher = dispatcher_for_fakes(event_rules(templates))
    assert any("WARNING: no permission for events.amazonaws.com" in line for line in dispatcher.describe())


# --- matches ------------------------------------------------------------------------------------

EVENT = {
    "source": "aws.ssm",
    "detail-type": "Parameter Store Change",
    "detail": {
        "name": "/ml/active",
        "operation": "Update",
        "version": 3,
        "size": 4.5,
        "tags": ["blue", "green"],
        "ip": "10.0.1.7",
        "nested": {"flag": True, "none": None},
        "items": [{"id": "x"}, {"id": "y"}],
    },
}


def detail(**fields) -> dict:
    return {"detail": fields}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": ["aws.ssm"]}, True),
        ({"source": ["aws.s3"]}, False),
        ({"source": ["aws.ssm"], "detail-type": ["Other"]}, False),  # every field must match
        (detail(operation=["Create", "Update"]), True),
        (detail(operation=["Delete"]), False),
        (detail(missing=["x"]), False),
        # nested objects, types and null
        (detail(nested={"flag": [True]}), True),
        (detail(nested={"flag": [False]}), False),
        (detail(nested={"flag": ["true"]}), False),
        (detail(nested={"none": [None]}), True),
        (detail(nested={"flag": [None]}), False),
        (detail(version=[3.0]), True),
        (detail(version=["3"]), False),
        # prefix / suffix / equals-ignore-case / wildcard
        (detail(name=[{"prefix": "/ml/"}]), True),
        (detail(name=[{"prefix": "/other/"}]), False),
        (detail(version=[{"prefix": "3"}]), False),
        (detail(name=[{"prefix": {"equals-ignore-case": "/ML/"}}]), True),
        (detail(name=[{"prefix": {"equals-ignore-case": "/XL/"}}]), False),
        (detail(name=[{"suffix": "/active"}]), True),
        (detail(name=[{"suffix": "/traffic"}]), False),
        (detail(operation=[{"equals-ignore-case": "UPDATE"}]), True),
        (detail(operation=[{"equals-ignore-case": "CREATE"}]), False),
        (detail(name=[{"wildcard": "/ml/*"}]), True),
        (detail(name=[{"wildcard": "/ml/*/x"}]), False),
        # anything-but
        (detail(operation=[{"anything-but": ["Create", "Delete"]}]), True),
        (detail(operation=[{"anything-but": ["Update"]}]), False),
        (detail(operation=[{"anything-but": "Create"}]), True),
        (detail(operation=[{"anything-but": "Update"}]), False),
        (detail(version=[{"anything-but": 4}]), True),
        (detail(version=[{"anything-but": 3}]), False),
        (detail(name=[{"anything-but": {"prefix": "/x/"}}]), True),
        (detail(name=[{"anything-but": {"prefix": "/ml/"}}]), False),
        (detail(missing=[{"anything-but": "x"}]), False),  # a missing field matches only exists: false
        # exists
        (detail(name=[{"exists": True}]), True),
        (detail(missing=[{"exists": True}]), False),
        (detail(missing=[{"exists": False}]), True),
        (detail(name=[{"exists": False}]), False),
        ({"absent": {"child": [{"exists": False}]}}, True),
        ({"absent": {"child": [{"exists": True}]}}, False),
        # numeric
        (detail(version=[{"numeric": [">", 0, "<=", 5]}]), True),
        (detail(version=[{"numeric": [">", 3]}]), False),
        (detail(version=[{"numeric": ["=", 3]}]), True),
        (detail(size=[{"numeric": ["<", 5]}]), True),
        (detail(size=[{"numeric": [">=", 5]}]), False),
        (detail(name=[{"numeric": [">", 0]}]), False),  # a string is not a number
        (detail(nested={"flag": [{"numeric": [">", 0]}]}), False),  # nor is a boolean
        # cidr
        (detail(ip=[{"cidr": "10.0.0.0/16"}]), True),
        (detail(ip=[{"cidr": "10.1.0.0/16"}]), False),
        # arrays in the event: any element
        (detail(tags=["green"]), True),
        (detail(tags=["red"]), False),
        (detail(tags=[{"anything-but": "blue"}]), True),  # green is not blue
        (detail(tags=[{"anything-but": ["blue", "green"]}]), False),
        (detail(items={"id": ["y"]}), True),
        (detail(items={"id": ["z"]}), False),
        # a list mixing exact values and operators
        (detail(name=["/nope", {"prefix": "/ml/"}]), True),
        (detail(name=["/nope", {"prefix": "/no/"}, {"numeric": [">", 1]}]), False),
        # $or
        ({"$or": [{"source": ["aws.s3"]}, detail(operation=["Update"])]}, True),
        ({"$or": [{"source": ["aws.s3"]}, detail(operation=["Create"])]}, False),
    ],
)
def test_event_pattern_matching(pattern, expected):
    assert matches(pattern, EVENT) is expected
    assert check_pattern(pattern) is None


@pytest.mark.parametrize(
    "pattern",
    [
        {"source": "aws.ssm"},  # a leaf must be a list
        {"x": [{"regex": "a"}]},
        {"x": [{"numeric": [">"]}]},
        {"x": [{"numeric": ["!", 1]}]},
        {"x": [{"exists": "yes"}]},
        {"x": [{"prefix": 5}]},
        {"x": [{"prefix": "a", "suffix": "b"}]},
        {"x": [{"anything-but": {"numeric": [">", 1]}}]},
        {"$or": []},
    ],
)
def test_an_invalid_pattern_is_reported_not_silently_unmatched(pattern):
    assert check_pattern(pattern) is not None
    with pytest.raises(ValueError):  # noqa: PT011 - the message is the pattern's problem, checked above
        matches(pattern, {"x": 1, "source": "aws.ssm"})


def test_service_status_spelling():
    assert [event_status(s) for s in ("InService", "Updating", "Failed", "SystemUpdating")] == [
        "IN_SERVICE",
        "UPDATING",
        "FAILED",
        "SYSTEM_UPDATING",
    ]


# --- SSM: Parameter Store Change ----------------------------------------------------------------


def test_the_first_poll_is_the_baseline(account, templates):
    functions = Functions()
    dispatcher = dispatcher_for(account, event_rules(templates), functions, names=function_names(templates))
    assert dispatcher.parameters == (ACTIVE, TRAFFIC)
    assert dispatcher.endpoints == (ENDPOINT,)
    assert dispatcher.poll() == [], "an existing parameter and endpoint are not events"
    assert dispatcher.poll() == []
    assert functions.calls == []


def test_a_desired_parameter_update_invokes_the_deploy_function_once(account, templates, stage_dispatcher):
    dispatcher, functions = stage_dispatcher
    overwrite(account, ACTIVE, "v2")
    (delivery,) = dispatcher.poll()
    assert delivery.rule == DESIRED_RULE
    assert delivery.function == DEPLOY_FUNCTION
    assert (delivery.outcome, delivery.attempts, delivery.error) == ("succeeded", 1, None)
    assert delivery.result == {"action": "started"}
    assert not delivery.sent_to_dead_letter
    ((name, event),) = functions.calls
    assert name == DEPLOY_FUNCTION
    assert uuid.UUID(event["id"]).version == 4
    assert delivery.event_id == event["id"]
    assert {key: value for key, value in event.items() if key != "id"} == {
        "version": "0",
        "detail-type": "Parameter Store Change",
        "source": "aws.ssm",
        "account": ACCOUNT,
        "time": "2026-11-24T12:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{ACTIVE}"],
        "detail": {
            "operation": "Update",
            "name": ACTIVE,
            "type": "String",
            "description": "champion model version",
        },
    }
    assert dispatcher.poll() == [], "one change, one event"
    assert dispatcher.deliveries == [delivery]


def test_a_parameter_created_after_start_up_is_a_create(account, stage_dispatcher):
    dispatcher, functions = stage_dispatcher
    account.client("ssm").put_parameter(Name=TRAFFIC, Value='{"challenger": "v2"}', Type="String")
    (delivery,) = dispatcher.poll()
    ((_, event),) = functions.calls
    assert event["detail"] == {"operation": "Create", "name": TRAFFIC, "type": "String", "description": ""}
    assert delivery.detail_type == "Parameter Store Change"


def test_a_parameter_the_pattern_does_not_name_is_not_delivered(account, stage_dispatcher):
    dispatcher, functions = stage_dispatcher
    overwrite(account, UNWATCHED, "y")
    assert dispatcher.poll() == []
    other = dispatcher.envelope(
        "aws.ssm", "Parameter Store Change", {"operation": "Update", "name": UNWATCHED, "type": "String"}
    )
    assert dispatcher.emit(other) == []
    assert functions.calls == []
    named = dispatcher.envelope(
        "aws.ssm", "Parameter Store Change", {"operation": "Update", "name": TRAFFIC, "type": "String"}
    )
    (delivery,) = dispatcher.emit(named)
    assert (delivery.rule, delivery.function) == (DESIRED_RULE, DEPLOY_FUNCTION)
    assert functions.calls == [(DEPLOY_FUNCTION, named)]


def test_deletes_are_detected_and_matched_against_the_operations(account, templates):
    rules = event_rules(templates) + event_rules(
        hand_template(Everything=rule("every-operation", to_function(), pattern=ssm_pattern(ACTIVE)))
    )
    names = {**function_names(templates), "Fn": "fn-physical"}
    functions = Functions()
    dispatcher = dispatcher_for(account, rules, functions, names=names)
    dispatcher.poll()
    ssm = account.client("ssm")
    ssm.delete_parameter(Name=ACTIVE)
    (delivery,) = dispatcher.poll()
    assert (delivery.rule, delivery.function) == ("every-operation", "fn-physical"), (
        "the inference rule takes Create and Update only"
    )
    assert functions.calls[0][1]["detail"] == {
        "operation": "Delete",
        "name": ACTIVE,
        "type": "String",
        "description": "champion model version",
    }
    ssm.put_parameter(Name=ACTIVE, Value="v1", Type="String")
    assert [(d.rule, d.function) for d in dispatcher.poll()] == [
        (DESIRED_RULE, DEPLOY_FUNCTION),
        ("every-operation", "fn-physical"),
    ]


def test_a_parameter_deleted_and_created_again_between_polls_is_a_delete_then_a_create(account):
    rules = event_rules(
        hand_template(Every=rule("every-operation", to_function(), pattern=ssm_pattern(ACTIVE)))
    )
    functions = Functions()
    dispatcher = dispatcher_for(account, rules, functions, names={"Fn": "fn-physical"})
    dispatcher.poll()
    ssm = account.client("ssm")
    ssm.delete_parameter(Name=ACTIVE)
    ssm.put_parameter(Name=ACTIVE, Value="v9", Type="String")  # version 1 again
    dispatcher.poll()
    assert [event["detail"]["operation"] for _, event in functions.calls] == ["Delete", "Create"]


# --- SageMaker: Endpoint State Change -----------------------------------------------------------


def endpoint_events(functions: Functions) -> list[dict]:
    return [event for _, event in functions.calls if event["source"] == "aws.sagemaker"]


def test_an_endpoint_update_delivers_updating_then_in_service(account, stage_dispatcher):
    dispatcher, functions = stage_dispatcher
    account.client("sagemaker").update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-2")
    (updating,) = dispatcher.poll()
    (in_service,) = dispatcher.poll()
    assert dispatcher.poll() == []
    assert {(d.rule, d.function, d.outcome) for d in (updating, in_service)} == {
        (ENDPOINT_RULE, DEPLOY_FUNCTION, "succeeded")
    }
    first, second = endpoint_events(functions)
    assert first["detail-type"] == "SageMaker Endpoint State Change"
    assert first["resources"] == [ENDPOINT_ARN]
    assert (first["account"], first["region"], first["time"]) == (ACCOUNT, REGION, "2026-11-24T12:00:00Z")
    assert first["detail"]["EndpointStatus"] == "UPDATING"
    assert second["detail"]["EndpointStatus"] == "IN_SERVICE"
    assert second["detail"]["EndpointConfigName"] == "config-2"
    assert set(second["detail"]) == {
        "EndpointName",
        "EndpointArn",
        "EndpointConfigName",
        "ProductionVariants",
        "EndpointStatus",
        "CreationTime",
        "LastModifiedTime",
        "Tags",
    }
    assert second["detail"]["EndpointArn"] == ENDPOINT_ARN
    assert second["detail"]["Tags"] == {"Project": "ml-pipeline"}
    assert second["detail"]["ProductionVariants"][0]["VariantName"] == "ModelA"
    assert isinstance(second["detail"]["LastModifiedTime"], float), "epoch milliseconds, as the service sends"
    assert second["detail"]["LastModifiedTime"] >= first["detail"]["LastModifiedTime"]
    json.dumps(second)  # an event is JSON, as the function receives it


def test_an_update_another_caller_saw_first_is_still_delivered(account, stage_dispatcher):
    dispatcher, functions = stage_dispatcher
    sagemaker = account.client("sagemaker")
    sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-2")
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "Updating"
    (delivery,) = dispatcher.poll()  # InService again, but on another config
    assert delivery.rule == ENDPOINT_RULE
    (event,) = endpoint_events(functions)
    assert event["detail"]["EndpointStatus"] == "IN_SERVICE"
    assert event["detail"]["EndpointConfigName"] == "config-2"


def test_a_rolled_back_update_carries_the_failure_reason(account, emulator, stage_dispatcher):
    dispatcher, functions = stage_dispatcher
    emulator.schedule_rollback(ENDPOINT, "alarm fired while baking", account_id=ACCOUNT, region=REGION)
    account.client("sagemaker").update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-2")
    dispatcher.poll()
    dispatcher.poll()
    updating, rolled_back = endpoint_events(functions)
    assert "FailureReason" not in updating["detail"]
    assert rolled_back["detail"]["EndpointStatus"] == "IN_SERVICE"
    assert rolled_back["detail"]["EndpointConfigName"] == "config-1"
    assert rolled_back["detail"]["FailureReason"] == "alarm fired while baking"


class SageMakerStates:
    """A SageMaker client whose endpoint goes through ``states`` (None: gone; an exception: raised)."""

    def __init__(self, *states) -> None:
        self.states = list(states)

    def describe_endpoint(self, EndpointName: str) -> dict:  # noqa: N803 - boto3's keyword
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(state, Exception):
            raise state
        if state is None:
            message = f"Could not find endpoint '{ENDPOINT_ARN}'."
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": message}}, "DescribeEndpoint"
            )
        status, config, *reason = state
        described = {
            "EndpointName": EndpointName,
            "EndpointArn": ENDPOINT_ARN,
            "EndpointConfigName": config,
            "ProductionVariants": [{"VariantName": "ModelA", "CurrentWeight": 1.0}],
            "EndpointStatus": status,
            "CreationTime": datetime(2026, 11, 24, 11, 0, tzinfo=UTC),
            "LastModifiedTime": datetime(2026, 11, 24, 11, 30, tzinfo=UTC),
        }
        return {**described, "FailureReason": reason[0]} if reason else described

    def list_tags(self, ResourceArn: str) -> dict:  # noqa: N803 - boto3's keyword
        return {"Tags": []}


def test_failed_and_deleted_endpoints_are_delivered(account, templates):
    sagemaker = SageMakerStates(
        ("InService", "config-1"),
        ("Updating", "config-1"),
        ("Failed", "config-1", "image not found"),
        None,
        None,
    )
    functions = Functions()
    dispatcher = dispatcher_for(
        account, event_rules(templates), functions, sagemaker=sagemaker, names=function_names(templates)
    )
    for _ in range(5):
        dispatcher.poll()
    statuses = [event["detail"]["EndpointStatus"] for event in endpoint_events(functions)]
    assert statuses == ["UPDATING", "FAILED", "DELETING"]
    failed = endpoint_events(functions)[1]["detail"]
    assert failed["FailureReason"] == "image not found"
    assert failed["CreationTime"] == datetime(2026, 11, 24, 11, 0, tzinfo=UTC).timestamp() * 1000


def test_a_failed_read_keeps_the_state_so_the_next_poll_reports_the_change(account, templates):
    throttled = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "Describe"
    )
    sagemaker = SageMakerStates(("InService", "config-1"), throttled, ("Updating", "config-2"))
    functions = Functions()
    dispatcher = dispatcher_for(
        account, event_rules(templates), functions, sagemaker=sagemaker, names=function_names(templates)
    )
    dispatcher.poll()
    overwrite(account, ACTIVE, "v2")
    with pytest.raises(ClientError, match="Rate exceeded"):
        dispatcher.poll()
    assert functions.calls == []
    deliveries = dispatcher.poll()
    assert [d.rule for d in deliveries] == [DESIRED_RULE, ENDPOINT_RULE], "neither change was lost"


# --- retries, dead letters, disabled rules ------------------------------------------------------


def test_a_failing_target_is_retried_then_dead_lettered(account, templates):
    """The dead letter goes to the target's queue as EventBridge sends it: the event, and why."""
    functions, sqs = Functions(failures=100), account.client("sqs")
    queue = sqs.create_queue(QueueName="deploy-events-dlq")["QueueUrl"]
    names = {**function_names(templates), "DeployEventsDeadLetters5B72135B": queue}
    dispatcher = dispatcher_for(
        account,
        event_rules(templates),
        functions,
        names=names,
        dead_letter=sqs_dead_letters(sqs, lambda _stack, logical_id: names[logical_id]),
    )
    dispatcher.poll()
    overwrite(account, ACTIVE, "v2")
    (delivery,) = dispatcher.poll()
    assert delivery.outcome == "failed"
    assert delivery.attempts == 4, "the first attempt and the template's MaximumRetryAttempts: 3"
    assert delivery.error == "RuntimeError: function error"
    assert delivery.sent_to_dead_letter
    assert len(functions.calls) == 4
    (message,) = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"])["Messages"]
    event = json.loads(message["Body"])
    assert event["id"] == delivery.event_id
    assert event["detail"]["name"] == ACTIVE
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes == {
        "RULE_ARN": f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{DESIRED_RULE}",
        "TARGET_ARN": DEPLOY_FUNCTION,
        "ERROR_CODE": "RuntimeError",
        "ERROR_MESSAGE": "RuntimeError: function error",
        "EXHAUSTED_RETRY_CONDITION": "MaximumRetryAttempts",
        "RETRY_ATTEMPTS": "3",
    }


def test_a_target_that_recovers_on_a_retry_succeeds(account, templates):
    functions, dead = Functions(failures=2), list[tuple]()
    dispatcher = dispatcher_for(
        account, event_rules(templates), functions, dead=dead, names=function_names(templates)
    )
    dispatcher.poll()
    overwrite(account, ACTIVE, "v2")
    (delivery,) = dispatcher.poll()
    assert (delivery.outcome, delivery.attempts, delivery.sent_to_dead_letter) == ("succeeded", 3, False)
    assert dead == []


def test_without_retry_policy_or_dead_letter_queue_the_retries_are_capped_and_the_event_dropped(account):
    rules = event_rules(hand_template(R=rule("no-policy", to_function(), pattern=ssm_pattern(ACTIVE))))
    functions, dead = Functions(failures=1000), list[tuple]()
    dispatcher = dispatcher_for(account, rules, functions, dead=dead, names={"Fn": "fn-physical"})
    dispatcher.poll()
    overwrite(account, ACTIVE, "v2")
    (delivery,) = dispatcher.poll()
    assert delivery.attempts == 1 + MAX_LOCAL_RETRIES, "AWS's 185 retries, capped locally"
    assert (delivery.outcome, delivery.sent_to_dead_letter) == ("failed", False)
    assert dead == []


def test_a_function_that_cannot_be_resolved_is_a_failed_delivery(account, templates):
    functions, dead = Functions(), list[tuple]()
    dispatcher = dispatcher_for(account, event_rules(templates), functions, dead=dead, names={})
    dispatcher.poll()
    overwrite(account, ACTIVE, "v2")
    (delivery,) = dispatcher.poll()
    assert (delivery.outcome, delivery.attempts, delivery.function) == ("failed", 0, None)
    assert delivery.error is not None
    assert delivery.error.startswith("KeyError")
    assert delivery.sent_to_dead_letter
    assert len(dead) == 1
    assert functions.calls == []


def test_a_disabled_rule_is_not_delivered_to(account, templates):
    disabled = copy.deepcopy(templates)
    for resource in disabled[INFERENCE]["Resources"].values():
        if resource["Type"] == "AWS::Events::Rule" and resource["Properties"]["Name"] == DESIRED_RULE:
            resource["Properties"]["State"] = "DISABLED"
    functions = Functions()
    dispatcher = dispatcher_for(account, event_rules(disabled), functions, names=function_names(templates))
    dispatcher.poll()
    overwrite(account, ACTIVE, "v2")
    assert dispatcher.poll() == []
    change = dispatcher.envelope(
        "aws.ssm", "Parameter Store Change", {"operation": "Update", "name": ACTIVE, "type": "String"}
    )
    assert dispatcher.emit(change) == []
    assert functions.calls == []
    assert f"rule {DESIRED_RULE}: not driven (DISABLED)" in dispatcher.describe()
    account.client("sagemaker").update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="config-2")
    assert [d.rule for d in dispatcher.poll()] == [ENDPOINT_RULE], "the other rule still runs"


# --- describe, schedules, inputs, invalid patterns ----------------------------------------------


def test_describe_lists_what_each_rule_listens_to_and_its_target(stage_dispatcher, templates):
    dispatcher, _ = stage_dispatcher
    lines = dispatcher.describe()
    deploy_id = deploy_function_id(templates)
    target = (
        f"  -> function {DEPLOY_FUNCTION} [{deploy_id}], retries 3, dead letters to DeployEventsDeadLetters"
    )
    assert lines[0] == f"rule {DESIRED_RULE}: aws.ssm Parameter Store Change of {ACTIVE}, {TRAFFIC} (polled)"
    assert lines[1].startswith(target)
    assert lines[2] == (
        f"rule {ENDPOINT_RULE}: aws.sagemaker SageMaker Endpoint State Change of {ENDPOINT} (polled)"
    )
    assert lines[3].startswith(target)
    minutes = get_config("local").lifecycle.standby_check_minutes
    assert lines[4] == (
        f"rule {STANDBY_RULE}: schedule rate({minutes} minutes): "
        f"runs every {minutes * 60} s (run_due_schedules)"
    )
    assert lines[5].startswith(target)
    # the batch layer's rules: the daily cron schedule runs on demand; new objects under the input
    # prefix of the data bucket (EventBridge notifications on) are polled; both start the state machine
    config = get_config("local")
    assert lines[6] == (
        f"rule {SCHEDULE_RULE}: schedule {config.batch.schedule}: "
        "on demand only (mlpipe events run-schedule, run_schedule): cron is not on a timer here"
    )
    machine = "  -> state machine not resolved [RunStateMachine106B9D3D], retries 3, dead letters to Events"
    assert lines[7].startswith(machine)
    assert lines[7].endswith("constant Input, role RunStateMachineEventsRoleFC786A36.Arn")
    assert lines[8] == (
        f"rule {INPUT_RULE}: aws.s3 Object Created in {config.bucket_name('data')} "
        f"under {config.batch.input_prefix} (polled)"
    )
    assert lines[9].startswith(machine)
    assert lines[9].endswith(
        'InputTransformer {"bucket":<detail-bucket-name>,"prefix":<detail-object-key>}, '
        "role RunStateMachineEventsRoleFC786A36.Arn"
    )
    assert not any("not driven" in line or "not emitted" in line for line in lines[6:10])
    # the observability layer's rules: the drift monitor's schedule runs on the clock like the
    # standby check; the Batch job-failed rule's SNS target is not invoked locally
    drift = next(i for i, line in enumerate(lines) if line.startswith(f"rule {DRIFT_RULE}: "))
    assert lines[drift].startswith(f"rule {DRIFT_RULE}: schedule rate(1 hour): runs every 3600 s")
    job_failed = next(i for i, line in enumerate(lines) if line.startswith(f"rule {JOB_FAILED_RULE}: "))
    assert "not invoked" in lines[job_failed + 1]
    # the training layer's three triggers, each to the runs function (which owns the run lock)
    runs_target = f"  -> function {TRAINING_RUNS_FUNCTION} ["
    for rule in (TRAINING_SCHEDULE_RULE, TRAINING_DRIFT_RULE, TRAINING_DATA_RULE):
        index = next(i for i, line in enumerate(lines) if line.startswith(f"rule {rule}: "))
        assert lines[index + 1].startswith(runs_target)
    assert len(lines) == 20


def fake_ssm():
    class Ssm:
        def describe_parameters(self, **_: object) -> dict:
            return {"Parameters": []}

    return Ssm()


class FakeS3:
    """No objects anywhere."""

    def list_objects_v2(self, **_: object) -> dict:
        return {"Contents": [], "IsTruncated": False}


class StateMachines:
    """A Step Functions client that records StartExecution; the first ``failures`` calls are refused."""

    def __init__(self, failures: int = 0) -> None:
        self.started: list[dict] = []
        self.failures = failures

    def start_execution(self, **request) -> dict:
        self.started.append(request)
        if self.failures:
            self.failures -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "StartExecution"
            )
        arn = request["stateMachineArn"].replace(":stateMachine:", ":execution:") + f":{request['name']}"
        return {"executionArn": arn, "startDate": NOW}


def dispatcher_for_fakes(rules, functions=None, **options) -> EventDispatcher:
    return EventDispatcher(
        rules,
        ssm=fake_ssm(),
        sagemaker=SageMakerStates(None),
        s3=options.pop("s3", FakeS3()),
        stepfunctions=options.pop("stepfunctions", StateMachines()),
        invoke=(functions or Functions()).invoke,
        resolve=lambda _stack, logical_id: {"Fn": "fn-physical", "Machine": MACHINE_ARN}[logical_id],
        account=ACCOUNT,
        region=REGION,
        **{"clock": lambda: NOW, **options},
    )


def test_schedule_rules_run_on_demand_and_only_rate_rules_on_the_clock():
    templates = hand_template(
        Hourly=rule("hourly", to_function(), schedule="rate(1 hour)"),
        Paused=rule("paused", to_function(), schedule="cron(0 12 * * ? *)", state="DISABLED"),
    )
    functions = Functions()
    dispatcher = dispatcher_for_fakes(event_rules(templates), functions)
    assert (
        dispatcher.describe()[0]
        == "rule hourly: schedule rate(1 hour): runs every 3600 s (run_due_schedules)"
    )
    assert dispatcher.describe()[2].startswith(
        "rule paused: schedule cron(0 12 * * ? *), DISABLED: not driven"
    )
    assert dispatcher.poll() == []
    (delivery,) = dispatcher.run_schedule("hourly")
    assert (delivery.rule, delivery.function, delivery.outcome) == ("hourly", "fn-physical", "succeeded")
    ((_, event),) = functions.calls
    assert (event["source"], event["detail-type"], event["detail"]) == ("aws.events", "Scheduled Event", {})
    assert event["resources"] == [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/hourly"]
    assert dispatcher.run_schedule("paused") == []
    with pytest.raises(ValueError, match="not a schedule rule"):
        dispatcher.run_schedule("nope")


def test_targets_get_their_input_or_input_path_and_unsupported_ones_are_recorded():
    templates = hand_template(
        Custom=rule(
            "custom",
            to_function("Whole"),
            to_function("Constant", Input='{"fixed": true}'),
            to_function("DetailOnly", InputPath="$.detail"),
            {"Id": "ToQueue", "Arn": {"Fn::GetAtt": ["Queue", "Arn"]}},
            pattern={"source": ["my.app"], "detail": {"kind": [{"prefix": "order-"}]}},
        )
    )
    functions = Functions()
    dispatcher = dispatcher_for_fakes(event_rules(templates), functions)
    assert any("not emitted locally (inject with emit)" in line for line in dispatcher.describe())
    assert dispatcher.emit(dispatcher.envelope("my.app", "Thing", {"kind": "invoice-1"})) == []
    event = dispatcher.envelope("my.app", "Thing", {"kind": "order-1"})
    deliveries = dispatcher.emit(event)
    assert [(d.target_id, d.outcome) for d in deliveries] == [
        ("Whole", "succeeded"),
        ("Constant", "succeeded"),
        ("DetailOnly", "succeeded"),
        ("ToQueue", "unsupported"),
    ]
    assert [payload for _, payload in functions.calls] == [event, {"fixed": True}, {"kind": "order-1"}]


def test_a_rule_with_an_invalid_pattern_is_listed_not_driven_and_does_not_break_polling():
    templates = hand_template(Broken=rule("broken", to_function(), pattern={"source": [{"regex": ".*"}]}))
    dispatcher = dispatcher_for_fakes(event_rules(templates))
    line, target = dispatcher.describe()
    assert target.startswith("  -> function fn-physical [Fn]")
    assert line.startswith("rule broken: not driven (event pattern: unsupported pattern operator 'regex'")
    assert dispatcher.emit(dispatcher.envelope("anything", "Thing", {})) == []


def test_rules_on_a_custom_bus_get_no_service_events():
    templates = hand_template(OnBus=rule("on-bus", to_function(), pattern=ssm_pattern(ACTIVE)))
    templates["hand"]["Resources"]["OnBus"]["Properties"]["EventBusName"] = "orders"
    dispatcher = dispatcher_for_fakes(event_rules(templates))
    assert dispatcher.parameters == ()
    assert (
        dispatcher.describe()[0] == "rule on-bus: not driven (event bus orders; service events go to default)"
    )


def test_rate_rules_run_once_per_period_from_the_start_and_cron_rules_never_on_the_clock():
    templates = hand_template(
        Often=rule("often", to_function(), schedule="rate(5 minutes)"),
        Daily=rule("daily", to_function(), schedule="cron(0 2 * * ? *)"),
    )
    now = {"t": NOW}
    functions = Functions()
    dispatcher = dispatcher_for_fakes(event_rules(templates), functions, clock=lambda: now["t"])
    assert dispatcher.run_due_schedules() == [], "a new rule first runs one period after it exists"
    now["t"] = NOW + timedelta(minutes=5)
    assert [d.rule for d in dispatcher.run_due_schedules()] == ["often"]
    assert dispatcher.run_due_schedules() == []
    now["t"] = NOW + timedelta(minutes=21)  # three periods missed: one run, the next on the grid
    assert [d.rule for d in dispatcher.run_due_schedules()] == ["often"]
    now["t"] = NOW + timedelta(minutes=24)
    assert dispatcher.run_due_schedules() == []
    now["t"] = NOW + timedelta(minutes=25)
    assert [d.rule for d in dispatcher.run_due_schedules()] == ["often"]
    assert len(functions.calls) == 3


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60.0),
        ("rate(5 minutes)", 300.0),
        ("rate(2 hours)", 7200.0),
        ("rate(1 day)", 86400.0),
        ("cron(0 2 * * ? *)", None),
        ("rate(five minutes)", None),
        (None, None),
    ],
)
def test_rate_seconds(expression, seconds):
    assert rate_seconds(expression) == seconds


# --- input transformers (shared.eventbridge) ------------------------------------------------------

S3_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "e-1",
    "detail-type": "Object Created",
    "source": "aws.s3",
    "account": ACCOUNT,
    "time": "2026-11-24T12:00:00Z",
    "region": REGION,
    "resources": ["arn:aws:s3:::bucket-1"],
    "detail": {
        "bucket": {"name": "bucket-1"},
        "object": {"key": "batch/input/a.csv", "size": 5, "etag": "abc"},
        "tags": {"team": "ml"},
        "quoted": 'say "hi"',
    },
}
PATHS = {
    "bucket": "$.detail.bucket.name",
    "key": "$.detail.object.key",
    "size": "$.detail.object.size",
    "object": "$.detail.object",
    "tags": "$.detail.tags",
    "first": "$.resources[0]",
    "missing": "$.detail.nothing",
    "quoted": "$.detail.quoted",
}


def transformed(template: str, paths: dict | None = None):
    target = {
        "InputTransformer": {"InputPathsMap": PATHS if paths is None else paths, "InputTemplate": template}
    }
    return target_input(
        target, S3_EVENT, rule_name="r", rule_arn="arn:r", ingestion_time="2026-11-24T12:00:01Z"
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # CDK's RuleTargetInput.from_object with EventFields: bare placeholders, strings quoted
        ('{"bucket":<bucket>,"prefix":<key>}', {"bucket": "bucket-1", "prefix": "batch/input/a.csv"}),
        ('{"size": <size>, "object": <object>}', {"size": 5, "object": S3_EVENT["detail"]["object"]}),
        ("[<first>, <size>]", ["arn:aws:s3:::bucket-1", 5]),
        # inside a JSON string: the value's text, unescaped; objects lose their quotes
        ('{"m": "<key> has <size> bytes"}', {"m": "batch/input/a.csv has 5 bytes"}),
        ('{"m": "tags <tags>"}', {"m": "tags {team:ml}"}),
        ('{"m": "say \\"<bucket>\\""}', {"m": 'say "bucket-1"'}),
        # a path that matches nothing: null as a value, nothing inside a string
        ('{"a": <missing>, "b": "[<missing>]"}', {"a": None, "b": "[]"}),
        # a <...> that names no variable is text
        ('{"a": "<other>", "b": <bucket>}', {"a": "<other>", "b": "bucket-1"}),
        # predefined variables
        ('{"rule": <aws.events.rule-name>, "arn": "<aws.events.rule-arn>"}', {"rule": "r", "arn": "arn:r"}),
        ('{"at": <aws.events.event.ingestion-time>}', {"at": "2026-11-24T12:00:01Z"}),
        ('{"whole": <aws.events.event.json>}', {"whole": S3_EVENT}),
        (
            '{"envelope": <aws.events.event>}',
            {"envelope": {k: v for k, v in S3_EVENT.items() if k != "detail"}},
        ),
        # a text template: the target gets the text
        ("<key> arrived in <bucket>", "batch/input/a.csv arrived in bucket-1"),
        ("object <object>", "object {key:batch/input/a.csv,size:5,etag:abc}"),
    ],
)
def test_the_input_transformer_fills_the_template_as_eventbridge_does(template, expected):
    assert transformed(template) == expected


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {"InputTransformer": {"InputPathsMap": PATHS, "InputTemplate": "{<key>: 1}"}},
            "used as an object key",
        ),
        (
            {"InputTransformer": {"InputPathsMap": {}, "InputTemplate": '{"m": "<aws.events.event.json>"}'}},
            "only be the value of a JSON field",
        ),
        # EventBridge does not escape: a quote inside a string breaks the JSON, the delivery fails
        (
            {"InputTransformer": {"InputPathsMap": PATHS, "InputTemplate": '{"m": "<quoted>"}'}},
            "not valid JSON",
        ),
        ({"InputTransformer": {"InputPathsMap": {"k": "$.detail[*]"}, "InputTemplate": "<k>"}}, "JSON path"),
        ({"InputTransformer": {"InputPathsMap": {"k": "detail.name"}, "InputTemplate": "<k>"}}, "JSON path"),
        ({"InputTransformer": {"InputPathsMap": {}}}, "InputTemplate is missing"),
        ({"Input": "{}", "InputPath": "$.detail"}, "one of Input, InputPath and InputTransformer"),
        ({"Input": "{not json"}, "Input is not valid JSON"),
        ({"InputPath": "$.detail.bucket[x]"}, "InputPath"),
    ],
)
def test_invalid_target_inputs_are_refused_with_the_field_named(target, message):
    with pytest.raises(TargetInputError, match=re.escape(message)):
        target_input(target, S3_EVENT, rule_name="r", rule_arn="arn:r", ingestion_time="t")


def test_input_path_reads_dot_and_index_paths():
    def at(path: str):
        return target_input({"InputPath": path}, S3_EVENT, rule_name="r", rule_arn="a", ingestion_time="t")

    assert at("$") == S3_EVENT
    assert at("$.detail.object.key") == "batch/input/a.csv"
    assert at("$.resources[0]") == "arn:aws:s3:::bucket-1"
    assert at("$.detail.none") is None


# --- state-machine targets ----------------------------------------------------------------------

MACHINE = {"Type": "AWS::StepFunctions::StateMachine", "Properties": {"StateMachineName": "machine-physical"}}
ROLE_ARN = {"Fn::GetAtt": ["MachineRole", "Arn"]}


def to_machine(target_id: str = "M0", **extra) -> dict:
    return {"Id": target_id, "Arn": {"Ref": "Machine"}, "RoleArn": ROLE_ARN, **extra}


def machine_template(*targets: dict, pattern=None, schedule=None) -> dict[str, dict]:
    templates = hand_template(R=rule("to-machine", *targets, pattern=pattern, schedule=schedule))
    templates["hand"]["Resources"]["Machine"] = MACHINE
    return templates


TRANSFORMER = {
    "InputPathsMap": {
        "detail-bucket-name": "$.detail.bucket.name",
        "detail-object-key": "$.detail.object.key",
    },
    "InputTemplate": '{"bucket":<detail-bucket-name>,"prefix":<detail-object-key>}',
}


def test_a_state_machine_target_starts_an_execution_named_by_a_uuid_with_the_transformed_input():
    templates = machine_template(
        to_machine(InputTransformer=TRANSFORMER, RetryPolicy={"MaximumRetryAttempts": 2}),
        to_function("Fn0", InputTransformer=TRANSFORMER),
        pattern={"source": ["aws.s3"], "detail-type": ["Object Created"]},
    )
    (spec,) = event_rules(templates)
    machine_target, _ = spec.targets
    assert (machine_target.state_machine_logical_id, machine_target.function_logical_id) == ("Machine", None)
    assert (machine_target.role_arn, machine_target.unsupported) == ("MachineRole.Arn", None)
    machines, functions = StateMachines(), Functions()
    dispatcher = dispatcher_for_fakes([spec], functions, stepfunctions=machines)
    assert dispatcher.describe()[1] == (
        f"  -> state machine {MACHINE_ARN} [Machine], retries 2, no dead-letter queue, InputTransformer "
        '{"bucket":<detail-bucket-name>,"prefix":<detail-object-key>}, role MachineRole.Arn'
    )
    to_machine_delivery, to_function_delivery = dispatcher.emit(S3_EVENT)
    assert (to_machine_delivery.outcome, to_machine_delivery.attempts) == ("succeeded", 1)
    assert (to_machine_delivery.state_machine, to_machine_delivery.function) == (MACHINE_ARN, None)
    ((request,),) = [machines.started]
    assert request["stateMachineArn"] == MACHINE_ARN
    assert uuid.UUID(request["name"]).version == 4
    assert json.loads(request["input"]) == {"bucket": "bucket-1", "prefix": "batch/input/a.csv"}
    assert to_machine_delivery.result["executionArn"].endswith(
        f":execution:machine-physical:{request['name']}"
    )
    assert to_function_delivery.outcome == "succeeded"
    assert functions.calls == [("fn-physical", {"bucket": "bucket-1", "prefix": "batch/input/a.csv"})]


def test_a_refused_start_is_retried_by_the_policy_then_dead_lettered():
    templates = machine_template(
        to_machine(
            RetryPolicy={"MaximumRetryAttempts": 2},
            DeadLetterConfig={"Arn": {"Fn::GetAtt": ["Queue", "Arn"]}},
            Input='{"prefix": "batch/input/"}',
        ),
        schedule="cron(0 2 * * ? *)",
    )
    dead: list[tuple] = []
    recovering = StateMachines(failures=1)
    dispatcher = dispatcher_for_fakes(
        event_rules(templates), stepfunctions=recovering, dead_letter=lambda *args: dead.append(args)
    )
    (delivery,) = dispatcher.run_schedule("to-machine")
    assert (delivery.outcome, delivery.attempts, delivery.sent_to_dead_letter) == ("succeeded", 2, False)
    assert [json.loads(r["input"]) for r in recovering.started] == [{"prefix": "batch/input/"}] * 2
    assert len({r["name"] for r in recovering.started}) == 2, "each attempt a new name"
    refusing = StateMachines(failures=100)
    dispatcher = dispatcher_for_fakes(
        event_rules(templates), stepfunctions=refusing, dead_letter=lambda *args: dead.append(args)
    )
    (delivery,) = dispatcher.run_schedule("to-machine")
    assert (delivery.outcome, delivery.attempts, delivery.sent_to_dead_letter) == ("failed", 3, True)
    assert delivery.error is not None
    assert "ThrottlingException" in delivery.error
    ((letter,),) = dead
    assert (letter.rule, letter.event["detail-type"], letter.error) == (
        "to-machine",
        "Scheduled Event",
        delivery.error,
    )
    assert (letter.error_code, letter.attempts, letter.target_arn) == ("ThrottlingException", 3, MACHINE_ARN)


def test_an_input_that_cannot_be_built_fails_the_delivery_without_attempts():
    templates = machine_template(
        to_machine(
            InputTransformer={"InputPathsMap": {"q": "$.detail.quoted"}, "InputTemplate": '{"m": "<q>"}'},
            DeadLetterConfig={"Arn": {"Fn::GetAtt": ["Queue", "Arn"]}},
        ),
        pattern={"source": ["aws.s3"]},
    )
    machines, dead = StateMachines(), list[tuple]()
    dispatcher = dispatcher_for_fakes(
        event_rules(templates), stepfunctions=machines, dead_letter=lambda *args: dead.append(args)
    )
    (delivery,) = dispatcher.emit(S3_EVENT)
    assert (delivery.outcome, delivery.attempts, delivery.sent_to_dead_letter) == ("failed", 0, True)
    assert delivery.error is not None
    assert delivery.error.startswith("TargetInputError: the transformed input is not valid JSON")
    assert machines.started == []
    assert len(dead) == 1


def test_a_state_machine_target_without_a_role_is_flagged():
    target = to_machine()
    del target["RoleArn"]
    dispatcher = dispatcher_for_fakes(event_rules(machine_template(target, pattern={"source": ["x"]})))
    assert dispatcher.describe()[1].endswith(
        "WARNING: no RoleArn (AWS refuses a Step Functions target without one)"
    )


# --- S3 Object Created ----------------------------------------------------------------------------

DATA_BUCKET = "data-bucket"


def bucket_template(pattern: dict, *, eventbridge: bool = True) -> dict[str, dict]:
    templates = hand_template(Created=rule("created", to_function(), pattern=pattern))
    props: dict = {"BucketName": DATA_BUCKET, "VersioningConfiguration": {"Status": "Enabled"}}
    if eventbridge:
        props["NotificationConfiguration"] = {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    templates["hand"]["Resources"]["Data"] = {"Type": "AWS::S3::Bucket", "Properties": props}
    return templates


def created_pattern(*keys) -> dict:
    detail: dict = {"bucket": {"name": [DATA_BUCKET]}}
    if keys:
        detail["object"] = {"key": list(keys)}
    return {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail}


class CountingS3:
    """The moto S3 client, counting ListObjectsV2 and recording its prefixes."""

    def __init__(self, client) -> None:
        self.client = client
        self.listed: list[str | None] = []

    def list_objects_v2(self, **request):
        self.listed.append(request.get("Prefix"))
        return self.client.list_objects_v2(**request)

    def head_object(self, **request):
        return self.client.head_object(**request)


@pytest.fixture
def data_bucket(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=DATA_BUCKET)
    s3.put_bucket_versioning(Bucket=DATA_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=DATA_BUCKET, Key="batch/input/old.csv", Body=b"a,b\n1,2\n")
    return s3


def s3_dispatcher(aws, templates, functions, **options) -> tuple[EventDispatcher, CountingS3]:
    counting = CountingS3(aws.client("s3"))
    dispatcher = dispatcher_for_fakes(
        event_rules(templates), functions, s3=counting, buckets=event_buckets(templates), **options
    )
    return dispatcher, counting


def test_objects_created_under_the_prefix_are_object_created_events_after_the_baseline(aws, data_bucket):
    templates = bucket_template(created_pattern({"prefix": "batch/input/"}))
    functions = Functions()
    dispatcher, counting = s3_dispatcher(aws, templates, functions)
    assert (
        dispatcher.describe()[0]
        == f"rule created: aws.s3 Object Created in {DATA_BUCKET} under batch/input/ (polled)"
    )
    assert dispatcher.poll() == [], "what is there at start-up is the baseline"
    body = b"a,b\n3,4\n"
    put = data_bucket.put_object(Bucket=DATA_BUCKET, Key="batch/input/new.csv", Body=body)
    data_bucket.put_object(Bucket=DATA_BUCKET, Key="elsewhere/x.csv", Body=b"x")
    (delivery,) = dispatcher.poll()
    assert (delivery.rule, delivery.detail_type, delivery.outcome) == (
        "created",
        "Object Created",
        "succeeded",
    )
    ((_, event),) = functions.calls
    head = data_bucket.head_object(Bucket=DATA_BUCKET, Key="batch/input/new.csv")
    assert (event["source"], event["resources"]) == ("aws.s3", [f"arn:aws:s3:::{DATA_BUCKET}"])
    assert event["time"] == head["LastModified"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = event["detail"]
    assert detail["bucket"] == {"name": DATA_BUCKET}
    assert detail["object"]["key"] == "batch/input/new.csv"
    assert detail["object"]["size"] == len(body)
    assert detail["object"]["etag"] == put["ETag"].strip('"')
    assert detail["object"]["version-id"] == put["VersionId"]
    assert re.fullmatch(r"[0-9A-F]{18}", detail["object"]["sequencer"])
    assert (detail["version"], detail["reason"], detail["requester"]) == ("0", "PutObject", ACCOUNT)
    assert detail["source-ip-address"] == "127.0.0.1"
    assert re.fullmatch(r"[0-9A-F]{16}", detail["request-id"])
    assert set(counting.listed) == {"batch/input/"}, "only the rules' prefix is listed"
    assert dispatcher.poll() == [], "nothing changed since"


def test_an_overwritten_object_is_created_again_and_a_deleted_one_is_not_an_event(aws, data_bucket):
    templates = bucket_template(created_pattern({"prefix": "batch/input/"}))
    functions = Functions()
    dispatcher, _ = s3_dispatcher(aws, templates, functions)
    dispatcher.poll()
    second = data_bucket.put_object(Bucket=DATA_BUCKET, Key="batch/input/old.csv", Body=b"a,b\n9,9\n")
    assert len(dispatcher.poll()) == 1
    ((_, event),) = functions.calls
    assert event["detail"]["object"]["etag"] == second["ETag"].strip('"')
    assert event["detail"]["object"]["version-id"] == second["VersionId"]
    data_bucket.delete_object(Bucket=DATA_BUCKET, Key="batch/input/old.csv")
    assert dispatcher.poll() == []
    third = data_bucket.put_object(Bucket=DATA_BUCKET, Key="batch/input/old.csv", Body=b"a,b\n7,7\n")
    assert len(dispatcher.poll()) == 1
    assert functions.calls[-1][1]["detail"]["object"]["etag"] == third["ETag"].strip('"')
    first_sequencer, next_sequencer = (call[1]["detail"]["object"]["sequencer"] for call in functions.calls)
    assert next_sequencer > first_sequencer


def test_a_pattern_without_a_key_prefix_lists_the_whole_bucket_and_matching_filters_the_keys(
    aws, data_bucket
):
    templates = bucket_template(created_pattern({"suffix": ".csv"}))
    functions = Functions()
    dispatcher, counting = s3_dispatcher(aws, templates, functions)
    dispatcher.poll()
    data_bucket.put_object(Bucket=DATA_BUCKET, Key="any/where.csv", Body=b"1")
    data_bucket.put_object(Bucket=DATA_BUCKET, Key="any/where.json", Body=b"2")
    assert len(dispatcher.poll()) == 1, "both are events; the rule matches one"
    assert [event["detail"]["object"]["key"] for _, event in functions.calls] == ["any/where.csv"]
    assert set(counting.listed) == {""}


def test_a_bucket_without_eventbridge_notifications_is_not_polled(aws, data_bucket):
    templates = bucket_template(created_pattern(), eventbridge=False)
    dispatcher, counting = s3_dispatcher(aws, templates, Functions())
    assert dispatcher.describe()[0] == (
        f"rule created: aws.s3 Object Created in {DATA_BUCKET}: its EventBridge notifications are off "
        "(S3 sends no events), not polled; "
        '{"source": ["aws.s3"], "detail-type": ["Object Created"]}: not emitted locally (inject with emit)'
    )
    dispatcher.poll()
    assert counting.listed == []


def test_buckets_are_listed_at_most_every_s3_poll_seconds(aws, data_bucket):
    templates = bucket_template(created_pattern("batch/input/new.csv", {"prefix": "batch/"}))
    functions = Functions()
    dispatcher, counting = s3_dispatcher(aws, templates, functions, s3_poll_seconds=3600)
    dispatcher.poll()
    data_bucket.put_object(Bucket=DATA_BUCKET, Key="batch/input/new.csv", Body=b"1")
    assert dispatcher.poll() == [], "not due yet"
    assert counting.listed == ["batch/"], "the exact key is under the prefix: one listing"
    dispatcher._objects_read_at -= 3600
    assert [d.rule for d in dispatcher.poll()] == ["created"]


def test_the_batch_input_rule_starts_the_state_machine_for_a_new_input(account, templates):
    """The synthesized batch rule: S3 -> EventBridge -> StartExecution with the rule's transformer."""
    config = get_config("local")
    s3, sfn = account.client("s3"), account.client("stepfunctions")
    bucket = config.bucket_name("data")
    s3.create_bucket(Bucket=bucket)
    role = account.client("iam").create_role(RoleName="run", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    machine = sfn.create_state_machine(name="batch", definition=definition, roleArn=role)["stateMachineArn"]
    names = {**function_names(templates), "RunStateMachine106B9D3D": machine}
    dispatcher = dispatcher_for(
        account, event_rules(templates), Functions(), names=names, buckets=event_buckets(templates)
    )
    dispatcher.poll()
    key = f"{config.batch.input_prefix}it/new.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=b"a\n1\n")
    (delivery,) = dispatcher.poll()
    assert (delivery.rule, delivery.state_machine, delivery.outcome) == (INPUT_RULE, machine, "succeeded")
    (execution,) = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert execution["executionArn"] == delivery.result["executionArn"]
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"bucket": bucket, "prefix": key}
    (scheduled,) = dispatcher.run_schedule(SCHEDULE_RULE)
    assert scheduled.outcome == "succeeded"
    started = sfn.describe_execution(executionArn=scheduled.result["executionArn"])
    assert json.loads(started["input"]) == {"bucket": bucket, "prefix": config.batch.input_prefix}


def test_targets_resolve_in_their_own_stack_where_two_templates_share_a_logical_id():
    """The batch and training stacks both have a state machine ``RunStateMachine...``: each rule's
    target is its own stack's (resolved by stack and logical id, not by logical id alone)."""
    first = machine_template(to_machine(), pattern={"source": ["aws.s3"], "detail-type": ["Object Created"]})
    second = machine_template(to_machine(), pattern={"source": ["aws.s3"], "detail-type": ["Object Created"]})
    templates = {"batch": first["hand"], "training": second["hand"]}
    templates["training"]["Resources"]["R"]["Properties"]["Name"] = "to-training-machine"
    physical = {
        ("batch", "Machine"): "arn:aws:states:us-east-1:123456789012:stateMachine:batch-machine",
        ("training", "Machine"): "arn:aws:states:us-east-1:123456789012:stateMachine:training-machine",
    }
    machines = StateMachines()
    dispatcher = EventDispatcher(
        event_rules(templates),
        ssm=fake_ssm(),
        sagemaker=SageMakerStates(None),
        s3=FakeS3(),
        stepfunctions=machines,
        invoke=Functions().invoke,
        resolve=lambda stack, logical_id: physical[(stack, logical_id)],
        account=ACCOUNT,
        region=REGION,
        clock=lambda: NOW,
    )
    deliveries = dispatcher.emit(S3_EVENT)
    assert sorted(str(d.state_machine) for d in deliveries) == sorted(physical.values())
    assert sorted(r["stateMachineArn"] for r in machines.started) == sorted(physical.values())
