"""CloudWatch alarms that evaluate, and EMF lines that reach CloudWatch (moto does neither).

moto stores metric data and alarms but never evaluates an alarm (a new one starts OK), raises on
``PutCompositeAlarm``, and computes no metric math; Powertools' EMF lines go to stdout. Here:

- :func:`emf_metric_data` turns an EMF log line into ``PutMetricData`` datums (namespace,
  dimension sets, units, values, timestamp); :meth:`MetricStore.put_emf` stores them and puts
  them into the emulated CloudWatch too;
- :class:`AlarmEvaluator` evaluates metric alarms (statistic Sum/Average/Minimum/Maximum/
  SampleCount/pNN, period, evaluation periods, datapoints to alarm, missing-data treatment, metric
  math with ``IF``, ``FILL`` and arithmetic) and composite alarms (``ALARM``/``OK``/
  ``INSUFFICIENT_DATA``, ``AND``/``OR``/``NOT``), and on a state change publishes the alarm
  notification to the alarm's SNS actions and hands a ``CloudWatch Alarm State Change`` event to
  the local event dispatcher.
"""

from __future__ import annotations

import io
import json
import math
import operator
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from local.emulator.metric_math import evaluate_expression, expression_names, rule_holds

GAPS = (
    "CloudWatch alarm evaluation, composite alarms and metric math (moto stores alarms, never "
    "evaluates them): local.emulator.cloudwatch evaluates them, publishes to their topics and emits "
    "'CloudWatch Alarm State Change' events",
    "EMF metrics of the handlers reach no CloudWatch: local.emulator.cloudwatch forwards them",
)

MetricKey = tuple[str, str, frozenset[tuple[str, str]]]
Point = tuple[float, float]  # (epoch seconds, value)
# what the emulated CloudWatch aggregates itself (metrics that bypass the store are read from it)
MOTO_STATISTICS = frozenset({"Sum", "Average", "Minimum", "Maximum", "SampleCount"})
COMPARE: Mapping[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}


def emf_metric_data(line: str) -> list[tuple[str, dict[str, Any]]]:
    """``(namespace, datum)`` per metric and dimension set of one EMF line; [] for other lines."""
    try:
        document = json.loads(line)
        directives = document["_aws"]["CloudWatchMetrics"]
        at = datetime.fromtimestamp(document["_aws"]["Timestamp"] / 1000, UTC)
    except (ValueError, KeyError, TypeError):
        return []
    data = []
    for directive in directives:
        for dimension_set in directive.get("Dimensions", []):
            dimensions = [{"Name": name, "Value": str(document[name])} for name in dimension_set]
            for metric in directive.get("Metrics", []):
                values = document.get(metric["Name"])
                for value in values if isinstance(values, list) else [values]:
                    datum = {
                        "MetricName": metric["Name"],
                        "Dimensions": dimensions,
                        "Timestamp": at,
                        "Value": float(value),
                        "Unit": metric.get("Unit", "None"),
                    }
                    data.append((directive["Namespace"], datum))
    return data


def _key(namespace: str, name: str, dimensions: Iterable[Mapping[str, str]]) -> MetricKey:
    return namespace, name, frozenset((d["Name"], d["Value"]) for d in dimensions)


@dataclass
class MetricStore:
    """The datapoints alarms are evaluated on (moto keeps them too, but aggregates no percentiles).

    Datums reach the emulated CloudWatch on :meth:`flush` (the alarm poller calls it), not on the
    request path of the handler that emitted them.
    """

    cloudwatch: Any | None = None  # the emulated account's client; None: keep them here only
    points: dict[MetricKey, list[Point]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def put(self, namespace: str, data: Sequence[Mapping[str, Any]]) -> None:
        with self.lock:
            for datum in data:
                key = _key(namespace, datum["MetricName"], datum.get("Dimensions", []))
                self.points[key].append((datum["Timestamp"].timestamp(), float(datum["Value"])))
                self.pending.append((namespace, dict(datum)))

    def flush(self) -> int:
        """Put the datums stored since the last flush into the emulated CloudWatch."""
        with self.lock:
            pending, self.pending = self.pending, []
        if self.cloudwatch is None:
            return 0
        by_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for namespace, datum in pending:
            by_namespace[namespace].append(datum)
        for namespace, data in by_namespace.items():
            for first in range(0, len(data), 500):
                self.cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[first : first + 500])
        return len(pending)

    def record(self, namespace: str, name: str, dimensions: Mapping[str, str], value: float) -> None:
        """One datum now (what an AWS service would emit, e.g. the local SageMaker router's)."""
        datum = {
            "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            "Timestamp": datetime.now(UTC),
            "Value": value,
        }
        self.put(namespace, [datum])

    def put_emf(self, text: str) -> int:
        """Store the EMF lines of a handler's output; returns the datums stored."""
        by_namespace: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in text.splitlines():
            for namespace, datum in emf_metric_data(line.strip()):
                by_namespace[namespace].append(datum)
        for namespace, data in by_namespace.items():
            self.put(namespace, data)
        return sum(len(d) for d in by_namespace.values())

    def values(self, key: MetricKey, start: float, end: float) -> list[float]:
        with self.lock:
            return [v for t, v in self.points.get(key, []) if start <= t < end]


def aggregate(values: Sequence[float], statistic: str) -> float | None:
    if not values:
        return None
    simple: dict[str, Callable[[Sequence[float]], float]] = {
        "Sum": math.fsum,
        "Average": lambda v: math.fsum(v) / len(v),
        "Minimum": min,
        "Maximum": max,
        "SampleCount": lambda v: float(len(v)),
    }
    if statistic in simple:
        return simple[statistic](values)
    match = re.fullmatch(r"p(\d+(?:\.\d+)?)", statistic)
    if match:
        ordered = sorted(values)
        rank = max(0, math.ceil(float(match.group(1)) / 100 * len(ordered)) - 1)
        return ordered[rank]
    raise ValueError(f"statistic {statistic} is not emulated")


@dataclass(frozen=True)
class CompositeAlarm:
    name: str
    rule: str  # ALARM("name") AND (OK("other") OR ...), names as CloudWatch would show them
    description: str = ""
    alarm_actions: tuple[str, ...] = ()
    ok_actions: tuple[str, ...] = ()


@dataclass
class AlarmEvaluator:
    """Evaluates the emulated account's metric alarms and the given composite alarms.

    ``publish(topic_arn, message)`` sends a notification (moto SNS); ``emit(event)`` hands an
    EventBridge event to the local dispatcher.
    """

    store: MetricStore
    cloudwatch: Any
    publish: Callable[[str, str], None]
    emit: Callable[[dict[str, Any]], object]
    composites: Sequence[CompositeAlarm] = ()
    account: str = "123456789012"
    region: str = "us-east-1"
    states: dict[str, str] = field(default_factory=dict)
    emitted: list[dict[str, Any]] = field(default_factory=list)  # every state-change event, in order

    def metric_alarms(self) -> list[dict[str, Any]]:
        alarms: list[dict[str, Any]] = []
        for page in self.cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
            alarms += page["MetricAlarms"]
        return alarms

    def _series(self, query: Mapping[str, Any], end: float, period: int, count: int) -> list[float | None]:
        stat = query["MetricStat"]
        metric = stat["Metric"]
        key = _key(metric["Namespace"], metric["MetricName"], metric.get("Dimensions", []))
        if key not in self.store.points and stat["Stat"] in MOTO_STATISTICS:
            return self._stored_series(metric, stat["Stat"], end, period, count)
        return [
            aggregate(self.store.values(key, end - (i + 1) * period, end - i * period), stat["Stat"])
            for i in reversed(range(count))
        ]

    def _stored_series(
        self, metric: Mapping[str, Any], statistic: str, end: float, period: int, count: int
    ) -> list[float | None]:
        """A metric put straight into the emulated CloudWatch (PutMetricData, e.g. the drift monitor)."""
        start = end - count * period
        answer = self.cloudwatch.get_metric_statistics(
            Namespace=metric["Namespace"],
            MetricName=metric["MetricName"],
            Dimensions=metric.get("Dimensions", []),
            StartTime=datetime.fromtimestamp(start, UTC),
            EndTime=datetime.fromtimestamp(end, UTC),
            Period=period,
            Statistics=[statistic],
        )
        values: list[float | None] = [None] * count
        for point in answer["Datapoints"]:
            index = int((point["Timestamp"].timestamp() - start) // period)
            if 0 <= index < count:
                values[index] = float(point[statistic])
        return values

    def datapoints(self, alarm: Mapping[str, Any], now: datetime) -> list[float | None]:
        """The alarm's value per evaluation period, oldest first (None: missing)."""
        count = int(alarm["EvaluationPeriods"])
        end = math.floor(now.timestamp())
        if "Metrics" not in alarm or not alarm["Metrics"]:
            period = int(alarm["Period"])
            statistic = alarm.get("Statistic") or alarm["ExtendedStatistic"]
            query = {
                "MetricStat": {
                    "Metric": {k: alarm[k] for k in ("Namespace", "MetricName", "Dimensions") if k in alarm},
                    "Stat": statistic,
                }
            }
            return self._series(query, end, period, count)
        queries = alarm["Metrics"]
        series = {
            q["Id"]: self._series(q, end, int(q["MetricStat"]["Period"]), count)
            for q in queries
            if "MetricStat" in q
        }
        (result,) = [q for q in queries if q.get("ReturnData", True) and "Expression" in q] or [
            q for q in queries if q.get("ReturnData", True)
        ]
        if "MetricStat" in result:
            return series[result["Id"]]
        return [
            evaluate_expression(result["Expression"], {name: values[i] for name, values in series.items()})
            for i in range(count)
        ]

    def evaluate_metric_alarm(self, alarm: Mapping[str, Any], now: datetime) -> tuple[str, str]:
        values = self.datapoints(alarm, now)
        compare = COMPARE[alarm["ComparisonOperator"]]
        threshold = float(alarm["Threshold"])
        needed = int(alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"])
        missing = alarm.get("TreatMissingData", "missing")
        present = [v for v in values if v is not None]
        if not present:
            verdict = {
                "notBreaching": "OK",
                "breaching": "ALARM",
                "ignore": None,
                "missing": "INSUFFICIENT_DATA",
            }
            state = verdict[missing] or self.states.get(alarm["AlarmName"], "INSUFFICIENT_DATA")
            return state, f"no datapoints in {len(values)} period(s), treated as {missing}"
        breaching = sum(compare(v, threshold) for v in present)
        if missing == "breaching":
            breaching += len(values) - len(present)
        state = "ALARM" if breaching >= needed else "OK"
        shown = ", ".join("-" if v is None else f"{v:g}" for v in values)
        return state, f"[{shown}] {alarm['ComparisonOperator']} {threshold:g}: {breaching} of {needed} needed"

    def evaluate(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """One evaluation of every alarm; returns the state-change events emitted."""
        moment = now or datetime.now(UTC)
        self.store.flush()
        changes = []
        for alarm in self.metric_alarms():
            state, reason = self.evaluate_metric_alarm(alarm, moment)
            changes += self._transition(
                alarm["AlarmName"],
                description=alarm.get("AlarmDescription", ""),
                state=state,
                reason=reason,
                definition=alarm,
                now=moment,
            )
        # composites may name composites: evaluate until nothing changes
        for _ in range(len(self.composites) + 1):
            changed = False
            for composite in self.composites:
                states = {**{c.name: "INSUFFICIENT_DATA" for c in self.composites}, **self.states}
                state = "ALARM" if rule_holds(composite.rule, states) else "OK"
                definition = {"AlarmActions": composite.alarm_actions, "OKActions": composite.ok_actions}
                emitted = self._transition(
                    composite.name,
                    description=composite.description,
                    state=state,
                    reason=composite.rule,
                    definition=definition,
                    now=moment,
                    composite=True,
                )
                changes += emitted
                changed = changed or bool(emitted)
            if not changed:
                break
        return changes

    def _transition(
        self,
        name: str,
        *,
        description: str,
        state: str,
        reason: str,
        definition: Mapping[str, Any],
        now: datetime,
        composite: bool = False,
    ) -> list[dict[str, Any]]:
        previous = self.states.get(name, "INSUFFICIENT_DATA")
        self.states[name] = state
        if previous == state:
            return []
        if not composite:
            self.cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason[:1000])
        arn = f"arn:aws:cloudwatch:{self.region}:{self.account}:alarm:{name}"
        at = now.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        message = {
            "AlarmName": name,
            "AlarmDescription": description,
            "AWSAccountId": self.account,
            "NewStateValue": state,
            "NewStateReason": reason,
            "StateChangeTime": at,
            "Region": self.region,
            "AlarmArn": arn,
            "OldStateValue": previous,
        }
        actions = {"ALARM": "AlarmActions", "OK": "OKActions"}.get(state)
        for topic in definition.get(actions, ()) if actions else ():
            if topic.startswith("arn:aws:sns:"):
                self.publish(topic, json.dumps(message))
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),  # every EventBridge event has one (a rule target may key on it)
            "source": "aws.cloudwatch",
            "detail-type": "CloudWatch Alarm State Change",
            "account": self.account,
            "region": self.region,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resources": [arn],
            "detail": {
                "alarmName": name,
                "state": {"value": state, "reason": reason, "timestamp": at},
                "previousState": {"value": previous},
            },
        }
        self.emitted.append(event)
        self.emit(event)
        return [event]


def composite_alarms(
    templates: Mapping[str, Mapping[str, Any]], *, account: str, region: str
) -> list[CompositeAlarm]:
    """The templates' composite alarms, their rules' ARNs resolved to alarm names.

    ``templates`` maps stack names to deployed template bodies; rule parts are ``Fn::GetAtt`` of an
    alarm in the same template or ``Fn::ImportValue`` of an export whose value is one.
    """
    names: dict[tuple[str, str], str] = {}
    exports: dict[str, tuple[str, str]] = {}
    topics: dict[tuple[str, str], str] = {}
    for stack, template in templates.items():
        for logical, resource in template.get("Resources", {}).items():
            props = resource.get("Properties", {})
            if (
                resource["Type"] == "AWS::CloudWatch::Alarm"
                or resource["Type"] == "AWS::CloudWatch::CompositeAlarm"
            ):
                names[(stack, logical)] = props["AlarmName"]
            elif resource["Type"] == "AWS::SNS::Topic":
                topics[(stack, logical)] = props.get("TopicName", logical)
        for output in template.get("Outputs", {}).values():
            value = output.get("Value")
            if "Export" in output and isinstance(value, dict) and "Fn::GetAtt" in value:
                exports[json.dumps(output["Export"]["Name"], sort_keys=True)] = (
                    stack,
                    value["Fn::GetAtt"][0],
                )

    def part(stack: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        if value == {"Ref": "AWS::Partition"}:
            return "aws"
        if "Fn::GetAtt" in value:
            return names[(stack, value["Fn::GetAtt"][0])]
        if "Fn::ImportValue" in value:
            return names[exports[json.dumps(value["Fn::ImportValue"], sort_keys=True)]]
        raise ValueError(f"composite rule part {value!r} is not emulated")

    composites = []
    for stack, template in templates.items():
        for resource in template.get("Resources", {}).values():
            if resource["Type"] != "AWS::CloudWatch::CompositeAlarm":
                continue
            props = resource["Properties"]
            rule = props["AlarmRule"]
            text = "".join(part(stack, p) for p in rule["Fn::Join"][1]) if isinstance(rule, dict) else rule
            # the rule joins in ARNs: arn:...:alarm:NAME -> NAME
            text = re.sub(r'"arn:[^"]*:alarm:([^"]+)"', r'"\1"', text)
            text = re.sub(r'\("([^"]+)"\)', r'("\1")', text)

            def topic_arns(key: str, stack: str = stack, props: Mapping[str, Any] = props) -> tuple[str, ...]:
                return tuple(
                    f"arn:aws:sns:{region}:{account}:{topics[(stack, a['Ref'])]}"
                    for a in props.get(key, [])
                    if isinstance(a, dict) and "Ref" in a
                )

            composites.append(
                CompositeAlarm(
                    name=props["AlarmName"],
                    rule=text,
                    description=props.get("AlarmDescription", ""),
                    alarm_actions=topic_arns("AlarmActions"),
                    ok_actions=topic_arns("OKActions"),
                )
            )
    return composites


class EmfTee(io.TextIOBase):
    """Stands in for ``sys.stdout``: writes through, and stores the EMF lines it sees."""

    def __init__(self, out: Any, store: MetricStore) -> None:
        super().__init__()
        self.out, self.store = out, store

    def write(self, text: str) -> int:
        written: int = self.out.write(text)
        if '"_aws"' in text:
            self.store.put_emf(text)
        return written

    def flush(self) -> None:
        self.out.flush()


PSEUDO = {"AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


def resolve(
    value: Any, *, ids: Mapping[str, str], exports: Mapping[str, str], account: str, region: str
) -> Any:
    """A template value with Ref, Fn::GetAtt (Arn, QueueName), Fn::ImportValue and Fn::Join resolved."""

    def walk(node: Any) -> Any:  # noqa: PLR0911 (one return per intrinsic)
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "Ref" in node:
            name = node["Ref"]
            return {"AWS::AccountId": account, "AWS::Region": region, **PSEUDO}.get(name) or ids[name]
        if "Fn::ImportValue" in node:
            return exports[walk(node["Fn::ImportValue"])]
        if "Fn::Join" in node:
            separator, parts = node["Fn::Join"]
            return separator.join(str(walk(part)) for part in parts)
        if "Fn::GetAtt" in node:
            logical, attribute = node["Fn::GetAtt"]
            physical = ids[logical]
            if attribute == "QueueName":
                return physical.rstrip("/").rsplit("/", 1)[-1]
            if attribute == "Arn" and physical.startswith("arn:"):
                return physical
            raise ValueError(f"Fn::GetAtt {logical}.{attribute} is not emulated")
        return {key: walk(item) for key, item in node.items()}

    return walk(value)


ALARM_PARAMETERS = frozenset(
    {
        "AlarmName",
        "AlarmDescription",
        "ActionsEnabled",
        "OKActions",
        "AlarmActions",
        "InsufficientDataActions",
        "MetricName",
        "Namespace",
        "Statistic",
        "ExtendedStatistic",
        "Dimensions",
        "Period",
        "Unit",
        "EvaluationPeriods",
        "DatapointsToAlarm",
        "Threshold",
        "ComparisonOperator",
        "TreatMissingData",
        "Metrics",
    }
)


def create_metric_alarms(
    cloudwatch: Any,
    templates: Mapping[str, Mapping[str, Any]],
    *,
    ids: Mapping[str, Mapping[str, str]],
    exports: Mapping[str, str],
    account: str,
    region: str,
) -> list[str]:
    """Put the templates' metric alarms into the emulated account (moto's CloudFormation skips them)."""
    created = []
    for stack, template in templates.items():
        for resource in template.get("Resources", {}).values():
            if resource["Type"] != "AWS::CloudWatch::Alarm":
                continue
            props = resolve(
                resource["Properties"], ids=ids[stack], exports=exports, account=account, region=region
            )
            cloudwatch.put_metric_alarm(**{k: v for k, v in props.items() if k in ALARM_PARAMETERS})
            created.append(props["AlarmName"])
    return created


def literal_alarm_references(template: dict[str, Any], *, account: str, region: str) -> int:
    """Replace references to alarms and dashboards by their names and ARNs, in place.

    moto's CloudFormation has no CloudWatch alarm, composite alarm or dashboard type, and refuses a
    template whose ``Fn::GetAtt`` names one; their names are literal in the project's templates,
    so ``Ref`` becomes the name and ``Fn::GetAtt [.., Arn]`` the alarm's ARN. Returns the count.
    """
    names: dict[str, str] = {}
    for logical, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind in {"AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm"} and isinstance(
            props.get("AlarmName"), str
        ):
            names[logical] = props["AlarmName"]
        elif kind == "AWS::CloudWatch::Dashboard" and isinstance(props.get("DashboardName"), str):
            names[logical] = props["DashboardName"]
    replaced = 0

    def walk(node: Any) -> Any:
        nonlocal replaced
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"} and node["Ref"] in names:
            replaced += 1
            return names[node["Ref"]]
        if set(node) == {"Fn::GetAtt"} and node["Fn::GetAtt"][0] in names and node["Fn::GetAtt"][1] == "Arn":
            replaced += 1
            return f"arn:aws:cloudwatch:{region}:{account}:alarm:{names[node['Fn::GetAtt'][0]]}"
        return {key: walk(item) for key, item in node.items()}

    for section in ("Resources", "Outputs"):
        if section in template:
            template[section] = walk(template[section])
    return replaced


METRIC_DATA_GAP = (
    "CloudWatch GetMetricData: moto answers a percentile statistic (pNN) with None, which fails the whole "
    "response, and computes no metric math; local.emulator.cloudwatch computes both (what `mlpipe dashboard` "
    "reads)"
)


def _expression_series(
    expression: str, results: Sequence[Mapping[str, Any]]
) -> tuple[list[float], list[datetime]]:
    """A metric-math expression over the other queries' results, one value per timestamp they share.

    Only the arithmetic :func:`evaluate_expression` knows; any other expression (``SEARCH``, ...)
    has no datapoints here.
    """
    by_id = {r["id"]: dict(zip(r["timestamps"], r["values"], strict=True)) for r in results}
    try:
        referenced = expression_names(expression) & set(by_id)
    except ValueError:  # SEARCH(...) and the rest of metric math this parser does not know
        return [], []
    stamps = sorted({t for name in referenced for t in by_id[name]})
    values, timestamps = [], []
    for stamp in stamps:
        names = {name: _float_or_none(by_id[name].get(stamp)) for name in referenced}
        try:
            value = evaluate_expression(expression, names)
        except (ValueError, KeyError, IndexError, TypeError):
            return [], []
        if value is not None:
            values.append(value)
            timestamps.append(stamp)
    return values, timestamps


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def install() -> tuple[str, ...]:
    """Percentiles and metric math in moto's ``GetMetricData`` (idempotent)."""
    from moto.cloudwatch import models  # noqa: PLC0415 - the emulator is only loaded by the local stage

    original = models.Statistics.get_statistics_for_type
    if getattr(original, "_local_stage", False):
        return (METRIC_DATA_GAP,)

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        if re.fullmatch(r"p(\d+(?:\.\d+)?)", stat):
            return aggregate(self.metric_single_values_list, stat)
        return original(self, stat)

    get_statistics_for_type._local_stage = True  # type: ignore[attr-defined]
    models.Statistics.get_statistics_for_type = get_statistics_for_type  # type: ignore[method-assign]
    models.parse_expression = _expression_series  # type: ignore[attr-defined,assignment]
    return (METRIC_DATA_GAP,)
