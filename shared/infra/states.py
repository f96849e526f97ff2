"""Step Functions building blocks the layers' state machines share (CDK, infrastructure only).

- :func:`lambda_task`: a ``LambdaInvoke`` retried on the Lambda service's transient errors (AWS's
  recommended list plus throttling), with backoff and full jitter; a handler's own error is not
  retried (it would fail the same way).
- :func:`notice`: an SNS notice from a state, naming the run; its result is discarded so the state
  passes its input through.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

TRANSIENT_LAMBDA_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.TooManyRequestsException",
)


def lambda_task(
    scope: Construct, construct_id: str, function: lambda_.IFunction, comment: str, **kwargs: Any
) -> tasks.LambdaInvoke:
    task = tasks.LambdaInvoke(
        scope,
        construct_id,
        lambda_function=function,
        comment=comment,
        retry_on_service_exceptions=False,  # retried below, with throttling and jitter
        **kwargs,
    )
    task.add_retry(
        errors=list(TRANSIENT_LAMBDA_ERRORS),
        interval=cdk.Duration.seconds(2),
        max_attempts=4,
        backoff_rate=2.0,
        jitter_strategy=sfn.JitterType.FULL,
    )
    return task


def notice(
    scope: Construct,
    construct_id: str,
    *,
    topic: sns.ITopic,
    subject: str,
    names: dict[str, str],
    message: dict[str, Any],
) -> tasks.SnsPublish:
    """``names``: what identifies the run in the message (e.g. ``{"execution": "$$.Execution.Name"}``)."""
    return tasks.SnsPublish(
        scope,
        construct_id,
        topic=topic,
        subject=subject,
        message=sfn.TaskInput.from_object(
            {**{key: sfn.JsonPath.string_at(path) for key, path in names.items()}, **message}
        ),
        result_path=sfn.JsonPath.DISCARD,
    )
