"""Saved CloudWatch Logs Insights queries over every function's and job's log group."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_logs as logs
from constructs import Construct

from shared.config import EnvironmentConfig

# Powertools' JSON logs carry service, level, message, correlation_id, xray_trace_id; Lambda's
# JSON platform records carry type = "platform.report" with record.metrics.durationMs.
QUERIES = {
    "request-story": (
        "One request's story across services: replace REQUEST_ID with a prediction id, an API "
        "request id or an X-Ray trace id",
        "fields @timestamp, service, level, message, @logStream\n"
        '| filter correlation_id = "REQUEST_ID" or predictionId = "REQUEST_ID" or requestId = "REQUEST_ID"'
        ' or xray_trace_id = "REQUEST_ID" or xrayTraceId = "REQUEST_ID"\n'
        "| sort @timestamp asc\n| limit 200",
    ),
    "errors-by-service": (
        "Errors by service, per 5 minutes",
        'fields @timestamp, service, message\n| filter level = "ERROR" or status >= 500\n'
        "| stats count(*) as errors by service, bin(5m)",
    ),
    "slowest-requests": (
        "The slowest function invocations and API requests",
        "fields @timestamp, @log, record.requestId, record.metrics.durationMs, requestId, responseLatency\n"
        '| filter type = "platform.report" or ispresent(responseLatency)\n'
        "| sort coalesce(record.metrics.durationMs, responseLatency) desc\n| limit 50",
    ),
    "rejected-inputs": (
        "Rejected inputs by reason: API answers 4XX (request validation, schema), stream poison records",
        "fields @timestamp, resourcePath, status, error, reason, message\n"
        '| filter (status >= 400 and status < 500) or message = "request rejected" or ispresent(poison)\n'
        "| stats count(*) as rejected by resourcePath, status, coalesce(reason, error, message)",
    ),
}


class LogQueries(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        log_group_names: Sequence[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.names: dict[str, str] = {}
        for key, (description, query) in QUERIES.items():
            name = f"ml-pipeline/{config.name}/{key}"
            logs.CfnQueryDefinition(
                self,
                "".join(part.capitalize() for part in key.split("-")),
                name=name,
                query_string=f"# {description}\n{query}",
                log_group_names=list(log_group_names),
            )
            self.names[key] = name
