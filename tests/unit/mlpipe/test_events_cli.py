"""``mlpipe events run-schedule``: a schedule rule's targets started as EventBridge starts them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from local.emulator import stepfunctions as emulator
from mlpipe.cli import main
from shared.config import get_config

CONFIG = get_config("local")
INPUT = {"bucket": "data-bucket", "prefix": "batch/input/"}


@pytest.fixture
def rules(aws) -> Iterator[dict[str, Any]]:
    """The local stage's schedule rules as CloudFormation leaves them in the account (and a dev one)."""
    emulator.install()
    events, sfn, lambda_client = aws.client("events"), aws.client("stepfunctions"), aws.client("lambda")
    role = aws.client("iam").create_role(RoleName="events", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    machine = sfn.create_state_machine(name="batch", definition=definition, roleArn=role)["stateMachineArn"]
    function = lambda_client.create_function(
        FunctionName="drift",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": b"not run"},
    )["FunctionArn"]
    invoked: list[dict[str, Any]] = []
    emulator.attach(functions={"drift": lambda _name, event: invoked.append(event)}, job_runner=None)

    def schedule(name: str, expression: str, targets: list[dict[str, Any]], state: str = "ENABLED") -> None:
        events.put_rule(Name=name, ScheduleExpression=expression, State=state)
        events.put_targets(Rule=name, Targets=targets)

    machine_target = {"Id": "Target0", "Arn": machine, "RoleArn": role, "Input": json.dumps(INPUT)}
    schedule(CONFIG.resource_name("batch-schedule"), "cron(0 2 * * ? *)", [machine_target])
    schedule(CONFIG.resource_name("drift-monitor"), "rate(1 hour)", [{"Id": "Target0", "Arn": function}])
    schedule(CONFIG.resource_name("standby-check"), "rate(5 minutes)", [machine_target], state="DISABLED")
    topic = aws.client("sns").create_topic(Name="notice")["TopicArn"]
    schedule(CONFIG.resource_name("notice-tick"), "rate(1 day)", [{"Id": "Topic", "Arn": topic}])
    schedule(get_config("dev").resource_name("batch-schedule"), "cron(0 2 * * ? *)", [machine_target])
    events.put_rule(
        Name=CONFIG.resource_name("batch-input-created"),
        EventPattern=json.dumps({"source": ["aws.s3"]}),
        State="ENABLED",
    )
    yield {"machine": machine, "function": function, "invoked": invoked, "sfn": sfn}
    emulator.detach()


def run(aws, capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--stage", "local", "events", "run-schedule", *argv], session=aws)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_schedule_by_its_short_name_starts_its_state_machine_with_the_rule_input(aws, rules, capsys):
    code, out, _ = run(aws, capsys, "batch-schedule", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["rule"] == CONFIG.resource_name("batch-schedule")
    assert (data["event"]["source"], data["event"]["detail-type"]) == ("aws.events", "Scheduled Event")
    ((target),) = data["targets"]
    assert (target["type"], target["input"]) == ("state machine", INPUT)
    (execution,) = rules["sfn"].list_executions(stateMachineArn=rules["machine"])["executions"]
    assert execution["executionArn"] == target["execution"]
    assert uuid.UUID(execution["name"]).version == 4, "named as EventBridge names them"
    described = rules["sfn"].describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == INPUT


def test_a_function_target_gets_the_scheduled_event_asynchronously(aws, rules, capsys):
    code, out, _ = run(aws, capsys, "drift")  # a part of the short name only one schedule has
    assert code == 0
    assert f"function {rules['function']}: invoked asynchronously (status 202)" in out
    ((event),) = rules["invoked"]
    assert (event["source"], event["detail-type"], event["detail"]) == ("aws.events", "Scheduled Event", {})
    assert event["resources"] == [
        f"arn:aws:events:us-east-1:123456789012:rule/{CONFIG.resource_name('drift-monitor')}"
    ]


def test_the_full_name_is_accepted(aws, rules, capsys):
    code, out, _ = run(aws, capsys, CONFIG.resource_name("batch-schedule"))
    assert code == 0
    assert f"state machine {rules['machine']}: execution " in out


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("nope", "no schedule rule 'nope' on stage local; its schedule rules: batch-schedule, drift-monitor"),
        ("batch-input-created", "is an event-pattern rule, not a schedule"),
        ("standby-check", "is DISABLED: its schedule does not run"),
        ("c", "names several schedule rules"),
    ],
)
def test_a_wrong_rule_exits_2_naming_the_problem(aws, rules, capsys, rule, message):
    code, _, err = run(aws, capsys, rule, "--json")
    assert code == 2
    assert message in json.loads(err)["error"]
    assert rules["sfn"].list_executions(stateMachineArn=rules["machine"])["executions"] == []


def test_a_target_mlpipe_cannot_start_exits_1(aws, rules, capsys):
    code, _, err = run(aws, capsys, "notice-tick")
    assert code == 1
    assert "1 of 1 target(s) not started" in err
    assert "Topic arn:aws:sns:us-east-1:123456789012:notice: NOT started: a sns target is not started" in err


def test_an_unknown_stage_exits_2(aws, rules, capsys):
    code = main(["--stage", "nowhere", "events", "run-schedule", "batch-schedule"], session=aws)
    assert code == 2
    assert "unknown stage 'nowhere'" in capsys.readouterr().err
