"""Alarms: single-metric alarms that notify (notice topic) and composite alarms that page.

What pages (``paging`` topic):

- ``model degraded`` per variant: the endpoint's guardrail alarms of the variant (5XX, latency
  p99; they stay in the inference layer, which rolls deployments back on them, and are not
  alarmed twice here) or its 4XX rate, **and** the variant takes traffic;
- ``pipeline down``: the API answers 5XX, the stream consumer is stuck, or the predictions table
  fails;
- the availability SLO of ``POST /predict``: multi-window burn-rate alarms;
- drift: a share of the features drifted (the drift monitor's metric).

Every other alarm notifies the ``notice`` topic. Alarms whose only purpose is to be part of a
composite rule (the variant-takes-traffic signals, the burn-rate windows) have no actions: their
description says so, and ``tests/infra/test_observability.py`` checks each is in a rule.
Thresholds and periods come from ``config.observability``; the reason of each is written there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from shared import telemetry
from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge

Missing = cloudwatch.TreatMissingData
Compare = cloudwatch.ComparisonOperator


@dataclass(frozen=True)
class WatchedFunction:
    """A Lambda function of a lower layer, by a short name and its function name."""

    name: str
    function_name: str


@dataclass(frozen=True)
class WatchedQueue:
    name: str
    queue_name: str


@dataclass(frozen=True)
class Watched:
    """What the alarms watch, handed over by the stack from the lower layers."""

    endpoint_name: str
    guardrail_alarms: Mapping[str, Sequence[cloudwatch.IAlarm]]  # per variant: 5XX, latency
    api_name: str
    api_stage: str
    functions: Sequence[WatchedFunction]
    stream_function_name: str
    stream_name: str
    queues: Sequence[WatchedQueue]
    state_machine_arns: dict[str, str]
    table_name: str


TABLE_OPERATIONS = ("PutItem", "TransactWriteItems", "Query", "GetItem", "UpdateItem", "BatchWriteItem")


def metric(
    namespace: str,
    name: str,
    dimensions: Mapping[str, str],
    statistic: str,
    *,
    period: cdk.Duration,
    label: str | None = None,
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=name,
        dimensions_map=dict(dimensions),
        statistic=statistic,
        period=period,
        label=label,
    )


def variant_metric(
    endpoint_name: str, variant: str, name: str, statistic: str, period: cdk.Duration
) -> cloudwatch.Metric:
    return metric(
        "AWS/SageMaker",
        name,
        {"EndpointName": endpoint_name, "VariantName": variant},
        statistic,
        period=period,
    )


def drift_metric(
    name: str, variant: str, period: cdk.Duration, statistic: str = "Maximum"
) -> cloudwatch.Metric:
    return metric(
        telemetry.DEFAULT_NAMESPACE,
        name,
        {telemetry.SERVICE: telemetry.SERVICE_NAMES["drift"], telemetry.VARIANT: variant},
        statistic,
        period=period,
    )


def predict_errors(watched: Watched, period: cdk.Duration) -> cloudwatch.Metric:
    """The share of ``POST /predict`` requests answered 5XX (Average of API Gateway's 5XXError)."""
    return cloudwatch.Metric(
        namespace="AWS/ApiGateway",
        metric_name="5XXError",
        dimensions_map={
            "ApiName": watched.api_name,
            "Stage": watched.api_stage,
            "Method": "POST",
            "Resource": "/predict",
        },
        statistic="Average",
        period=period,
    )


class OperationalAlarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        watched: Watched,
        paging: sns.ITopic,
        notice: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._settings = config.observability
        self._period = cdk.Duration.minutes(self._settings.period_minutes)
        self._page = actions.SnsAction(paging)
        self._notify = actions.SnsAction(notice)
        self.alarms: list[cloudwatch.Alarm] = []
        self.composites: list[cloudwatch.CompositeAlarm] = []
        self.model_degraded: dict[str, cloudwatch.CompositeAlarm] = {}
        self.drift: dict[str, cloudwatch.Alarm] = {}
        self._variants(watched)
        api_5xx = self._api(watched)
        self._slo(watched)
        iterator_age = self._functions(watched)
        self._queues(watched)
        self._executions(watched)
        table_errors = self._table(watched)
        self.pipeline_down = self._composite(
            "PipelineDown",
            "pipeline-down",
            "Predictions cannot be served or stored: the API answers 5XX, the stream consumer is stuck, "
            "or the predictions table fails. Pages.",
            cloudwatch.AlarmRule.any_of(
                *(
                    cloudwatch.AlarmRule.from_alarm(a, cloudwatch.AlarmState.ALARM)
                    for a in (api_5xx, iterator_age, table_errors)
                )
            ),
        )

    # ----- helpers -----
    def _alarm(
        self,
        construct_id: str,
        name: str,
        description: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        comparison: cloudwatch.ComparisonOperator = Compare.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        missing: cloudwatch.TreatMissingData = Missing.NOT_BREACHING,
        action: actions.SnsAction | None = None,
        composite_input: bool = False,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=self._config.resource_name(name),
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm or evaluation_periods,
            comparison_operator=comparison,
            treat_missing_data=missing,
        )
        if composite_input:
            acknowledge(
                alarm,
                guard=["cloudwatch_alarm_action_check"],
                reason="An input of a composite alarm only (a burn-rate window or a variant-takes-traffic "
                "signal): the composite alarm that reads it pages; an action here would alert twice or on "
                "mere traffic.",
            )
        else:
            chosen = action or self._notify
            alarm.add_alarm_action(chosen)
            alarm.add_ok_action(chosen)
        self.alarms.append(alarm)
        return alarm

    def _composite(
        self, construct_id: str, name: str, description: str, rule: cloudwatch.IAlarmRule
    ) -> cloudwatch.CompositeAlarm:
        composite = cloudwatch.CompositeAlarm(
            self,
            construct_id,
            composite_alarm_name=self._config.resource_name(name),
            alarm_description=description,
            alarm_rule=rule,
        )
        composite.add_alarm_action(self._page)
        composite.add_ok_action(self._page)
        self.composites.append(composite)
        return composite

    # ----- per variant -----
    def _variants(self, watched: Watched) -> None:
        drift = self._settings.drift
        hourly = cdk.Duration.minutes(drift.window_minutes)
        for variant in self._config.inference.variants:
            name, low = variant.name, variant.name.lower()
            invocations = variant_metric(watched.endpoint_name, name, "Invocations", "Sum", self._period)
            client_errors = variant_metric(
                watched.endpoint_name, name, "Invocation4XXErrors", "Sum", self._period
            )
            rate_4xx = self._alarm(
                f"{name}ClientErrorRate",
                f"{low}-4xx-rate",
                f"{name}: more than {self._settings.variant_4xx_rate:.0%} of invocations answered 4XX by the "
                "model container (requests the model rejects); notice.",
                cloudwatch.MathExpression(
                    expression="IF(invocations > 0, errors / invocations, 0)",
                    using_metrics={"invocations": invocations, "errors": client_errors},
                    period=self._period,
                    label=f"{name} 4XX rate",
                ),
                threshold=self._settings.variant_4xx_rate,
                evaluation_periods=3,
                datapoints_to_alarm=2,
            )
            takes_traffic = self._alarm(
                f"{name}TakesTraffic",
                f"{low}-takes-traffic",
                f"{name} is invoked (at least one invocation in the period): a signal for the "
                f"{low}-degraded composite alarm only, it notifies nobody. No data means no traffic.",
                invocations,
                threshold=1,
                composite_input=True,
            )
            guardrails = watched.guardrail_alarms[name]
            self.model_degraded[name] = self._composite(
                f"{name}Degraded",
                f"{low}-degraded",
                f"{name} is degraded while it takes traffic: the endpoint's 5XX or latency guardrail alarm "
                f"(inference layer) or its 4XX rate. Pages.",
                cloudwatch.AlarmRule.all_of(
                    cloudwatch.AlarmRule.any_of(
                        *(
                            cloudwatch.AlarmRule.from_alarm(a, cloudwatch.AlarmState.ALARM)
                            for a in (*guardrails, rate_4xx)
                        )
                    ),
                    cloudwatch.AlarmRule.from_alarm(takes_traffic, cloudwatch.AlarmState.ALARM),
                ),
            )
            # No data: the monitor had too few rows to score (it then publishes the count only),
            # which is no evidence of drift.
            self.drift[name] = self._alarm(
                f"{name}Drift",
                f"{low}-drift",
                f"{name}: at least {drift.alarm_drifted_share:.0%} of the features drifted from the training "
                "baseline in the last window (PSI or KS); pages, and the training pipeline retrains on it.",
                drift_metric(telemetry.DRIFTED_FEATURE_SHARE, name, hourly),
                threshold=drift.alarm_drifted_share,
                action=self._page,
            )
            self._alarm(
                f"{name}Accuracy",
                f"{low}-accuracy",
                f"{name}: accuracy on the window's predictions with feedback below "
                f"{drift.accuracy_floor:.0%} "
                f"(published only with at least {drift.min_feedback} labels); notice. No data: too little "
                "feedback to judge.",
                drift_metric(telemetry.FEEDBACK_ACCURACY, name, hourly, "Average"),
                threshold=drift.accuracy_floor,
                comparison=Compare.LESS_THAN_THRESHOLD,
            )
            self._alarm(
                f"{name}ScoreDrift",
                f"{low}-score-drift",
                f"{name}: the PSI of the prediction scores against training is at least "
                f"{drift.psi_threshold} "
                "(the model answers differently); notice.",
                drift_metric(telemetry.PREDICTION_SCORE_DRIFT, name, hourly),
                threshold=drift.psi_threshold,
            )

    # ----- API -----
    def _api(self, watched: Watched) -> cloudwatch.Alarm:
        dimensions = {"ApiName": watched.api_name, "Stage": watched.api_stage}
        api_5xx = self._alarm(
            "Api5xxRate",
            "api-5xx-rate",
            f"More than {self._settings.api_5xx_rate:.0%} of API requests answered 5XX in 2 of 3 periods; "
            "notice (pipeline-down pages on it).",
            metric("AWS/ApiGateway", "5XXError", dimensions, "Average", period=self._period),
            threshold=self._settings.api_5xx_rate,
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )
        p99 = self._config.slo.p99_latency_ms
        self._alarm(
            "ApiLatency",
            "api-latency-p99",
            f"API latency p99 above the SLO's {p99} ms for 3 periods in a row; notice.",
            metric("AWS/ApiGateway", "Latency", dimensions, "p99", period=self._period),
            threshold=p99,
            comparison=Compare.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
        )
        return api_5xx

    def _slo(self, watched: Watched) -> None:
        settings = self._settings
        budget = 1 - settings.availability_target
        self.burn_rate_alarms: list[cloudwatch.CompositeAlarm] = []
        for window in settings.burn_rate_windows:
            ratio = window.burn_rate * budget
            label = f"{window.burn_rate:g}x"
            windows = []
            for minutes in (window.long_minutes, window.short_minutes):
                windows.append(
                    self._alarm(
                        f"Burn{label.replace('.', '_')}Over{minutes}m",
                        f"predict-burn-{label.replace('.', '-')}-{minutes}m",
                        f"POST /predict burns its error budget {label} or faster over {minutes} minutes "
                        f"(5XX share >= {ratio:.4%}): a window of the burn-rate composite, notifies nobody "
                        "itself. No requests burn no budget.",
                        predict_errors(watched, cdk.Duration.minutes(minutes)),
                        threshold=ratio,
                        composite_input=True,
                    )
                )
            self.burn_rate_alarms.append(
                self._composite(
                    f"Burn{label.replace('.', '_')}",
                    f"predict-slo-burn-{label.replace('.', '-')}",
                    f"The availability SLO of POST /predict ({settings.availability_target:.1%}) "
                    f"burns {label} "
                    f"over {window.long_minutes} min, confirmed over {window.short_minutes} min. Pages.",
                    cloudwatch.AlarmRule.all_of(
                        *(cloudwatch.AlarmRule.from_alarm(a, cloudwatch.AlarmState.ALARM) for a in windows)
                    ),
                )
            )

    # ----- functions, stream -----
    def _functions(self, watched: Watched) -> cloudwatch.Alarm:
        settings = self._settings
        for function in watched.functions:
            dimensions = {"FunctionName": function.function_name}
            key = "".join(part.capitalize() for part in function.name.split("-"))
            self._alarm(
                f"{key}Errors",
                f"{function.name}-errors",
                f"Function {function.name}: at least {settings.function_errors} error(s) in a period "
                "(none are expected); notice.",
                metric("AWS/Lambda", "Errors", dimensions, "Sum", period=self._period),
                threshold=settings.function_errors,
            )
            self._alarm(
                f"{key}Throttles",
                f"{function.name}-throttles",
                f"Function {function.name}: throttled (reserved concurrency reached); notice.",
                metric("AWS/Lambda", "Throttles", dimensions, "Sum", period=self._period),
                threshold=settings.function_throttles,
            )
        # Lambda reports IteratorAge per stream invocation; no invocations, no records waiting.
        return self._alarm(
            "StreamIteratorAge",
            "stream-iterator-age",
            f"Stream records wait longer than {settings.iterator_age_ms // 1000} s for the consumer, "
            "3 periods in a row; notice (pipeline-down pages on it).",
            metric(
                "AWS/Lambda",
                "IteratorAge",
                {"FunctionName": watched.stream_function_name},
                "Maximum",
                period=self._period,
            ),
            threshold=settings.iterator_age_ms,
            comparison=Compare.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
        )

    def _queues(self, watched: Watched) -> None:
        for queue in watched.queues:
            key = "".join(part.capitalize() for part in queue.name.split("-"))
            self._alarm(
                f"{key}Depth",
                f"{queue.name}-depth",
                f"Queue {queue.name} holds a message (a failure set aside for a person to look at); notice.",
                metric(
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    {"QueueName": queue.queue_name},
                    "Maximum",
                    period=self._period,
                ),
                threshold=1,
            )

    def _executions(self, watched: Watched) -> None:
        for name, arn in watched.state_machine_arns.items():
            key = name.capitalize()
            for metric_name, what in (("ExecutionsFailed", "failed"), ("ExecutionsTimedOut", "timed out")):
                self._alarm(
                    f"{key}{metric_name}",
                    f"{name}-executions-{what.replace(' ', '-')}",
                    f"A {name} run {what}; notice (the run's own notification topic has the details).",
                    metric("AWS/States", metric_name, {"StateMachineArn": arn}, "Sum", period=self._period),
                    threshold=1,
                )

    def _table(self, watched: Watched) -> cloudwatch.Alarm:
        def table_metric(name: str, dimensions: dict[str, str]) -> cloudwatch.Metric:
            return metric(
                "AWS/DynamoDB",
                name,
                {"TableName": watched.table_name, **dimensions},
                "Sum",
                period=self._period,
            )

        self._alarm(
            "TableThrottles",
            "predictions-table-throttles",
            "The predictions table throttled reads or writes (on-demand capacity is exceeded only by "
            "sudden bursts); notice.",
            cloudwatch.MathExpression(
                expression="reads + writes",
                using_metrics={
                    "reads": table_metric("ReadThrottleEvents", {}),
                    "writes": table_metric("WriteThrottleEvents", {}),
                },
                period=self._period,
                label="throttle events",
            ),
            threshold=1,
        )
        errors = {
            f"e{index}": table_metric("SystemErrors", {"Operation": operation})
            for index, operation in enumerate(TABLE_OPERATIONS)
        }
        return self._alarm(
            "TableSystemErrors",
            "predictions-table-system-errors",
            "DynamoDB answered the project's calls on the predictions table with 500s in 2 of 3 periods; "
            "notice (pipeline-down pages on it).",
            cloudwatch.MathExpression(
                expression=" + ".join(f"FILL({key}, 0)" for key in errors),
                using_metrics=errors,
                period=self._period,
                label="system errors",
            ),
            threshold=1,
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )
