"""``mlpipe events run-schedule RULE``: a schedule rule's targets started now, on any stage.

EventBridge has no "run now", so this does what an operator would: it reads the rule and its
targets (``ListRules``, ``ListTargetsByRule``), builds the ``Scheduled Event`` EventBridge would
send, computes each target's input as EventBridge does (``shared.eventbridge``: ``Input``,
``InputPath``, ``InputTransformer``) and starts the target the way EventBridge starts it: a
``StartExecution`` named by a new UUID for a state machine, an asynchronous ``Invoke`` for a
Lambda function. Other target types are reported, not started. It calls once, with the caller's
credentials (EventBridge would use the target's ``RoleArn``, and its retries and dead-letter
queue are for its own deliveries).

On the local stage the same calls go to the stage's emulated account (``AWS_ENDPOINT_URL``), as
every mlpipe command reaches it: the execution runs in the stage's Step Functions interpreter and
a function in the stage's process.

RULE is the rule's full name, its short name (``batch-schedule`` for
``ml-pipeline-batch-schedule-{stage}-{region}``), or a part of the short name that exactly one of
the stage's schedule rules has. Exit codes: 0 every target started, 1 a target could not be
started, 2 no such schedule rule (or a disabled one).
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlpipe.errors import MlpipeError, UsageError
from mlpipe.stage import check_stage
from shared.config import PROJECT, EnvironmentConfig
from shared.eventbridge import TargetInputError, target_input

SCHEDULE_SOURCE, SCHEDULE_DETAIL_TYPE = "aws.events", "Scheduled Event"


def add_parser(groups: Any) -> None:
    events = groups.add_parser("events", help="the stage's EventBridge rules")
    commands = events.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run-schedule", help="start a schedule rule's targets now, with the input the schedule sends"
    )
    run.add_argument("rule", help="the rule's name, or its short name (e.g. batch-schedule)")


def stage_rules(events: Any, config: EnvironmentConfig) -> list[dict[str, Any]]:
    """The default bus's rules of the stage (``ml-pipeline-*-{stage}-{region}``)."""
    suffix = f"-{config.name}-{config.region}"
    rules: list[dict[str, Any]] = []
    request: dict[str, Any] = {"NamePrefix": f"{PROJECT}-"}
    while True:
        page = events.list_rules(**request)
        rules += [r for r in page.get("Rules", []) if str(r["Name"]).endswith(suffix)]
        if not page.get("NextToken"):
            return rules
        request["NextToken"] = page["NextToken"]


def short_name(name: str, config: EnvironmentConfig) -> str:
    return name.removeprefix(f"{PROJECT}-").removesuffix(f"-{config.name}-{config.region}")


def find_schedule(rules: list[dict[str, Any]], given: str, config: EnvironmentConfig) -> dict[str, Any]:
    """The schedule rule ``given`` names (full name, short name, or an unambiguous part of one)."""
    schedules = sorted((r for r in rules if r.get("ScheduleExpression")), key=lambda r: str(r["Name"]))
    known = ", ".join(short_name(r["Name"], config) for r in schedules) or "none"
    exact = [r for r in rules if given in {r["Name"], short_name(r["Name"], config)}]
    found = exact or [r for r in schedules if given in short_name(r["Name"], config)]
    if not found:
        raise UsageError(f"no schedule rule {given!r} on stage {config.name}; its schedule rules: {known}")
    if len(found) > 1:
        names = ", ".join(r["Name"] for r in found)
        raise UsageError(f"{given!r} names several schedule rules ({names}); give one of: {known}")
    (rule,) = found
    if not rule.get("ScheduleExpression"):
        raise UsageError(f"{rule['Name']} is an event-pattern rule, not a schedule; its schedules: {known}")
    if rule.get("State") != "ENABLED":
        raise UsageError(f"{rule['Name']} is {rule.get('State')}: its schedule does not run; enable it first")
    return rule


def targets_of(events: Any, rule: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    request: dict[str, Any] = {"Rule": rule["Name"], "EventBusName": rule.get("EventBusName", "default")}
    while True:
        page = events.list_targets_by_rule(**request)
        targets += page.get("Targets", [])
        if not page.get("NextToken"):
            return targets
        request["NextToken"] = page["NextToken"]


def scheduled_event(rule: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The event EventBridge sends a schedule rule's targets."""
    _, _, _, region, account, _ = str(rule["Arn"]).split(":", 5)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": SCHEDULE_DETAIL_TYPE,
        "source": SCHEDULE_SOURCE,
        "account": account,
        "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule["Arn"]],
        "detail": {},
    }


def start_target(session: Any, target: dict[str, Any], payload: Any) -> dict[str, Any]:
    """Start one target as EventBridge would; what was started."""
    arn = str(target["Arn"])
    service = arn.split(":")[2] if arn.count(":") >= 5 else ""
    if service == "states":
        started = session.client("stepfunctions").start_execution(
            stateMachineArn=arn, name=str(uuid.uuid4()), input=json.dumps(payload)
        )
        return {"type": "state machine", "execution": started["executionArn"]}
    if service == "lambda":
        answer = session.client("lambda").invoke(
            FunctionName=arn, InvocationType="Event", Payload=json.dumps(payload).encode()
        )
        return {"type": "function", "status": int(answer["StatusCode"])}
    raise MlpipeError(
        f"a {service or 'non-ARN'} target is not started by mlpipe (only state machines and functions)"
    )


def run_schedule(args: argparse.Namespace, session: Any, *, now: datetime | None = None) -> tuple[str, Any]:
    config = check_stage(args.stage)
    events = session.client("events")
    rule = find_schedule(stage_rules(events, config), args.rule, config)
    event = scheduled_event(rule, now or datetime.now(UTC))
    targets = targets_of(events, rule)
    if not targets:
        raise MlpipeError(f"{rule['Name']} has no targets: nothing to start")
    results, failed = [], 0
    for target in targets:
        result: dict[str, Any] = {"id": target.get("Id"), "arn": target["Arn"]}
        try:
            payload = target_input(
                target, event, rule_name=rule["Name"], rule_arn=rule["Arn"], ingestion_time=event["time"]
            )
            result["input"] = payload
            result.update(start_target(session, target, payload))
        except (TargetInputError, MlpipeError, ClientError, BotoCoreError) as err:
            failed += 1
            result["error"] = str(err)
        results.append(result)
    lines = [f"rule {rule['Name']} ({rule['ScheduleExpression']}): event {event['id']}"]
    for r in results:
        if "error" in r:
            lines.append(f"  {r['id']} {r['arn']}: NOT started: {r['error']}")
        elif r["type"] == "state machine":
            lines.append(f"  {r['id']} state machine {r['arn']}: execution {r['execution']}")
        else:
            lines.append(f"  {r['id']} function {r['arn']}: invoked asynchronously (status {r['status']})")
    text = "\n".join(lines)
    if failed:
        raise MlpipeError(f"{failed} of {len(results)} target(s) not started\n{text}")
    return text, {
        "rule": rule["Name"],
        "schedule": rule["ScheduleExpression"],
        "event": event,
        "targets": results,
    }
