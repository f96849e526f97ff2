"""One dashboard per stage, rows by concern (the order the on-call engineer reads them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from shared import telemetry
from shared.config import EnvironmentConfig
from stacks.observability.alarms import (
    TABLE_OPERATIONS,
    Watched,
    drift_metric,
    metric,
    predict_errors,
    variant_metric,
)

WIDTH = 24
HOUR = cdk.Duration.hours(1)


def _graph(
    title: str, metrics: Sequence[cloudwatch.IMetric], width: int = 8, **kwargs: object
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=list(metrics), width=width, height=6, **kwargs)  # type: ignore[arg-type]


def _metric(
    namespace: str,
    name: str,
    dimensions: Mapping[str, str],
    statistic: str,
    label: str | None = None,
) -> cloudwatch.Metric:
    return metric(namespace, name, dimensions, statistic, period=cdk.Duration.minutes(5), label=label)


class OperationsDashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        watched: Watched,
        alarms: Sequence[cloudwatch.IAlarm],
        query_names: Mapping[str, str],
        rule_names: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        variants = [v.name for v in config.inference.variants]
        region = cdk.Stack.of(self).region
        links = " | ".join(
            f"[{key}](https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:logs-insights"
            f"?queryName={name})"
            for key, name in query_names.items()
        )
        rows: list[list[cloudwatch.IWidget]] = []
        rows.append(
            [
                cloudwatch.TextWidget(
                    markdown=f"# ml-pipeline {config.name}\nSaved Logs Insights queries: {links}",
                    width=WIDTH,
                    height=2,
                ),
                cloudwatch.AlarmStatusWidget(title="What pages", alarms=list(alarms), width=WIDTH, height=3),
            ]
        )
        endpoint = watched.endpoint_name
        rows.append(
            [
                _graph(
                    "Invocations per variant",
                    [
                        variant_metric(endpoint, v, "Invocations", "Sum", cdk.Duration.minutes(5))
                        for v in variants
                    ],
                    width=6,
                ),
                _graph(
                    "ModelLatency p50/p99 (µs)",
                    [
                        variant_metric(endpoint, v, "ModelLatency", s, cdk.Duration.minutes(5))
                        for v in variants
                        for s in ("p50", "p99")
                    ],
                    width=6,
                ),
                _graph(
                    "OverheadLatency p50/p99 (µs)",
                    [
                        variant_metric(endpoint, v, "OverheadLatency", s, cdk.Duration.minutes(5))
                        for v in variants
                        for s in ("p50", "p99")
                    ],
                    width=6,
                ),
                _graph(
                    "4XX / 5XX per variant",
                    [
                        variant_metric(endpoint, v, n, "Sum", cdk.Duration.minutes(5))
                        for v in variants
                        for n in ("Invocation4XXErrors", "Invocation5XXErrors")
                    ],
                    width=6,
                ),
            ]
        )
        api = {"ApiName": watched.api_name, "Stage": watched.api_stage}
        api_service = {telemetry.SERVICE: telemetry.SERVICE_NAMES["api"]}
        rows.append(
            [
                _graph("API requests", [_metric("AWS/ApiGateway", "Count", api, "Sum")], width=5),
                _graph(
                    "API latency p99 (ms)",
                    [
                        _metric("AWS/ApiGateway", "Latency", api, "p99"),
                        _metric("AWS/ApiGateway", "IntegrationLatency", api, "p99"),
                    ],
                    width=5,
                ),
                _graph(
                    "API 4XX / 5XX",
                    [
                        _metric("AWS/ApiGateway", "4XXError", api, "Sum"),
                        _metric("AWS/ApiGateway", "5XXError", api, "Sum"),
                    ],
                    width=5,
                ),
                _graph(
                    "Answer cache hits / misses",
                    [
                        _metric(telemetry.NAMESPACE, telemetry.CACHE_HITS, api_service, "Sum"),
                        _metric(telemetry.NAMESPACE, telemetry.CACHE_MISSES, api_service, "Sum"),
                    ],
                    width=4,
                ),
                _graph(
                    "Predictions per variant (handlers)",
                    [
                        _metric(
                            telemetry.DEFAULT_NAMESPACE,
                            telemetry.PREDICTIONS,
                            {**api_service, telemetry.VARIANT: v},
                            "Sum",
                            f"{v} api",
                        )
                        for v in variants
                    ],
                    width=5,
                ),
            ]
        )
        functions = watched.functions
        rows.append(
            [
                _graph(
                    title,
                    [
                        _metric("AWS/Lambda", name, {"FunctionName": f.function_name}, statistic, f.name)
                        for f in functions
                    ],
                    width=6,
                )
                for title, name, statistic in (
                    ("Function errors", "Errors", "Sum"),
                    ("Function throttles", "Throttles", "Sum"),
                    ("Function duration p99 (ms)", "Duration", "p99"),
                    ("Concurrent executions", "ConcurrentExecutions", "Maximum"),
                )
            ]
        )
        stream_name = watched.stream_name
        rows.append(
            [
                _graph(
                    "Stream incoming records",
                    [_metric("AWS/Kinesis", "IncomingRecords", {"StreamName": stream_name}, "Sum")],
                    width=6,
                ),
                _graph(
                    "Stream iterator age (ms)",
                    [
                        _metric(
                            "AWS/Lambda",
                            "IteratorAge",
                            {"FunctionName": watched.stream_function_name},
                            "Maximum",
                        )
                    ],
                    width=6,
                ),
                _graph(
                    "Failure queues and DLQs depth",
                    [
                        _metric(
                            "AWS/SQS",
                            "ApproximateNumberOfMessagesVisible",
                            {"QueueName": q.queue_name},
                            "Maximum",
                            q.name,
                        )
                        for q in watched.queues
                    ],
                    width=12,
                ),
            ]
        )
        rows.append(
            [
                _graph(
                    "Step Functions executions failed / timed out",
                    [
                        _metric("AWS/States", n, {"StateMachineArn": arn}, "Sum", f"{name} {n}")
                        for name, arn in watched.state_machine_arns.items()
                        for n in ("ExecutionsFailed", "ExecutionsTimedOut")
                    ],
                ),
                _graph(
                    "Batch jobs failed",
                    [
                        _metric("AWS/Events", "MatchedEvents", {"RuleName": rule}, "Sum", name)
                        for name, rule in rule_names.items()
                    ],
                ),
                _graph(
                    "Predictions table throttles / system errors",
                    [
                        _metric(
                            "AWS/DynamoDB", "ReadThrottleEvents", {"TableName": watched.table_name}, "Sum"
                        ),
                        _metric(
                            "AWS/DynamoDB", "WriteThrottleEvents", {"TableName": watched.table_name}, "Sum"
                        ),
                        *(
                            _metric(
                                "AWS/DynamoDB",
                                "SystemErrors",
                                {"TableName": watched.table_name, "Operation": op},
                                "Sum",
                                f"SystemErrors {op}",
                            )
                            for op in TABLE_OPERATIONS
                        ),
                    ],
                ),
            ]
        )
        drift_service = telemetry.SERVICE_NAMES["drift"]
        rows.append(
            [
                *(
                    _graph(
                        f"Feature drift (PSI) {v}",
                        [
                            cloudwatch.MathExpression(
                                expression=(
                                    f"SEARCH('{{{telemetry.DEFAULT_NAMESPACE},"
                                    f"{telemetry.SERVICE},{telemetry.VARIANT}}} "
                                    f'{telemetry.SERVICE}="{drift_service}" {telemetry.VARIANT}="{v}" '
                                    f"MetricName=\"{telemetry.FEATURE_DRIFT_PREFIX}\"', 'Maximum', 3600)"
                                ),
                                label="",
                                period=HOUR,
                            )
                        ],
                        width=6,
                    )
                    for v in variants
                ),
                _graph(
                    "Prediction-score drift (PSI) and drifted share",
                    [
                        drift_metric(n, v, HOUR)
                        for v in variants
                        for n in (
                            telemetry.PREDICTION_SCORE_DRIFT,
                            telemetry.DRIFTED_FEATURE_SHARE,
                            telemetry.FEATURE_DRIFT_MAX,
                        )
                    ],
                    width=6,
                ),
                _graph(
                    "Drift window rows",
                    [drift_metric(telemetry.DRIFT_SAMPLE_COUNT, v, HOUR, "Sum") for v in variants],
                    width=6,
                ),
            ]
        )
        budget = 1 - config.observability.availability_target
        rows.append(
            [
                _graph(
                    "POST /predict SLO burn rate",
                    [
                        cloudwatch.MathExpression(
                            expression=f"errors{w} / {budget:.6f}",
                            using_metrics={f"errors{w}": predict_errors(watched, cdk.Duration.minutes(w))},
                            label=f"burn rate over {w} min",
                            period=cdk.Duration.minutes(w),
                        )
                        for w in sorted(
                            {
                                m
                                for b in config.observability.burn_rate_windows
                                for m in (b.long_minutes, b.short_minutes)
                            }
                        )
                    ],
                    width=12,
                ),
                _graph(
                    "Accuracy per variant (feedback)",
                    [drift_metric(telemetry.FEEDBACK_ACCURACY, v, HOUR, "Average") for v in variants],
                    width=12,
                ),
            ]
        )
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=config.resource_name("operations"),
            widgets=rows,
            default_interval=cdk.Duration.hours(6),
        )
