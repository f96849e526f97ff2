"""Drift monitor (Lambda, scheduled): one run of :func:`monitor.run` over every variant."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared import telemetry
from stacks.observability.runtime.drift.monitor import Clients, MonitorSettings, run

SERVICE = telemetry.SERVICE_NAMES["drift"]
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=telemetry.TRACED_MODULES)


@cache
def clients() -> Clients:
    return Clients(*(boto3.client(name) for name in ("dynamodb", "s3", "ssm", "cloudwatch", "events")))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = MonitorSettings.model_validate(dict(os.environ))
    results = run(clients(), settings, datetime.now(UTC))
    summaries = [result.summary() for result in results]
    for summary in summaries:
        if summary["drifted"]:
            logger.warning("data drift detected", extra=summary)
        else:
            logger.info("drift assessed", extra=summary)
    return {"variants": summaries}
