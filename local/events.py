"""EventBridge for the local stage: the templates' rules, driven by polling the emulated account.

moto creates ``AWS::Events::Rule`` resources but no AWS service emits events into it and no rule
invokes its targets. This module reads the rules from the synthesized templates (``event_rules``)
and does the service's part (``EventDispatcher``):

- **Sources** are derived from the rules' patterns, never from a list of names here:

  - ``aws.ssm`` / ``Parameter Store Change`` with exact names in ``detail.name``: those
    parameters are polled (``DescribeParameters``); a parameter appearing is ``Create``, a higher
    ``Version`` is ``Update``, a parameter gone is ``Delete``, one deleted and created again
    between two polls is ``Delete`` then ``Create``. Several updates between two polls are one
    ``Update`` (of the last version), as polling cannot see more.
  - ``aws.sagemaker`` / ``SageMaker Endpoint State Change`` with exact names in
    ``detail.EndpointName``: those endpoints are polled (``DescribeEndpoint``) and an event is
    emitted when the status changes, and also when the status is the same but the endpoint
    config or ``LastModifiedTime`` changed (a whole ``Updating`` phase fell between two polls,
    e.g. another caller's ``DescribeEndpoint`` saw it first). An endpoint that appears emits its
    status; one that is gone emits ``DELETING``, the last state the service reports for it.

  - ``aws.s3`` / ``Object Created`` with exact bucket names in ``detail.bucket.name``, for a
    bucket of the templates whose EventBridge notifications are on
    (``NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled``; S3 sends no
    events for any other bucket, so neither does this): the bucket is listed
    (``ListObjectsV2``) under the prefixes the rules' ``detail.object.key`` conditions name
    (an exact key, or a ``prefix``; any other condition, or none, lists the whole bucket), at
    most every ``s3_poll_seconds``. A key that appears, or whose ETag or LastModified changed
    (overwritten), is an ``Object Created`` event with S3's detail (``version``,
    ``bucket.name``, ``object.key``/``size``/``etag``/``version-id`` (versioned buckets, from
    ``HeadObject``)/``sequencer``, ``request-id``, ``requester``, ``source-ip-address``,
    ``reason``), dated by the object's LastModified, in LastModified order. ``reason`` is
    ``PutObject``: polling cannot tell a copy or a multipart upload from a put. Deletions are
    not emitted (``Object Deleted`` is no rule's pattern here).

  **The first ``poll`` only records the baseline**: what exists at start-up is not an event.
  Other sources (CloudTrail events, a bucket named by a prefix, ...) are not emitted locally;
  a caller injects them with ``emit``.
- **Events** have the service's envelope (``version``, ``id``, ``detail-type``, ``source``,
  ``account``, ``time``, ``region``, ``resources``, ``detail``). The SageMaker detail is the
  service's too, which is *not* ``DescribeEndpoint``'s: ``EndpointStatus`` is upper snake case
  (``IN_SERVICE``, ``UPDATING``, ``FAILED``) and the times are epoch milliseconds.
- **Matching** (``matches``): exact values, ``prefix``, ``suffix``, ``equals-ignore-case``,
  ``wildcard``, ``anything-but`` (values, or a ``prefix``/``suffix``/``equals-ignore-case``/
  ``wildcard``), ``exists``, ``numeric``, ``cidr`` and ``$or``; an array in the event matches if
  an element does. Only ``ENABLED`` rules on the default event bus receive events.
- **Targets**: Lambda functions (``Fn::GetAtt [Function, Arn]``) are invoked (``invoke``) and
  state machines (``Ref`` of an ``AWS::StepFunctions::StateMachine``, which is its ARN, with the
  target's ``RoleArn``) get a ``StartExecution`` named by a new UUID, as EventBridge names them.
  Either receives the event, or the target's ``Input`` / ``InputPath`` / ``InputTransformer``
  (``shared.eventbridge``: EventBridge's substitution rules). Other target types are listed as
  not supported and recorded as such when an event matches. A state machine target without a
  ``RoleArn`` is started but flagged (AWS refuses such a target).
- **Retries and dead letters**: a target that raises (a function's error, a refused
  ``StartExecution``; an input the transformer cannot build fails at once) is retried at once
  (no back-off) up to its
  ``RetryPolicy.MaximumRetryAttempts`` (AWS's default, 185, when there is no policy), capped at
  ``max_retries``; then the delivery is failed and, if the target has a ``DeadLetterConfig``,
  handed to ``dead_letter(DeadLetter)``; ``sqs_dead_letters`` sends it to the target's queue
  as EventBridge does (the event as the body; ``RULE_ARN``, ``TARGET_ARN``, ``ERROR_CODE``,
  ``ERROR_MESSAGE``, ``EXHAUSTED_RETRY_CONDITION`` and ``RETRY_ATTEMPTS`` as message attributes).
  ``MaximumEventAgeInSeconds`` is not enforced (nothing waits).
- **Schedules** (``ScheduleExpression``): ``rate(...)`` rules run on the clock when the caller
  calls ``run_due_schedules`` (the first run one period after the dispatcher starts, as a new
  rule's first run comes one period after its creation); ``cron(...)`` rules do not run on a
  timer here. ``run_schedule(rule)`` sends any schedule rule's ``Scheduled Event`` on demand
  (``mlpipe events run-schedule`` starts a schedule's targets on any stage).

Simplification to know of: EventBridge invokes Lambda asynchronously, so in AWS a function
*error* is retried by Lambda's asynchronous invocation (two retries by default) and goes to the
function's on-failure destination; the rule's ``RetryPolicy`` and dead-letter queue cover
failures to *deliver* (throttling, missing permission). Locally an invocation is synchronous and
an exception is treated as a failed delivery of the rule target.

``poll``, ``emit`` and ``run_schedule`` may be called from different threads; they are
serialized by a re-entrant lock (a target may itself call ``emit``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shared.eventbridge import TargetInputError, check_target_input, target_input

DEFAULT_BUS = "default"
STATE_MACHINE_TYPE = "AWS::StepFunctions::StateMachine"
AWS_DEFAULT_RETRY_ATTEMPTS = 185  # EventBridge's MaximumRetryAttempts without a RetryPolicy
AWS_DEFAULT_EVENT_AGE_SECONDS = 86_400
MAX_LOCAL_RETRIES = 5  # retries are immediate locally: more than a few only repeat a deterministic error

SSM_SOURCE, SSM_DETAIL_TYPE = "aws.ssm", "Parameter Store Change"
SAGEMAKER_SOURCE, ENDPOINT_DETAIL_TYPE = "aws.sagemaker", "SageMaker Endpoint State Change"
SCHEDULE_SOURCE, SCHEDULE_DETAIL_TYPE = "aws.events", "Scheduled Event"
S3_SOURCE, OBJECT_CREATED = "aws.s3", "Object Created"
S3_REASON = "PutObject"  # what polling can tell: an object appeared or changed
LOCAL_SOURCE_IP = "127.0.0.1"

_ENABLED_STATES = frozenset({"ENABLED", "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"})
_NUMERIC_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
}
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_RATE_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}
_SSM_NAME_FILTER_VALUES = 50  # DescribeParameters takes at most 50 names per filter


# --- the rules of the templates ---------------------------------------------------------------


@dataclass(frozen=True)
class TargetSpec:
    target_id: str
    arn: str  # how the template names the target, e.g. ``DeployFunction.Arn``
    function_logical_id: str | None  # the Lambda function's logical id; None for other target types
    unsupported: str | None  # why the target is not invoked locally; None when it is
    input: str | None  # ``Input``: the JSON the target gets instead of the event
    input_path: str | None  # ``InputPath``: the part of the event the target gets
    retry_policy: bool  # the target has a ``RetryPolicy``
    maximum_retry_attempts: int
    maximum_event_age_seconds: int
    dead_letter_arn: str | None  # the ``DeadLetterConfig`` queue as the template names it
    invoke_permission: bool  # a lambda:InvokeFunction permission for events.amazonaws.com is in the templates
    state_machine_logical_id: str | None = None  # the state machine's logical id (a Step Functions target)
    dead_letter_logical_id: str | None = None  # the dead-letter queue's logical id (``GetAtt Queue.Arn``)
    role_arn: str | None = None  # ``RoleArn`` as the template names it (EventBridge assumes it)
    input_transformer: dict[str, Any] | None = None  # ``InputTransformer``: paths map and template
    settings: dict[str, Any] = field(default_factory=dict, compare=False)  # the input keys, as written

    @property
    def kind(self) -> str:
        return "state machine" if self.state_machine_logical_id is not None else "function"


@dataclass(frozen=True)
class RuleSpec:
    stack_name: str
    logical_id: str
    name: str  # ``Name``, or ``stack/logical id`` when the template leaves the name to CloudFormation
    state: str
    event_pattern: dict[str, Any] | None
    schedule_expression: str | None
    event_bus: str  # ``default`` or how the template names the bus
    targets: tuple[TargetSpec, ...]
    description: str = ""

    @property
    def enabled(self) -> bool:
        return self.state in _ENABLED_STATES


def describe_value(value: Any) -> str:
    """A template value as text: a literal as is, ``Ref X``, ``X.Arn``, ``import X``, else its JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return f"Ref {argument}"
        if function == "Fn::GetAtt":
            return ".".join(argument) if isinstance(argument, list) else str(argument)
        if function == "Fn::ImportValue":
            return f"import {describe_value(argument)}"
    return json.dumps(value, sort_keys=True)


def _get_att(value: Any, attribute: str) -> str | None:
    """The logical id in ``{"Fn::GetAtt": [id, attribute]}`` (or ``"id.attribute"``), else None."""
    if not isinstance(value, Mapping) or set(value) != {"Fn::GetAtt"}:
        return None
    argument = value["Fn::GetAtt"]
    parts = argument.split(".", 1) if isinstance(argument, str) else argument
    if isinstance(parts, list) and len(parts) == 2 and parts[1] == attribute:
        return str(parts[0])
    return None


def _referenced(value: Any) -> str | None:
    """The logical id a function name or ARN refers to (``Ref`` or ``GetAtt .Arn``), else None."""
    if isinstance(value, Mapping) and set(value) == {"Ref"} and isinstance(value["Ref"], str):
        return value["Ref"]
    return _get_att(value, "Arn")


def _event_permissions(resources: Mapping[str, Any]) -> set[tuple[str, str | None]]:
    """(function logical id, rule logical id or None for any rule) that EventBridge may invoke."""
    permitted: set[tuple[str, str | None]] = set()
    for resource in resources.values():
        if resource.get("Type") != "AWS::Lambda::Permission":
            continue
        props = resource.get("Properties", {})
        if props.get("Principal") != "events.amazonaws.com" or props.get("Action") not in {
            "lambda:InvokeFunction",
            "lambda:*",
        }:
            continue
        function = _referenced(props.get("FunctionName"))
        if function is not None:
            source = props.get("SourceArn")
            permitted.add((function, None if source is None else _get_att(source, "Arn") or "?"))
    return permitted


def _target(
    target: Mapping[str, Any],
    rule_logical_id: str,
    resources: Mapping[str, Any],
    permissions: set[tuple[str, str | None]],
) -> TargetSpec:
    arn = target.get("Arn")
    referenced = _get_att(arn, "Arn")
    function = (
        referenced
        if referenced is not None and resources.get(referenced, {}).get("Type") == "AWS::Lambda::Function"
        else None
    )
    machine = _referenced(arn) if function is None else None
    if machine is not None and resources.get(machine, {}).get("Type") != STATE_MACHINE_TYPE:
        machine = None
    unsupported = None
    if function is None and machine is None:
        unsupported = "only Lambda functions and state machines of the templates are started locally"
    else:
        try:
            check_target_input(target)
        except TargetInputError as err:
            unsupported = str(err)
    role = target.get("RoleArn")
    transformer = target.get("InputTransformer")
    retry = target.get("RetryPolicy")
    dead_letter = target.get("DeadLetterConfig", {}).get("Arn")
    return TargetSpec(
        target_id=str(target.get("Id", "")),
        arn=describe_value(arn),
        function_logical_id=function,
        unsupported=unsupported,
        input=target["Input"] if isinstance(target.get("Input"), str) else None,
        input_path=str(target["InputPath"]) if "InputPath" in target else None,
        retry_policy=retry is not None,
        maximum_retry_attempts=int((retry or {}).get("MaximumRetryAttempts", AWS_DEFAULT_RETRY_ATTEMPTS)),
        maximum_event_age_seconds=int(
            (retry or {}).get("MaximumEventAgeInSeconds", AWS_DEFAULT_EVENT_AGE_SECONDS)
        ),
        dead_letter_arn=None if dead_letter is None else describe_value(dead_letter),
        invoke_permission=function is not None
        and bool({(function, None), (function, rule_logical_id)} & permissions),
        dead_letter_logical_id=None if dead_letter is None else _get_att(dead_letter, "Arn"),
        state_machine_logical_id=machine,
        role_arn=None if role is None else describe_value(role),
        input_transformer=dict(transformer) if isinstance(transformer, Mapping) else None,
        settings={k: target[k] for k in ("Input", "InputPath", "InputTransformer") if k in target},
    )


def event_rules(templates: Mapping[str, Mapping[str, Any]]) -> list[RuleSpec]:
    """Every ``AWS::Events::Rule`` of the templates (stack name -> template), in template order."""
    rules = []
    for stack_name, template in templates.items():
        resources: Mapping[str, Any] = template.get("Resources", {})
        permissions = _event_permissions(resources)
        for logical_id, resource in resources.items():
            if resource.get("Type") != "AWS::Events::Rule":
                continue
            props = resource.get("Properties", {})
            pattern = props.get("EventPattern")
            if isinstance(pattern, str):
                pattern = json.loads(pattern)
            name = props.get("Name")
            rules.append(
                RuleSpec(
                    stack_name=stack_name,
                    logical_id=logical_id,
                    name=name if isinstance(name, str) else f"{stack_name}/{logical_id}",
                    state=str(props.get("State", "ENABLED")),
                    event_pattern=pattern,
                    schedule_expression=props.get("ScheduleExpression"),
                    event_bus=describe_value(props.get("EventBusName", DEFAULT_BUS)),
                    targets=tuple(
                        _target(t, logical_id, resources, permissions) for t in props.get("Targets", [])
                    ),
                    description=str(props.get("Description", "")),
                )
            )
    return rules


@dataclass(frozen=True)
class BucketSpec:
    stack_name: str
    logical_id: str
    name: str | None  # ``BucketName``; None when CloudFormation names the bucket
    eventbridge: bool  # ``NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled``
    versioned: bool


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def event_buckets(templates: Mapping[str, Mapping[str, Any]]) -> list[BucketSpec]:
    """Every ``AWS::S3::Bucket`` of the templates, and whether S3 sends its events to EventBridge."""
    buckets = []
    for stack_name, template in templates.items():
        for logical_id, resource in template.get("Resources", {}).items():
            if resource.get("Type") != "AWS::S3::Bucket":
                continue
            props = resource.get("Properties", {})
            notifications = props.get("NotificationConfiguration", {})
            eventbridge = notifications.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled")
            name = props.get("BucketName")
            buckets.append(
                BucketSpec(
                    stack_name=stack_name,
                    logical_id=logical_id,
                    name=name if isinstance(name, str) else None,
                    eventbridge=_true(eventbridge),
                    versioned=props.get("VersioningConfiguration", {}).get("Status") == "Enabled",
                )
            )
    return buckets


def rate_seconds(expression: str | None) -> float | None:
    """The period of ``rate(5 minutes)`` in seconds; None for ``cron(...)`` or anything else."""
    match = _RATE.match(expression or "")
    if match is None:
        return None
    return float(int(match[1]) * _RATE_UNIT_SECONDS[match[2].removesuffix("s")])


# --- event patterns ---------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(expected: Any, value: Any) -> bool:
    if _is_number(expected) or _is_number(value):
        return _is_number(expected) and _is_number(value) and expected == value
    return type(expected) is type(value) and expected == value


def _wildcard(pattern: str, value: str) -> bool:
    parts = re.split(r"(?<!\\)\*", pattern)
    regex = ".*".join(re.escape(part.replace("\\*", "*")) for part in parts)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _string_condition(operator: str, argument: Any, value: Any) -> bool:
    """``prefix`` / ``suffix`` / ``equals-ignore-case`` / ``wildcard`` on one value."""
    if not isinstance(argument, str | Mapping):
        raise ValueError(f"{operator} takes a string, not {argument!r}")
    if not isinstance(value, str):
        return False
    text, expected = value, str(argument)
    if isinstance(argument, Mapping):  # {"prefix": {"equals-ignore-case": "..."}}
        ((inner, inner_argument),) = argument.items()
        if inner != "equals-ignore-case" or operator not in {"prefix", "suffix"}:
            raise ValueError(f"unsupported {operator} condition {argument!r}")
        text, expected = value.casefold(), str(inner_argument).casefold()
    if operator == "prefix":
        return text.startswith(expected)
    if operator == "suffix":
        return text.endswith(expected)
    if operator == "equals-ignore-case":
        return text.casefold() == expected.casefold()
    return _wildcard(expected, text)


def _anything_but(argument: Any, value: Any) -> bool:
    if isinstance(argument, Mapping):
        ((operator, inner),) = argument.items()
        if operator not in {"prefix", "suffix", "equals-ignore-case", "wildcard"}:
            raise ValueError(f"unsupported anything-but condition {argument!r}")
        values = inner if isinstance(inner, list) else [inner]
        return isinstance(value, str) and not any(_string_condition(operator, v, value) for v in values)
    excluded = argument if isinstance(argument, list) else [argument]
    return not any(_equal(e, value) for e in excluded)


def _numeric(argument: Any, value: Any) -> bool:
    if not isinstance(argument, list) or not argument or len(argument) % 2:
        raise ValueError(f"numeric needs operator/number pairs, not {argument!r}")
    if not _is_number(value):
        return False
    for operator, bound in zip(argument[::2], argument[1::2], strict=True):
        if operator not in _NUMERIC_OPERATORS or not _is_number(bound):
            raise ValueError(f"numeric condition {operator!r} {bound!r} is not supported")
        if not _NUMERIC_OPERATORS[operator](value, bound):
            return False
    return True


def _cidr(argument: Any, value: Any) -> bool:
    network = ipaddress.ip_network(str(argument), strict=False)
    if not isinstance(value, str):
        return False
    try:
        return ipaddress.ip_address(value) in network
    except ValueError:
        return False


def _condition(condition: Any, value: Any) -> bool:
    """One element of a pattern's value list against one (leaf) value of the event."""
    if not isinstance(condition, Mapping):
        return _equal(condition, value)
    if len(condition) != 1:
        raise ValueError(f"a condition has one operator, not {condition!r}")
    ((operator, argument),) = condition.items()
    if operator in {"prefix", "suffix", "equals-ignore-case", "wildcard"}:
        return _string_condition(operator, argument, value)
    if operator == "anything-but":
        return _anything_but(argument, value)
    if operator == "numeric":
        return _numeric(argument, value)
    if operator == "cidr":
        return _cidr(argument, value)
    raise ValueError(f"unsupported pattern operator {operator!r}")


def _leaves(event: Mapping[str, Any], key: str) -> list[Any]:
    """The scalar values of ``key`` (an array's elements); [] when absent, empty or not a leaf."""
    if key not in event:
        return []
    value = event[key]
    values = value if isinstance(value, list) else [value]
    return [v for v in values if not isinstance(v, Mapping | list)]


def _children(event: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = event.get(key)
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, Mapping)]


def _field_matches(conditions: Any, leaves: list[Any]) -> bool:
    if not isinstance(conditions, list):
        raise ValueError(f"a pattern's leaf must be a list of conditions, not {conditions!r}")
    for condition in conditions:
        if isinstance(condition, Mapping) and set(condition) == {"exists"}:
            if not isinstance(condition["exists"], bool):
                raise ValueError(f"exists takes true or false, not {condition['exists']!r}")
            if condition["exists"] == bool(leaves):
                return True
        elif any(_condition(condition, leaf) for leaf in leaves):
            return True
    return False


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether ``event`` matches the EventBridge event ``pattern`` (raises ValueError for an invalid one).

    A field the event lacks matches only ``{"exists": false}``; an array in the event matches a
    condition if one of its elements does; nested objects are matched field by field (an array of
    objects if one of them matches).
    """
    for key, expected in pattern.items():
        if key == "$or":
            if not isinstance(expected, list) or not expected:
                raise ValueError(f"$or takes a list of patterns, not {expected!r}")
            if not any(matches(alternative, event) for alternative in expected):
                return False
        elif isinstance(expected, Mapping):
            children = _children(event, key)
            if not any(matches(expected, child) for child in children or [{}]):
                return False
        elif not _field_matches(expected, _leaves(event, key)):
            return False
    return True


def check_pattern(pattern: Any) -> str | None:
    """What is wrong with ``pattern`` for ``matches``, or None when it can be matched."""
    if not isinstance(pattern, Mapping) or not pattern:
        return "the pattern is not a non-empty object"
    try:
        for condition_list in _condition_lists(pattern):
            _field_matches(condition_list, [])
            for condition in condition_list:
                if not (isinstance(condition, Mapping) and set(condition) == {"exists"}):
                    # every probe type, so each operator's argument is checked at least once
                    for probe in ("probe", 0, 0.5, None, "10.0.0.1"):
                        _condition(condition, probe)
    except (ValueError, TypeError, AttributeError) as err:
        return str(err)
    return None


def _condition_lists(pattern: Mapping[str, Any]) -> Iterator[Any]:
    for key, expected in pattern.items():
        if key == "$or":
            if not isinstance(expected, list) or not expected:
                raise ValueError(f"$or takes a list of patterns, not {expected!r}")
            for alternative in expected:
                if not isinstance(alternative, Mapping):
                    raise ValueError(f"$or takes a list of patterns, not {expected!r}")
                yield from _condition_lists(alternative)
        elif isinstance(expected, Mapping):
            yield from _condition_lists(expected)
        else:
            yield expected


def _branches(pattern: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pattern's top-level ``$or`` spelled out into plain patterns."""
    if "$or" not in pattern:
        return [dict(pattern)]
    rest = {k: v for k, v in pattern.items() if k != "$or"}
    return [branch for alternative in pattern["$or"] for branch in _branches({**rest, **alternative})]


def _exact_strings(conditions: Any) -> list[str]:
    return [c for c in conditions if isinstance(c, str)] if isinstance(conditions, list) else []


# --- the dispatcher ---------------------------------------------------------------------------

Outcome = Literal["succeeded", "failed", "unsupported"]


@dataclass(frozen=True)
class Delivery:
    """One event handed to one rule target."""

    rule: str
    target_id: str
    function: str | None  # the physical function name; None when no function is invoked
    event_id: str
    detail_type: str
    outcome: Outcome
    attempts: int  # invocations or StartExecution calls made (0 for an unsupported target)
    error: str | None = None  # the last attempt's error, or why the target is not supported
    sent_to_dead_letter: bool = False
    # what the function returned, or StartExecution's executionArn, name and startDate
    result: Any = field(default=None, compare=False)
    state_machine: str | None = None  # the state machine's ARN (a Step Functions target)


@dataclass(frozen=True)
class DeadLetter:
    """An event a target did not take after its retries, for the target's dead-letter queue."""

    rule: str
    rule_arn: str
    target: TargetSpec
    target_arn: str | None  # the physical function name or state machine ARN; None if not resolved
    event: dict[str, Any]
    error_code: str
    error: str
    attempts: int
    stack_name: str = ""  # the rule's stack: its target's and queue's logical ids are that template's


def sqs_dead_letters(sqs: Any, resolve: Callable[[str, str], str]) -> Callable[[DeadLetter], None]:
    """A ``dead_letter`` that sends to the target's queue (``resolve``: (stack, logical id) -> queue URL)."""

    def send(letter: DeadLetter) -> None:
        queue = letter.target.dead_letter_logical_id
        if queue is None:
            raise ValueError(
                f"{letter.rule}: dead-letter queue {letter.target.dead_letter_arn} is not in the templates"
            )
        attributes = {
            "RULE_ARN": letter.rule_arn,
            "TARGET_ARN": letter.target_arn or letter.target.arn,
            "ERROR_CODE": letter.error_code,
            "ERROR_MESSAGE": letter.error,
            "RETRY_ATTEMPTS": str(max(0, letter.attempts - 1)),
        }
        if letter.attempts:
            attributes["EXHAUSTED_RETRY_CONDITION"] = "MaximumRetryAttempts"
        sqs.send_message(
            QueueUrl=resolve(letter.stack_name, queue),
            MessageBody=json.dumps(letter.event),
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )

    return send


@dataclass(frozen=True)
class _Parameter:
    version: int
    modified: Any
    type: str
    description: str


@dataclass(frozen=True)
class _Object:
    etag: str
    modified: datetime
    size: int


@dataclass(frozen=True)
class _Watch:
    """A bucket the S3 source lists, and the key prefixes ("" for the whole bucket)."""

    bucket: str
    versioned: bool
    prefixes: tuple[str, ...]


def _key_prefixes(conditions: Any) -> list[str]:
    """The prefixes to list for a pattern's ``detail.object.key`` conditions ([""] for the whole bucket)."""
    if not isinstance(conditions, list) or not conditions:
        return [""]
    prefixes = []
    for condition in conditions:
        if isinstance(condition, str):
            prefixes.append(condition)
        elif (
            isinstance(condition, Mapping)
            and set(condition) == {"prefix"}
            and isinstance(condition["prefix"], str)
        ):
            prefixes.append(condition["prefix"])
        else:  # suffix, wildcard, anything-but, exists, ...: any key of the bucket may match
            return [""]
    return prefixes


def _minimal(prefixes: Sequence[str]) -> tuple[str, ...]:
    """The prefixes without those another one covers (each key is listed once)."""
    kept: list[str] = []
    for prefix in sorted(set(prefixes)):
        if not any(prefix.startswith(other) for other in kept):
            kept.append(prefix)
    return tuple(kept)


@dataclass(frozen=True)
class _Endpoint:
    description: dict[str, Any]  # DescribeEndpoint's answer

    @property
    def signature(self) -> tuple[Any, ...]:
        d = self.description
        return (d.get("EndpointStatus"), d.get("EndpointConfigName"), d.get("LastModifiedTime"))


def event_status(status: str) -> str:
    """DescribeEndpoint's status as SageMaker's events spell it: ``InService`` -> ``IN_SERVICE``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", status).upper()


def _epoch_millis(value: Any) -> Any:
    return value.timestamp() * 1000 if isinstance(value, datetime) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return _epoch_millis(value)


def _error_code(err: Exception) -> str:
    response = getattr(err, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, Mapping) else ""


def _now() -> datetime:
    return datetime.now(UTC)


class EventDispatcher:
    """The default event bus of the local stage: service events from polling, delivered to the rules."""

    def __init__(
        self,
        rules: Sequence[RuleSpec],
        *,
        ssm: Any,
        sagemaker: Any,
        s3: Any,
        stepfunctions: Any,
        invoke: Callable[[str, dict[str, Any]], Any],
        resolve: Callable[[str, str], str],
        account: str,
        region: str,
        buckets: Sequence[BucketSpec] = (),
        clock: Callable[[], datetime] = _now,
        dead_letter: Callable[[DeadLetter], None] | None = None,
        max_retries: int = MAX_LOCAL_RETRIES,
        log: Callable[[str], None] | None = None,
        history: int = 500,
        s3_poll_seconds: float = 0.0,
    ) -> None:
        """``resolve(stack name, logical id)`` is the physical id of a template resource (a function's
        name, a state machine's ARN, a bucket's name): logical ids are unique within a template only
        (the batch and training stacks both have a ``RunStateMachine...``); ``buckets`` are the
        templates' (``event_buckets``).
        """
        self.rules = tuple(rules)
        self.ssm, self.sagemaker, self.s3, self.stepfunctions = ssm, sagemaker, s3, stepfunctions
        self.invoke, self.resolve = invoke, resolve
        self.account, self.region = account, region
        self.clock, self.dead_letter, self.log = clock, dead_letter, log
        self.max_retries = max_retries
        self.s3_poll_seconds = s3_poll_seconds
        self._lock = threading.RLock()
        self._history: deque[Delivery] = deque(maxlen=history)
        self._not_driven: dict[str, str] = {}  # rule name -> why it receives no events
        self._listens: dict[str, list[str]] = {}  # rule name -> what it listens to
        self._buckets = self._bucket_names(buckets)
        parameters: dict[str, None] = {}
        endpoints: dict[str, None] = {}
        objects: dict[str, list[str]] = {}  # bucket -> key prefixes
        for rule in self.rules:
            self._listens[rule.name] = self._derive_sources(rule, parameters, endpoints, objects)
        self.parameters = tuple(parameters)  # watched, in rule order
        self.endpoints = tuple(endpoints)
        self.watched_buckets = tuple(
            _Watch(bucket, self._buckets[bucket].versioned, _minimal(prefixes))
            for bucket, prefixes in objects.items()
        )
        self._parameter_state: dict[str, _Parameter | None] | None = None  # None until the baseline
        self._endpoint_state: dict[str, _Endpoint | None] | None = None
        self._object_state: dict[str, dict[str, _Object]] | None = None
        self._objects_read_at = float("-inf")  # time.monotonic() of the last listing
        self._sequence = 0
        started = self.clock().timestamp()
        self._next_runs = {  # rate rule -> when it runs next (epoch seconds)
            rule.name: started + period
            for rule in self.rules
            if rule.enabled and (period := rate_seconds(rule.schedule_expression)) is not None
        }

    # --- what each rule listens to

    def _bucket_names(self, buckets: Sequence[BucketSpec]) -> dict[str, BucketSpec]:
        """Bucket name -> its template's bucket (a name CloudFormation generates is resolved)."""
        named = {}
        for bucket in buckets:
            name = bucket.name
            if name is None:
                with contextlib.suppress(Exception):  # not deployed: no rule can name it exactly either
                    name = self.resolve(bucket.stack_name, bucket.logical_id)
            if name is not None:
                named[name] = bucket
        return named

    @staticmethod
    def _schedule_line(rule: RuleSpec) -> str:
        state = "" if rule.enabled else f", {rule.state}"
        period = rate_seconds(rule.schedule_expression)
        if not rule.enabled:
            how = "not driven (run_schedule sends nothing while it is disabled)"
        elif period is not None:
            how = f"runs every {period:g} s (run_due_schedules)"
        else:
            how = "on demand only (mlpipe events run-schedule, run_schedule): cron is not on a timer here"
        return f"schedule {rule.schedule_expression}{state}: {how}"

    def _derive_sources(
        self,
        rule: RuleSpec,
        parameters: dict[str, None],
        endpoints: dict[str, None],
        objects: dict[str, list[str]],
    ) -> list[str]:
        if rule.schedule_expression is not None and rule.event_pattern is None:
            self._not_driven[rule.name] = self._schedule_line(rule)  # no events: its own clock
            return []
        if not rule.enabled:
            self._not_driven[rule.name] = f"not driven ({rule.state})"
            return []
        if rule.event_bus != DEFAULT_BUS:
            self._not_driven[rule.name] = (
                f"not driven (event bus {rule.event_bus}; service events go to default)"
            )
            return []
        pattern = rule.event_pattern
        problem = check_pattern(pattern)
        if pattern is None or problem is not None:
            self._not_driven[rule.name] = f"not driven (event pattern: {problem})"
            return []
        listens = []
        for branch in _branches(pattern):
            sources = _exact_strings(branch.get("source"))
            detail_types = _exact_strings(branch.get("detail-type"))
            detail: Mapping[str, Any] = branch["detail"] if isinstance(branch.get("detail"), Mapping) else {}
            polled = False
            for source, detail_type, key, watched in (
                (SSM_SOURCE, SSM_DETAIL_TYPE, "name", parameters),
                (SAGEMAKER_SOURCE, ENDPOINT_DETAIL_TYPE, "EndpointName", endpoints),
            ):
                if source not in sources or detail_type not in detail_types:
                    continue
                names = _exact_strings(detail.get(key))
                watched.update(dict.fromkeys(names))
                if names:
                    polled = True
                    listens.append(f"{source} {detail_type} of {', '.join(names)} (polled)")
                conditions = detail.get(key)
                if not isinstance(conditions, list) or len(names) < len(conditions):
                    # no name, or a prefix/anything-but: which resources to read is not known
                    listens.append(f"{detail_type} not named exactly in detail.{key}: not polled (use emit)")
            if S3_SOURCE in sources and OBJECT_CREATED in detail_types:
                found, lines = self._derive_objects(detail, objects)
                polled = polled or found
                listens += lines
            if not polled:
                what = json.dumps({k: branch[k] for k in ("source", "detail-type") if k in branch})
                listens.append(f"{what}: not emitted locally (inject with emit)")
        return listens

    def _derive_objects(
        self, detail: Mapping[str, Any], objects: dict[str, list[str]]
    ) -> tuple[bool, list[str]]:
        """The buckets and prefixes an ``Object Created`` branch needs listed, and its start-up lines."""
        bucket: Mapping[str, Any] = detail["bucket"] if isinstance(detail.get("bucket"), Mapping) else {}
        names = _exact_strings(bucket.get("name"))
        conditions = bucket.get("name")
        lines = []
        if not isinstance(conditions, list) or len(names) < len(conditions):
            lines.append(f"{OBJECT_CREATED} not named exactly in detail.bucket.name: not polled (use emit)")
        obj: Mapping[str, Any] = detail["object"] if isinstance(detail.get("object"), Mapping) else {}
        prefixes = _key_prefixes(obj.get("key"))
        polled = False
        for name in names:
            spec = self._buckets.get(name)
            if spec is None:
                lines.append(
                    f"{S3_SOURCE} {OBJECT_CREATED} in {name}: not a bucket of the templates, not polled"
                )
                continue
            if not spec.eventbridge:
                lines.append(
                    f"{S3_SOURCE} {OBJECT_CREATED} in {name}: its EventBridge notifications are off "
                    "(S3 sends no events), not polled"
                )
                continue
            objects.setdefault(name, []).extend(prefixes)
            polled = True
            under = ", ".join(p or "(whole bucket)" for p in _minimal(prefixes))
            lines.append(f"{S3_SOURCE} {OBJECT_CREATED} in {name} under {under} (polled)")
        return polled, lines

    def describe(self) -> list[str]:
        """Start-up lines: each rule, what drives it, its targets; and the rules that are not driven."""
        lines = []
        for rule in self.rules:
            listens = self._not_driven.get(rule.name) or "; ".join(self._listens[rule.name])
            lines.append(f"rule {rule.name}: {listens}")
            lines += [f"  -> {self._describe_target(rule, target)}" for target in rule.targets]
            if not rule.targets:
                lines.append("  -> no targets")
        return lines

    def _describe_target(self, rule: RuleSpec, target: TargetSpec) -> str:
        logical_id = target.function_logical_id or target.state_machine_logical_id
        if target.unsupported is not None or logical_id is None:
            return f"{target.target_id} {target.arn}: not invoked ({target.unsupported})"
        try:
            physical = self.resolve(rule.stack_name, logical_id)
        except Exception:  # described here; a delivery reports the error
            physical = "not resolved"
        retries = min(target.maximum_retry_attempts, self.max_retries)
        parts = [
            f"{target.kind} {physical} [{logical_id}]",
            f"retries {retries}"
            + (
                f" (template: {target.maximum_retry_attempts})"
                if retries != target.maximum_retry_attempts
                else ""
            ),
            f"dead letters to {target.dead_letter_arn}" if target.dead_letter_arn else "no dead-letter queue",
        ]
        if target.input is not None:
            parts.append("constant Input")
        if target.input_path is not None:
            parts.append(f"InputPath {target.input_path}")
        if target.input_transformer is not None:
            parts.append(f"InputTransformer {target.input_transformer.get('InputTemplate')}")
        if target.state_machine_logical_id is not None:
            parts.append(
                f"role {target.role_arn}"
                if target.role_arn
                else "WARNING: no RoleArn (AWS refuses a Step Functions target without one)"
            )
        elif not target.invoke_permission:
            parts.append(
                "WARNING: no permission for events.amazonaws.com in the templates (AWS would not deliver)"
            )
        return ", ".join(parts)

    @property
    def deliveries(self) -> list[Delivery]:
        """The most recent deliveries, oldest first."""
        with self._lock:
            return list(self._history)

    # --- events

    def envelope(
        self, source: str, detail_type: str, detail: dict[str, Any], resources: Sequence[str] = ()
    ) -> dict[str, Any]:
        """An event as the default bus carries it, dated by the clock."""
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": self.account,
            "time": self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": list(resources),
            "detail": detail,
        }

    def poll(self) -> list[Delivery]:
        """Read the watched parameters, endpoints and buckets; deliver an event for each change since
        the last poll (buckets are listed at most every ``s3_poll_seconds``).

        The first poll records the baseline and delivers nothing. If reading fails, the state stays
        as it was, so the next poll reports the change.
        """
        with self._lock:
            parameters = self._read_parameters()
            endpoints = self._read_endpoints()
            now = time.monotonic()
            due = self._object_state is None or now - self._objects_read_at >= self.s3_poll_seconds
            objects = self._read_objects() if due else self._object_state
            events: list[dict[str, Any]] = []
            if self._parameter_state is not None:
                events += self._parameter_events(self._parameter_state, parameters)
            if self._endpoint_state is not None:
                events += self._endpoint_events(self._endpoint_state, endpoints)
            if self._object_state is not None and objects is not None and due:
                events += self._object_events(self._object_state, objects)
            self._parameter_state, self._endpoint_state = parameters, endpoints
            if due:
                self._object_state, self._objects_read_at = objects, now
            deliveries = []
            for event in events:
                deliveries += self._dispatch(event)
            return deliveries

    def emit(self, event: dict[str, Any]) -> list[Delivery]:
        """Put an event on the default bus (e.g. an alarm state change); returns its deliveries."""
        with self._lock:
            return self._dispatch(event)

    def run_schedule(self, rule_name: str) -> list[Delivery]:
        """Send a schedule rule's ``Scheduled Event`` to its targets now (no timer runs them locally)."""
        with self._lock:
            rule = next((r for r in self.rules if r.name == rule_name), None)
            if rule is None or rule.schedule_expression is None:
                raise ValueError(f"{rule_name!r} is not a schedule rule of the templates")
            if not rule.enabled:
                return []
            event = self.envelope(SCHEDULE_SOURCE, SCHEDULE_DETAIL_TYPE, {}, [self.rule_arn(rule)])
            return self._deliver(rule, event)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold every delivery while inside (tests observe a request in flight, e.g. a held lock)."""
        with self._lock:
            yield

    def run_due_schedules(self) -> list[Delivery]:
        """Send the ``Scheduled Event`` of every ``rate(...)`` rule whose time has come."""
        deliveries = []
        with self._lock:
            now = self.clock().timestamp()
            for rule in self.rules:
                due = self._next_runs.get(rule.name)
                if due is None or now < due:
                    continue
                period = rate_seconds(rule.schedule_expression) or 0.0
                self._next_runs[rule.name] = due + period * (1 + int((now - due) // period))
                deliveries += self.run_schedule(rule.name)
        return deliveries

    # --- S3 objects

    def _read_objects(self) -> dict[str, dict[str, _Object]]:
        found: dict[str, dict[str, _Object]] = {}
        for watch in self.watched_buckets:
            listed: dict[str, _Object] = {}
            for prefix in watch.prefixes:
                request: dict[str, Any] = {"Bucket": watch.bucket, "Prefix": prefix}
                while True:
                    try:
                        page = self.s3.list_objects_v2(**request)
                    except Exception as err:
                        if _error_code(err) == "NoSuchBucket":  # not (yet) there: nothing in it
                            break
                        raise
                    for item in page.get("Contents", []):
                        listed[item["Key"]] = _Object(
                            etag=str(item.get("ETag", "")).strip('"'),
                            modified=item["LastModified"],
                            size=int(item.get("Size", 0)),
                        )
                    if not page.get("IsTruncated"):
                        break
                    request["ContinuationToken"] = page["NextContinuationToken"]
            found[watch.bucket] = listed
        return found

    def _object_event(self, watch: _Watch, key: str, obj: _Object) -> dict[str, Any]:
        self._sequence += 1
        millis = int(obj.modified.timestamp() * 1000)
        described: dict[str, Any] = {"key": key, "size": obj.size, "etag": obj.etag}
        if watch.versioned:
            try:
                version = self.s3.head_object(Bucket=watch.bucket, Key=key).get("VersionId")
            except Exception as err:  # gone again since the listing: created all the same
                if _error_code(err) not in {"404", "NoSuchKey", "NotFound"}:
                    raise
                version = None
            if version:
                described["version-id"] = version
        described["sequencer"] = f"{millis:012X}{self._sequence:06X}"
        detail = {
            "version": "0",
            "bucket": {"name": watch.bucket},
            "object": described,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": self.account,
            "source-ip-address": LOCAL_SOURCE_IP,
            "reason": S3_REASON,
        }
        event = self.envelope(S3_SOURCE, OBJECT_CREATED, detail, [f"arn:aws:s3:::{watch.bucket}"])
        event["time"] = obj.modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return event

    def _object_events(
        self, before: Mapping[str, Mapping[str, _Object]], now: Mapping[str, Mapping[str, _Object]]
    ) -> list[dict[str, Any]]:
        """An ``Object Created`` for each key that appeared or changed, oldest first."""
        changed = []
        for watch in self.watched_buckets:
            previous = before.get(watch.bucket, {})
            for key, obj in now.get(watch.bucket, {}).items():
                old = previous.get(key)
                if old is None or (old.etag, old.modified) != (obj.etag, obj.modified):
                    changed.append((obj.modified, key, watch, obj))
        changed.sort(key=lambda item: (item[0], item[1]))
        return [self._object_event(watch, key, obj) for _, key, watch, obj in changed]

    # --- SSM parameters

    def _read_parameters(self) -> dict[str, _Parameter | None]:
        found: dict[str, _Parameter | None] = dict.fromkeys(self.parameters)
        names = list(self.parameters)
        for start in range(0, len(names), _SSM_NAME_FILTER_VALUES):
            chunk = names[start : start + _SSM_NAME_FILTER_VALUES]
            request: dict[str, Any] = {
                "ParameterFilters": [{"Key": "Name", "Option": "Equals", "Values": chunk}],
                "MaxResults": 50,
            }
            while True:
                page = self.ssm.describe_parameters(**request)
                for parameter in page.get("Parameters", []):
                    if parameter["Name"] in found:
                        found[parameter["Name"]] = _Parameter(
                            version=int(parameter["Version"]),
                            modified=parameter.get("LastModifiedDate"),
                            type=str(parameter.get("Type", "String")),
                            description=str(parameter.get("Description", "")),
                        )
                if not page.get("NextToken"):
                    break
                request["NextToken"] = page["NextToken"]
        return found

    def _parameter_event(self, operation: str, name: str, parameter: _Parameter) -> dict[str, Any]:
        path = name if name.startswith("/") else f"/{name}"
        arn = f"arn:aws:ssm:{self.region}:{self.account}:parameter{path}"
        detail = {
            "operation": operation,
            "name": name,
            "type": parameter.type,
            "description": parameter.description,
        }
        return self.envelope(SSM_SOURCE, SSM_DETAIL_TYPE, detail, [arn])

    def _parameter_events(
        self, before: Mapping[str, _Parameter | None], now: Mapping[str, _Parameter | None]
    ) -> list[dict[str, Any]]:
        events = []
        for name, current in now.items():
            previous = before.get(name)
            if previous is not None and (
                current is None
                or current.version < previous.version
                or (current.version == previous.version and current.modified != previous.modified)
            ):
                events.append(self._parameter_event("Delete", name, previous))
                previous = None
            if current is not None and previous is None:
                events.append(self._parameter_event("Create", name, current))
            elif current is not None and previous is not None and current.version > previous.version:
                events.append(self._parameter_event("Update", name, current))
        return events

    # --- SageMaker endpoints

    def _read_endpoints(self) -> dict[str, _Endpoint | None]:
        found: dict[str, _Endpoint | None] = {}
        for name in self.endpoints:
            try:
                description = dict(self.sagemaker.describe_endpoint(EndpointName=name))
            except Exception as err:
                if _error_code(err) == "ValidationException" and "Could not find endpoint" in str(err):
                    found[name] = None
                    continue
                raise
            description.pop("ResponseMetadata", None)
            found[name] = _Endpoint(description)
        return found

    def _endpoint_event(self, endpoint: _Endpoint, status: str | None = None) -> dict[str, Any]:
        d = endpoint.description
        detail: dict[str, Any] = {
            "EndpointName": d["EndpointName"],
            "EndpointArn": d["EndpointArn"],
            "EndpointConfigName": d.get("EndpointConfigName"),
            "ProductionVariants": _jsonable(d.get("ProductionVariants", [])),
            "EndpointStatus": status or event_status(str(d["EndpointStatus"])),
            "CreationTime": _epoch_millis(d.get("CreationTime")),
            "LastModifiedTime": _epoch_millis(d.get("LastModifiedTime")),
            "Tags": {},
        }
        if d.get("FailureReason"):
            detail["FailureReason"] = d["FailureReason"]
        if status is None:  # the endpoint exists: its tags, as the service's event carries them
            tags = self.sagemaker.list_tags(ResourceArn=d["EndpointArn"]).get("Tags", [])
            detail["Tags"] = {t["Key"]: t["Value"] for t in tags}
        return self.envelope(SAGEMAKER_SOURCE, ENDPOINT_DETAIL_TYPE, detail, [d["EndpointArn"]])

    def _endpoint_events(
        self, before: Mapping[str, _Endpoint | None], now: Mapping[str, _Endpoint | None]
    ) -> list[dict[str, Any]]:
        events = []
        for name, current in now.items():
            previous = before.get(name)
            if current is None and previous is not None:
                events.append(self._endpoint_event(previous, status="DELETING"))
            elif current is not None and (previous is None or current.signature != previous.signature):
                events.append(self._endpoint_event(current))
        return events

    # --- delivery

    def _dispatch(self, event: dict[str, Any]) -> list[Delivery]:
        deliveries = []
        for rule in self.rules:
            if rule.name in self._not_driven or rule.event_pattern is None:
                continue
            if matches(rule.event_pattern, event):
                deliveries += self._deliver(rule, event)
        return deliveries

    def _deliver(self, rule: RuleSpec, event: dict[str, Any]) -> list[Delivery]:
        deliveries = [self._deliver_to(rule, target, event) for target in rule.targets]
        self._history.extend(deliveries)
        if self.log is not None:
            for d in deliveries:
                to = d.function or d.state_machine or d.target_id
                result = f"{d.outcome} after {d.attempts} attempt(s)" + (f": {d.error}" if d.error else "")
                self.log(f"{d.detail_type} {d.event_id} -> {d.rule} -> {to}: {result}")
        return deliveries

    def rule_arn(self, rule: RuleSpec) -> str:
        return f"arn:aws:events:{self.region}:{self.account}:rule/{rule.name}"

    def _payload(self, rule: RuleSpec, target: TargetSpec, event: dict[str, Any]) -> Any:
        return target_input(
            target.settings,
            event,
            rule_name=rule.name,
            rule_arn=self.rule_arn(rule),
            ingestion_time=self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    def _start_execution(self, state_machine: str, payload: Any) -> dict[str, Any]:
        """``StartExecution`` as EventBridge makes it: a new UUID for the name, the input as JSON."""
        started = self.stepfunctions.start_execution(
            stateMachineArn=state_machine, name=str(uuid.uuid4()), input=json.dumps(payload)
        )
        return {
            "executionArn": started["executionArn"],
            "name": started["executionArn"].rsplit(":", 1)[-1],
            "startDate": str(started.get("startDate", "")),
        }

    def _deliver_to(self, rule: RuleSpec, target: TargetSpec, event: dict[str, Any]) -> Delivery:
        resolved: dict[str, str | None] = {"function": None, "state_machine": None}

        def delivery(outcome: Outcome, attempts: int, error: str | None, **extra: Any) -> Delivery:
            return Delivery(
                rule=rule.name,
                target_id=target.target_id,
                function=resolved["function"],
                state_machine=resolved["state_machine"],
                event_id=str(event.get("id", "")),
                detail_type=str(event.get("detail-type", "")),
                outcome=outcome,
                attempts=attempts,
                error=error,
                **extra,
            )

        logical_id = target.function_logical_id or target.state_machine_logical_id
        if target.unsupported is not None or logical_id is None:
            return delivery("unsupported", 0, target.unsupported)
        attempts, error, code = 0, "", ""
        try:
            physical = self.resolve(rule.stack_name, logical_id)
            payload = self._payload(rule, target, event)
        except Exception as err:  # a target that cannot be reached, an input that cannot be built
            error, code = f"{type(err).__name__}: {err}", _error_code(err) or type(err).__name__
        else:
            if target.function_logical_id is not None:
                resolved["function"] = physical
            else:
                resolved["state_machine"] = physical
            for _ in range(1 + max(0, min(target.maximum_retry_attempts, self.max_retries))):
                attempts += 1
                try:
                    if target.function_logical_id is not None:
                        result = self.invoke(physical, payload)
                    else:
                        result = self._start_execution(physical, payload)
                except Exception as err:  # the function's error, a refused StartExecution
                    error, code = f"{type(err).__name__}: {err}", _error_code(err) or type(err).__name__
                else:
                    return delivery("succeeded", attempts, None, result=result)
        dead_lettered = target.dead_letter_arn is not None
        if dead_lettered and self.dead_letter is not None:
            try:
                self.dead_letter(
                    DeadLetter(
                        rule=rule.name,
                        rule_arn=self.rule_arn(rule),
                        target=target,
                        target_arn=resolved["function"] or resolved["state_machine"],
                        event=event,
                        error_code=code,
                        error=error,
                        attempts=attempts,
                        stack_name=rule.stack_name,
                    )
                )
            except Exception as err:  # the event is lost, as EventBridge loses it: said, never raised
                dead_lettered = False
                error = f"{error}; and the dead-letter queue refused it: {type(err).__name__}: {err}"
        return delivery("failed", attempts, error, sent_to_dead_letter=dead_lettered)


__all__ = [
    "BucketSpec",
    "DeadLetter",
    "Delivery",
    "EventDispatcher",
    "RuleSpec",
    "TargetSpec",
    "check_pattern",
    "event_buckets",
    "event_rules",
    "event_status",
    "matches",
    "rate_seconds",
    "sqs_dead_letters",
]
