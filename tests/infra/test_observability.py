"""Template assertions for the observability layer (every environment).

Every alarm has a reason and an action (or is an input of a composite rule, and says so); composite
rules reference alarms that exist; what pages and what only notifies; the endpoint's guardrail
alarms are not alarmed twice; every custom metric an alarm or a widget reads is one the project
emits (``shared.telemetry``); the topics' key admits CloudWatch and EventBridge; the saved queries
cover every function's and job's log group; the drift monitor's least privilege.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared import telemetry
from shared.config import ENVIRONMENTS
from shared.outputs import ObservabilityOutputs
from tests.infra.conftest import resources_of

ENVS = sorted(ENVIRONMENTS)
LAYER = "observability"
TemplateJson = Callable[[str, str], dict[str, Any]]
SEARCH_NAME = re.compile(r"MetricName=\"([^\"]+)\"")


def joined(value: Any) -> str:
    """A template string value with every intrinsic replaced by a placeholder."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(joined(part) for part in parts)
    return "TOKEN"


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of(template, "AWS::CloudWatch::Alarm")


def composites(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of(template, "AWS::CloudWatch::CompositeAlarm")


def rule_references(rule: Any) -> Iterator[Any]:
    """The intrinsics a composite AlarmRule joins in (alarm ARNs)."""
    if isinstance(rule, dict) and "Fn::Join" in rule:
        for part in rule["Fn::Join"][1]:
            if isinstance(part, dict):
                yield part


def alarm_metrics(resource: dict[str, Any]) -> Iterator[tuple[str, str, frozenset[str]]]:
    props = resource["Properties"]
    if "MetricName" in props:
        yield (
            props["Namespace"],
            props["MetricName"],
            frozenset(d["Name"] for d in props.get("Dimensions", [])),
        )
    for query in props.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            yield (
                metric["Namespace"],
                metric["MetricName"],
                frozenset(d["Name"] for d in metric.get("Dimensions", [])),
            )


def widget_metrics(body: dict[str, Any]) -> Iterator[tuple[str, str, frozenset[str]]]:
    for widget in body["widgets"]:
        for entry in widget.get("properties", {}).get("metrics", []):
            if isinstance(entry[0], dict):  # an expression
                expression = entry[0]["expression"]
                if expression.startswith("SEARCH("):
                    schema = expression[expression.index("{") + 1 : expression.index("}")].split(",")
                    for name in SEARCH_NAME.findall(expression):
                        yield schema[0], name, frozenset(schema[1:])
                continue
            strings = [part for part in entry if isinstance(part, str)]
            namespace, name, dims = strings[0], strings[1], strings[2:]
            yield namespace, name, frozenset(dims[0::2])


def unknown_custom_metrics(
    used: Iterator[tuple[str, str, frozenset[str]]],
) -> list[tuple[str, str, list[str]]]:
    return sorted(
        (namespace, name, sorted(dims))
        for namespace, name, dims in used
        if not namespace.startswith("AWS/") and not telemetry.is_emitted(namespace, name, dims)
    )


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    (dashboard,) = resources_of(template, "AWS::CloudWatch::Dashboard").values()
    body: dict[str, Any] = json.loads(joined(dashboard["Properties"]["DashboardBody"]))
    return body


def topic_id(template: dict[str, Any], name_part: str) -> str:
    (logical,) = [
        k
        for k, v in resources_of(template, "AWS::SNS::Topic").items()
        if name_part in v["Properties"]["TopicName"]
    ]
    return logical


@pytest.mark.parametrize("env", ENVS)
def test_every_alarm_has_a_reason_and_an_action_or_feeds_a_composite(env, template_json: TemplateJson):
    template = template_json(env, LAYER)
    referenced = {
        ref["Fn::GetAtt"][0]
        for composite in composites(template).values()
        for ref in rule_references(composite["Properties"]["AlarmRule"])
        if "Fn::GetAtt" in ref
    }
    for logical, alarm in {**alarms(template), **composites(template)}.items():
        props = alarm["Properties"]
        assert len(props.get("AlarmDescription", "")) >= 25, logical
        if props.get("AlarmActions"):
            assert props["OKActions"] == props["AlarmActions"], logical
        else:
            assert logical in referenced, f"{logical} has no action and is in no composite rule"
            assert "notifies nobody" in props["AlarmDescription"], logical
        if alarm["Type"] == "AWS::CloudWatch::Alarm":
            assert props["TreatMissingData"] in {"notBreaching", "breaching", "ignore", "missing"}, logical


@pytest.mark.parametrize("env", ENVS)
def test_composite_rules_reference_real_alarms(env, template_json: TemplateJson):
    template = template_json(env, LAYER)
    inference = template_json(env, "inference")
    guardrails = {
        v["Properties"]["AlarmName"]
        for v in inference["Resources"].values()
        if v["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert len(guardrails) == 4
    local = {**alarms(template), **composites(template)}
    named = 0
    for logical, composite in composites(template).items():
        rule = composite["Properties"]["AlarmRule"]
        references = list(rule_references(rule))
        assert references, logical
        for ref in references:
            if "Fn::GetAtt" in ref:
                assert ref["Fn::GetAtt"][0] in local, (logical, ref)
            else:  # the partition of a guardrail alarm's ARN
                assert ref == {"Ref": "AWS::Partition"}, (logical, ref)
        # the inference layer's guardrails, by their ARN (no export ties the two stacks)
        for name in re.findall(r":alarm:([^\"]+)", joined(rule)):
            assert name in guardrails, (logical, name)
            named += 1
    assert named == 4, "each variant's two guardrail alarms are in its degraded rule"


@pytest.mark.parametrize("env", ENVS)
def test_what_pages_and_what_notifies(env, template_json: TemplateJson):
    template = template_json(env, LAYER)
    paging, notice = topic_id(template, "-paging-"), topic_id(template, "-notice-")
    for logical, composite in composites(template).items():
        assert composite["Properties"]["AlarmActions"] == [{"Ref": paging}], logical
    names = {v["Properties"]["AlarmName"] for v in composites(template).values()}
    for variant in ("modela", "modelb"):
        assert any(f"-{variant}-degraded-" in n for n in names)
    assert any("-pipeline-down-" in n for n in names)
    assert sum("-predict-slo-burn-" in n for n in names) == 2
    for logical, alarm in alarms(template).items():
        props = alarm["Properties"]
        if not props.get("AlarmActions"):
            continue
        expected = (
            paging
            if props["MetricName" if "MetricName" in props else "AlarmName"]
            == telemetry.DRIFTED_FEATURE_SHARE
            else notice
        )
        assert props["AlarmActions"] == [{"Ref": expected}], logical


@pytest.mark.parametrize("env", ENVS)
def test_burn_rate_windows_come_from_config(env, template_json: TemplateJson):
    settings = ENVIRONMENTS[env].observability
    budget = 1 - settings.availability_target
    windows = sorted(
        (alarm["Properties"]["Period"], alarm["Properties"]["Threshold"])
        for alarm in alarms(template_json(env, LAYER)).values()
        if "-predict-burn-" in alarm["Properties"]["AlarmName"]
    )
    expected = sorted(
        (minutes * 60, pytest.approx(w.burn_rate * budget))
        for w in settings.burn_rate_windows
        for minutes in (w.long_minutes, w.short_minutes)
    )
    assert windows == expected
    assert {(w.burn_rate, w.long_minutes, w.short_minutes) for w in settings.burn_rate_windows} == {
        (14.4, 60, 5),
        (6.0, 360, 30),
    }


@pytest.mark.parametrize("env", ENVS)
def test_the_endpoint_guardrails_are_not_alarmed_twice(env, template_json: TemplateJson):
    for logical, alarm in alarms(template_json(env, LAYER)).items():
        for namespace, name, _ in alarm_metrics(alarm):
            assert (namespace, name) not in {
                ("AWS/SageMaker", "Invocation5XXErrors"),
                ("AWS/SageMaker", "ModelLatency"),
            }, logical


@pytest.mark.parametrize("env", ENVS)
def test_alarms_and_widgets_read_only_metrics_the_project_emits(env, template_json: TemplateJson):
    template = template_json(env, LAYER)
    used = [m for alarm in alarms(template).values() for m in alarm_metrics(alarm)]
    used += list(widget_metrics(dashboard_body(template)))
    assert any(namespace == telemetry.DEFAULT_NAMESPACE for namespace, _, _ in used)
    assert any(name == telemetry.FEATURE_DRIFT_PREFIX for _, name, _ in used), "the SEARCH widget is checked"
    assert unknown_custom_metrics(iter(used)) == []


def test_the_check_fails_on_a_metric_nothing_emits():
    service_variant = frozenset({telemetry.SERVICE, telemetry.VARIANT})
    used = [
        (telemetry.DEFAULT_NAMESPACE, "PredictionCount", service_variant),  # a typo of Predictions
        (telemetry.DEFAULT_NAMESPACE, telemetry.PREDICTIONS, frozenset({telemetry.VARIANT})),  # no service
        (telemetry.DEFAULT_NAMESPACE, telemetry.feature_drift_metric("radius"), service_variant),
        ("AWS/Lambda", "Errors", frozenset({"FunctionName"})),
    ]
    assert [name for _, name, _ in unknown_custom_metrics(iter(used))] == [
        "PredictionCount",
        telemetry.PREDICTIONS,
    ]


@pytest.mark.parametrize("env", ENVS)
def test_the_dashboard_has_a_row_per_concern(env, template_json: TemplateJson):
    titles = " | ".join(
        w["properties"].get("title", "") for w in dashboard_body(template_json(env, LAYER))["widgets"]
    )
    for concern in (
        "Invocations per variant",
        "ModelLatency p50/p99",
        "OverheadLatency p50/p99",
        "4XX / 5XX per variant",
        "API latency p99",
        "Answer cache hits / misses",
        "Function errors",
        "Function throttles",
        "Function duration p99",
        "Concurrent executions",
        "Stream incoming records",
        "Stream iterator age",
        "Failure queues and DLQs depth",
        "Step Functions executions failed",
        "Batch jobs failed",
        "Predictions table throttles",
        "Feature drift (PSI) ModelA",
        "Feature drift (PSI) ModelB",
        "Prediction-score drift",
        "Accuracy per variant",
        "SLO burn rate",
    ):
        assert concern in titles


@pytest.mark.parametrize("env", ENVS)
def test_the_topics_key_admits_cloudwatch_and_eventbridge(env, template_json: TemplateJson):
    template, data = template_json(env, LAYER), template_json(env, "data")
    data_exports = {o["Export"]["Name"]: o["Value"] for o in data["Outputs"].values() if "Export" in o}
    keys = set()
    for topic in resources_of(template, "AWS::SNS::Topic").values():
        keys.add(data_exports[topic["Properties"]["KmsMasterKeyId"]["Fn::ImportValue"]]["Fn::GetAtt"][0])
    (key,) = keys
    statements = data["Resources"][key]["Properties"]["KeyPolicy"]["Statement"]
    for service in ("cloudwatch.amazonaws.com", "events.amazonaws.com"):
        admitting = [s for s in statements if service in json.dumps(s["Principal"].get("Service"))]
        assert admitting, service
        for statement in admitting:  # none unconditioned
            assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(statement["Action"])
            assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == ENVIRONMENTS[env].account


@pytest.mark.parametrize("env", ENVS)
def test_saved_queries_cover_every_function_and_job_log_group(env, template_json: TemplateJson):
    template = template_json(env, LAYER)
    queries = resources_of(template, "AWS::Logs::QueryDefinition")
    assert len(queries) == 4
    names = [joined(group) for group in next(iter(queries.values()))["Properties"]["LogGroupNames"]]
    # 7 functions (api, stream, deploy, 3 batch, drift monitor) + batch job + batch run + API access logs
    assert len(names) == 10
    for query in queries.values():
        assert (
            query["Properties"]["LogGroupNames"]
            == next(iter(queries.values()))["Properties"]["LogGroupNames"]
        )


@pytest.mark.parametrize("env", ENVS)
def test_drift_monitor_least_privilege(env, template_json: TemplateJson):
    template = template_json(env, LAYER)
    config = ENVIRONMENTS[env]
    (policy,) = resources_of(template, "AWS::IAM::Policy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    by_action = {
        joined(a) if isinstance(a, str) else a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert "dynamodb:Query" in by_action
    assert not [a for a in by_action if a.startswith("dynamodb:") and a != "dynamodb:Query"]
    for statement in statements:
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        rendered = [joined(r) for r in resources]
        if statement["Action"] == "dynamodb:Query":
            assert rendered[0].endswith(
                f":table/{config.resource_name('predictions')}/index/by-model-version"
            )
        if "*" in rendered:
            assert statement["Action"] in (
                "cloudwatch:PutMetricData",
                ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
            )
            if statement["Action"] == "cloudwatch:PutMetricData":
                assert statement["Condition"] == {
                    "StringEquals": {"cloudwatch:namespace": telemetry.DEFAULT_NAMESPACE}
                }
    (function,) = resources_of(template, "AWS::Lambda::Function").values()
    environment = function["Properties"]["Environment"]["Variables"]
    assert environment["MIN_SAMPLES"] == str(config.observability.drift.min_samples)
    (schedule,) = [
        r
        for r in resources_of(template, "AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
    ]
    assert schedule["Properties"]["ScheduleExpression"] == config.observability.drift.schedule


@pytest.mark.parametrize("env", ENVS)
def test_outputs(env, template_json: TemplateJson):
    outputs = template_json(env, LAYER)["Outputs"]
    for key in (
        ObservabilityOutputs.PAGING_TOPIC_ARN,
        ObservabilityOutputs.NOTICE_TOPIC_ARN,
        ObservabilityOutputs.DASHBOARD_NAME,
        ObservabilityOutputs.DRIFT_FUNCTION_NAME,
        ObservabilityOutputs.PIPELINE_DOWN_ALARM_NAME,
        *(ObservabilityOutputs.model_degraded_alarm(v) for v in ("ModelA", "ModelB")),
        *(ObservabilityOutputs.drift_alarm(v) for v in ("ModelA", "ModelB")),
    ):
        assert key in outputs
