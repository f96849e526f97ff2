"""Alarm evaluation, composite rules, metric math, notifications and events of local.emulator.cloudwatch."""

from __future__ import annotations

import ast
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from moto import mock_aws

from local.emulator import metric_math
from local.emulator.cloudwatch import (
    AlarmEvaluator,
    CompositeAlarm,
    MetricStore,
    aggregate,
    composite_alarms,
    create_metric_alarms,
    emf_metric_data,
    literal_alarm_references,
    resolve,
)
from local.emulator.cloudwatch import install as cloudwatch_install
from local.emulator.metric_math import evaluate_expression, rule_holds
from shared import telemetry

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DIMS = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "ModelA"}]


@pytest.fixture
def account(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="paging")["TopicArn"]
        queue = sqs.create_queue(QueueName="pager")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
        )
        yield cloudwatch, sns, sqs, topic, queue


def evaluator(cloudwatch, sns, composites=()):
    events: list[dict] = []
    store = MetricStore(cloudwatch=cloudwatch)
    found = AlarmEvaluator(
        store=store,
        cloudwatch=cloudwatch,
        publish=lambda arn, message: sns.publish(TopicArn=arn, Message=message),
        emit=events.append,
        composites=composites,
    )
    return found, store, events


def put(store, name, value, at, dimensions=DIMS, namespace="AWS/SageMaker"):
    store.put(namespace, [{"MetricName": name, "Dimensions": dimensions, "Timestamp": at, "Value": value}])


def errors_alarm(cloudwatch, topic, **overrides):
    spec = {
        "AlarmName": "modela-5xx",
        "Namespace": "AWS/SageMaker",
        "MetricName": "Invocation5XXErrors",
        "Dimensions": DIMS,
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 2,
        "DatapointsToAlarm": 2,
        "Threshold": 5,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": [topic],
        "OKActions": [topic],
        **overrides,
    }
    cloudwatch.put_metric_alarm(**spec)


def test_statistics():
    values = [float(v) for v in range(1, 101)]
    assert aggregate(values, "Sum") == 5050
    assert aggregate(values, "Average") == 50.5
    assert aggregate(values, "p99") == 99
    assert aggregate(values, "p50") == 50
    assert aggregate(values, "SampleCount") == 100
    assert aggregate([], "Sum") is None
    with pytest.raises(ValueError, match="not emulated"):
        aggregate(values, "tm90")


def test_metric_math():
    assert (
        evaluate_expression("IF(invocations > 0, errors / invocations, 0)", {"invocations": 10, "errors": 2})
        == 0.2
    )
    assert (
        evaluate_expression("IF(invocations > 0, errors / invocations, 0)", {"invocations": 0, "errors": 0})
        == 0
    )
    assert evaluate_expression("FILL(e0, 0) + FILL(e1, 0)", {"e0": None, "e1": 3}) == 3
    assert evaluate_expression("reads + writes", {"reads": None, "writes": 1}) is None
    with pytest.raises(ValueError, match="not emulated"):
        evaluate_expression('__import__("os")', {})


def test_composite_rules():
    states = {"a": "ALARM", "b": "OK", "c": "ALARM"}
    assert rule_holds('(ALARM("a") OR ALARM("b")) AND ALARM("c")', states)
    assert not rule_holds('ALARM("a") AND NOT OK("b")', states)
    with pytest.raises(ValueError, match="unknown alarm"):
        rule_holds('ALARM("missing")', states)


def test_metric_math_precedence_and_errors():
    names = {"a": 2.0, "b": 3.0, "c": 4.0}
    assert evaluate_expression("a + b * c", names) == 14
    assert evaluate_expression("(a + b) * c", names) == 20
    assert evaluate_expression("a - b - c", names) == -5
    assert evaluate_expression("-a * 2 + 1.5e1", names) == 11
    assert evaluate_expression("a / (b - 3)", names) is None  # division by zero: no data
    assert evaluate_expression("IF(a >= 2, 1, 0) + IF(b < 3, 1, 0) + IF(c <= 4, 1, 0)", names) == 2
    for malformed, reason in [
        ("a +", "ends early"),
        ("(a + b", "expected ')'"),
        ("a b", "unexpected 'b'"),
        ("IF(a, b)", "takes 3 arguments"),
        ("a ** b", "unexpected"),
        ("a; b", "unexpected"),
        ("open('x')", "unexpected"),
    ]:
        with pytest.raises(ValueError, match=re.escape(reason)):
            evaluate_expression(malformed, names)


def test_composite_rule_grammar():
    states = {"a": "ALARM", "b": "OK", "c": "INSUFFICIENT_DATA"}
    assert rule_holds('NOT (OK("a") OR ALARM("b")) AND INSUFFICIENT_DATA("c")', states)
    assert rule_holds('ALARM("a") OR FALSE', states)
    assert not rule_holds('TRUE AND NOT ALARM("a")', states)
    assert rule_holds('ALARM("b") AND OK("b") OR ALARM("a")', states)  # AND binds tighter than OR
    for malformed in ["ALARM(a)", 'ALARM("a") AND', 'ALARM("a") XOR OK("b")', '__import__("os")']:
        with pytest.raises(ValueError, match=r"quoted alarm name|unexpected"):
            rule_holds(malformed, states)


def test_alarm_expressions_never_build_python_asts(monkeypatch):
    """The evaluator thread never calls ast.parse: CPython 3.11.7 fails concurrent parses (cpython#106905)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("ast.parse called")

    monkeypatch.setattr(ast, "parse", refuse)
    metric_math.parse_expression.cache_clear()
    metric_math.parse_rule.cache_clear()
    assert evaluate_expression("FILL(e0, 0) / 2", {"e0": 4}) == 2
    assert rule_holds('ALARM("a")', {"a": "ALARM"})


def test_emf_lines_become_metric_data(capsys):
    emf = EphemeralMetrics(
        namespace="MlPipeline", service="ml-pipeline-api", default_dimensions={"service": "ml-pipeline-api"}
    )
    emf.add_dimension(name="variant", value="ModelA")
    emf.add_metric(name=telemetry.PREDICTIONS, unit=MetricUnit.Count, value=3)
    emf.flush_metrics()
    line = capsys.readouterr().out.strip()
    ((namespace, datum),) = emf_metric_data(line)
    assert namespace == "MlPipeline"
    assert datum["MetricName"] == telemetry.PREDICTIONS
    assert datum["Value"] == 3.0
    assert {d["Name"]: d["Value"] for d in datum["Dimensions"]} == {
        "service": "ml-pipeline-api",
        "variant": "ModelA",
    }
    assert emf_metric_data('{"level": "INFO", "message": "not EMF"}') == []
    assert emf_metric_data("plain text") == []


def test_an_alarm_goes_to_alarm_and_back_notifying_its_topic(account):
    cloudwatch, sns, sqs, topic, queue = account
    errors_alarm(cloudwatch, topic)
    found, store, events = evaluator(cloudwatch, sns)
    # one breaching minute of two: not yet
    put(store, "Invocation5XXErrors", 9, NOW - timedelta(seconds=30))
    assert [e["detail"]["state"]["value"] for e in found.evaluate(NOW)] == ["OK"]
    put(store, "Invocation5XXErrors", 6, NOW + timedelta(seconds=30))
    (change,) = found.evaluate(NOW + timedelta(seconds=60))
    assert change["detail-type"] == "CloudWatch Alarm State Change"
    assert change["detail"] == change["detail"] | {
        "alarmName": "modela-5xx",
        "previousState": {"value": "OK"},
    }
    assert change["detail"]["state"]["value"] == "ALARM"
    assert cloudwatch.describe_alarms(AlarmNames=["modela-5xx"])["MetricAlarms"][0]["StateValue"] == "ALARM"
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    # INSUFFICIENT_DATA -> OK runs the OK actions too, as in CloudWatch
    assert sorted(json.loads(m["Body"])["NewStateValue"] for m in messages) == ["ALARM", "OK"]
    # no data afterwards: notBreaching -> OK
    (back,) = found.evaluate(NOW + timedelta(minutes=5))
    assert back["detail"]["state"]["value"] == "OK"
    assert events == [*events[:1], change, back]


@pytest.mark.parametrize(
    ("missing", "expected"),
    [("notBreaching", "OK"), ("breaching", "ALARM"), ("missing", "INSUFFICIENT_DATA")],
)
def test_missing_data_treatment(account, missing, expected):
    cloudwatch, sns, _, topic, _ = account
    errors_alarm(cloudwatch, topic, TreatMissingData=missing)
    found, _, _ = evaluator(cloudwatch, sns)
    found.evaluate(NOW)
    assert found.states["modela-5xx"] == expected


def test_a_percentile_alarm_and_a_math_alarm(account):
    cloudwatch, sns, _, topic, _ = account
    cloudwatch.put_metric_alarm(
        AlarmName="latency",
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Dimensions=DIMS,
        ExtendedStatistic="p99",
        Period=60,
        EvaluationPeriods=1,
        Threshold=500,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[topic],
    )
    invocations = {"Namespace": "AWS/SageMaker", "MetricName": "Invocations", "Dimensions": DIMS}
    client_errors = {**invocations, "MetricName": "Invocation4XXErrors"}
    cloudwatch.put_metric_alarm(
        AlarmName="rate",
        EvaluationPeriods=1,
        Threshold=0.05,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[topic],
        Metrics=[
            {
                "Id": "invocations",
                "MetricStat": {"Metric": invocations, "Period": 300, "Stat": "Sum"},
                "ReturnData": False,
            },
            {
                "Id": "errors",
                "MetricStat": {"Metric": client_errors, "Period": 300, "Stat": "Sum"},
                "ReturnData": False,
            },
            {"Id": "rate", "Expression": "IF(invocations > 0, errors / invocations, 0)", "ReturnData": True},
        ],
    )
    found, store, _ = evaluator(cloudwatch, sns)
    at = NOW - timedelta(seconds=10)
    for value in [10.0] * 98 + [900.0, 900.0]:
        put(store, "ModelLatency", value, at)
    put(store, "Invocations", 100, at)
    put(store, "Invocation4XXErrors", 10, at)
    found.evaluate(NOW)
    assert found.states == {"latency": "ALARM", "rate": "ALARM"}


def test_composites_page_while_their_rule_holds(account):
    cloudwatch, sns, sqs, topic, queue = account
    errors_alarm(cloudwatch, topic, AlarmActions=[], OKActions=[])
    cloudwatch.put_metric_alarm(
        AlarmName="traffic",
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Dimensions=DIMS,
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    degraded = CompositeAlarm(
        "degraded", 'ALARM("modela-5xx") AND ALARM("traffic")', alarm_actions=(topic,), ok_actions=(topic,)
    )
    found, store, events = evaluator(cloudwatch, sns, composites=[degraded])
    for offset in (-90, -30):
        put(store, "Invocation5XXErrors", 9, NOW + timedelta(seconds=offset))
    found.evaluate(NOW)
    assert found.states["degraded"] == "OK"  # errors, but no traffic: not degraded
    put(store, "Invocation5XXErrors", 9, NOW + timedelta(seconds=30))
    put(store, "Invocations", 9, NOW + timedelta(seconds=30))
    found.evaluate(NOW + timedelta(seconds=60))
    assert found.states["degraded"] == "ALARM"
    found.evaluate(NOW + timedelta(minutes=10))
    assert found.states["degraded"] == "OK"
    bodies = [
        json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    ]
    assert [(b["AlarmName"], b["NewStateValue"]) for b in bodies] == [
        ("degraded", "OK"),
        ("degraded", "ALARM"),
        ("degraded", "OK"),
    ]
    assert [e["detail"]["state"]["value"] for e in events if e["detail"]["alarmName"] == "degraded"] == [
        "OK",
        "ALARM",
        "OK",
    ]


def test_composites_of_the_templates_resolve_their_alarms():
    inference = {
        "Resources": {"Guard": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"AlarmName": "modela-5xx"}}},
        "Outputs": {"Out": {"Value": {"Fn::GetAtt": ["Guard", "Arn"]}, "Export": {"Name": "guard-arn"}}},
    }
    observability = {
        "Resources": {
            "Traffic": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"AlarmName": "traffic"}},
            "Paging": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "paging"}},
            "Degraded": {
                "Type": "AWS::CloudWatch::CompositeAlarm",
                "Properties": {
                    "AlarmName": "degraded",
                    "AlarmRule": {
                        "Fn::Join": [
                            "",
                            [
                                '(ALARM("',
                                {"Fn::ImportValue": "guard-arn"},
                                '") AND ALARM("',
                                {"Fn::GetAtt": ["Traffic", "Arn"]},
                                '"))',
                            ],
                        ]
                    },
                    "AlarmActions": [{"Ref": "Paging"}],
                },
            },
        }
    }
    (composite,) = composite_alarms(
        {"inference": inference, "observability": observability}, account="123456789012", region="us-east-1"
    )
    assert composite.rule == '(ALARM("modela-5xx") AND ALARM("traffic"))'
    assert composite.alarm_actions == ("arn:aws:sns:us-east-1:123456789012:paging",)


def test_the_templates_metric_alarms_are_created_resolved(account):
    cloudwatch, _, _, topic, _ = account
    template = {
        "Resources": {
            "Topic": {"Type": "AWS::SNS::Topic"},
            "Dlq": {"Type": "AWS::SQS::Queue"},
            "Depth": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "AlarmName": {"Fn::Join": ["-", ["dlq", {"Ref": "AWS::Region"}]]},
                    "Namespace": "AWS/SQS",
                    "MetricName": "ApproximateNumberOfMessagesVisible",
                    "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["Dlq", "QueueName"]}}],
                    "Statistic": "Maximum",
                    "Period": 300,
                    "EvaluationPeriods": 1,
                    "Threshold": 1,
                    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                    "TreatMissingData": "notBreaching",
                    "AlarmActions": [{"Ref": "Topic"}],
                    "OKActions": [{"Fn::ImportValue": "other-topic"}],
                },
            },
        }
    }
    ids = {"s": {"Topic": topic, "Dlq": "https://sqs.us-east-1.amazonaws.com/123456789012/the-dlq"}}
    created = create_metric_alarms(
        cloudwatch,
        {"s": template},
        ids=ids,
        exports={"other-topic": topic},
        account="123456789012",
        region="us-east-1",
    )
    assert created == ["dlq-us-east-1"]
    (alarm,) = cloudwatch.describe_alarms(AlarmNames=["dlq-us-east-1"])["MetricAlarms"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": "the-dlq"}]
    assert alarm["AlarmActions"] == [topic]
    with pytest.raises(ValueError, match="not emulated"):
        resolve({"Fn::GetAtt": ["Dlq", "Nope"]}, ids=ids["s"], exports={}, account="1", region="r")


def test_references_to_alarms_become_literals_for_motos_cloudformation():
    template: dict[str, Any] = {
        "Resources": {
            "A": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"AlarmName": "a"}},
            "C": {
                "Type": "AWS::CloudWatch::CompositeAlarm",
                "Properties": {
                    "AlarmName": "c",
                    "AlarmRule": {"Fn::Join": ["", ['ALARM("', {"Fn::GetAtt": ["A", "Arn"]}, '")']]},
                },
            },
            "Q": {"Type": "AWS::SQS::Queue"},
        },
        "Outputs": {"Name": {"Value": {"Ref": "C"}}, "Queue": {"Value": {"Ref": "Q"}}},
    }
    assert literal_alarm_references(template, account="123456789012", region="us-east-1") == 2
    rule = template["Resources"]["C"]["Properties"]["AlarmRule"]["Fn::Join"][1]
    assert rule[1] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:a"
    assert template["Outputs"] == {"Name": {"Value": "c"}, "Queue": {"Value": {"Ref": "Q"}}}


def test_metrics_put_straight_into_cloudwatch_are_evaluated_too(account):
    """The drift monitor calls PutMetricData itself: its alarm is evaluated on the stored data."""
    cloudwatch, sns, sqs, topic, queue = account
    dimensions = [{"Name": "service", "Value": "ml-pipeline-drift"}, {"Name": "variant", "Value": "ModelA"}]
    cloudwatch.put_metric_alarm(
        AlarmName="modela-drift",
        Namespace="MlPipeline",
        MetricName=telemetry.DRIFTED_FEATURE_SHARE,
        Dimensions=dimensions,
        Statistic="Maximum",
        Period=3600,
        EvaluationPeriods=1,
        Threshold=0.1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
        AlarmActions=[topic],
    )
    found, _, events = evaluator(cloudwatch, sns)
    now = datetime.now(UTC)
    found.evaluate(now)
    assert found.states["modela-drift"] == "OK"
    cloudwatch.put_metric_data(
        Namespace="MlPipeline",
        MetricData=[
            {
                "MetricName": telemetry.DRIFTED_FEATURE_SHARE,
                "Dimensions": dimensions,
                "Timestamp": now,
                "Value": 0.3,
            }
        ],
    )
    found.evaluate(now + timedelta(seconds=10))
    assert found.states["modela-drift"] == "ALARM"
    assert events[-1]["detail"]["alarmName"] == "modela-drift"
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"])["NewStateValue"] == "ALARM"


def test_get_metric_data_answers_percentiles_and_metric_math(account, monkeypatch):
    from moto.cloudwatch import models  # noqa: PLC0415

    monkeypatch.setattr(
        models.Statistics, "get_statistics_for_type", models.Statistics.get_statistics_for_type
    )
    monkeypatch.setattr(models, "parse_expression", models.parse_expression)  # type: ignore[attr-defined]
    assert cloudwatch_install() == cloudwatch_install()  # idempotent
    cloudwatch = account[0]
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    cloudwatch.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {"MetricName": "ModelLatency", "Dimensions": DIMS, "Value": float(v), "Timestamp": start}
            for v in range(1, 101)
        ]
        + [{"MetricName": "Invocation5XXErrors", "Dimensions": DIMS, "Value": 2.0, "Timestamp": start}],
    )

    def query(query_id: str, name: str, stat: str) -> dict[str, Any]:
        metric = {"Namespace": "AWS/SageMaker", "MetricName": name, "Dimensions": DIMS}
        return {"Id": query_id, "MetricStat": {"Metric": metric, "Period": 300, "Stat": stat}}

    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            query("p99", "ModelLatency", "p99"),
            {**query("errors", "Invocation5XXErrors", "Sum"), "ReturnData": False},
            {"Id": "burn", "Expression": "errors / 0.001", "Period": 300},
            {
                "Id": "search",
                "Expression": "SEARCH('{AWS/SageMaker} ModelLatency', 'Maximum', 300)",
                "Period": 300,
            },
        ],
        StartTime=start - timedelta(minutes=5),
        EndTime=start + timedelta(minutes=10),
    )

    values = {r["Id"]: r["Values"] for r in answer["MetricDataResults"]}
    assert values == {"p99": [99.0], "burn": [pytest.approx(2000.0)], "search": []}


def test_the_metric_ids_an_expression_reads():
    assert metric_math.expression_names("IF(m1 > 0, m2 / m1, FILL(m3, 0)) * 100") == {"m1", "m2", "m3"}
    with pytest.raises(ValueError, match="unexpected"):
        metric_math.expression_names("SEARCH('{MlPipeline,service} Predictions', 'Sum', 300)")


def test_a_state_change_event_has_an_id_and_is_recorded_before_it_is_delivered(account):
    """EventBridge events carry an id (the training layer's runs function keys its run on it), and a
    target that fails does not lose the change from the evaluator's record."""
    cloudwatch, sns, _, topic, _ = account
    errors_alarm(cloudwatch, topic)
    delivered: list[dict] = []

    def failing_emit(event: dict) -> None:
        delivered.append(event)
        raise RuntimeError("the target refused it")

    found = AlarmEvaluator(
        store=MetricStore(cloudwatch=cloudwatch),
        cloudwatch=cloudwatch,
        publish=lambda arn, message: sns.publish(TopicArn=arn, Message=message),
        emit=failing_emit,
        composites=(),
    )
    with pytest.raises(RuntimeError, match="refused"):
        found.evaluate(NOW)
    (event,) = found.emitted
    assert delivered == [event]
    assert uuid.UUID(event["id"]).version == 4
