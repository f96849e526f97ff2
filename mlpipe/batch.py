"""An on-demand batch run of one file, on any stage: upload it under the input prefix, wait for its run.

One owner of starting runs for new inputs: the batch layer's S3 ``Object Created`` rule (on AWS,
and on the local stage, whose dispatcher polls the data bucket). So this uploads the file and waits
for the execution the rule started for it; starting one here as well would run the same input
twice at once (both list it before either has written its manifest). The caller gets the run's
outcome: its status, its failures from the execution history, and the run manifest the Report step
wrote. Names come from the batch stack's outputs.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.outputs import BatchOutputs

# execution history events that carry a failure's error and cause
FAILURE_DETAILS = (
    "taskFailedEventDetails",
    "lambdaFunctionFailedEventDetails",
    "executionFailedEventDetails",
)


# S3 -> EventBridge -> StartExecution takes seconds on AWS and about a second on the local stage
START_TIMEOUT_SECONDS = 120.0
# the account's clock and this machine's may differ a little
CLOCK_SLACK = timedelta(seconds=5)


class BatchRunTimeoutError(TimeoutError):
    """The run did not end within the time the caller gave it (it goes on running)."""


class BatchRunNotStartedError(TimeoutError):
    """No run started for the uploaded input within the start timeout (the S3 rule did not fire)."""


def run_batch(
    session: Any,
    outputs: dict[str, str],
    source: Path,
    *,
    key: str | None = None,
    timeout: float = 900.0,
    poll_seconds: float = 0.5,
    start_timeout: float = START_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Upload ``source`` (as ``key`` under the input prefix) and wait for the run the S3 rule starts.

    Returns ``execution``, ``status``, ``seconds`` (from the upload), ``error``/``cause``, ``report``
    (the Report step's totals), ``manifest`` (the run manifest, when the run wrote one) and
    ``failures``. ``BatchRunNotStartedError`` when no run starts within ``start_timeout``.
    """
    bucket, prefix = outputs[BatchOutputs.INPUT_BUCKET_NAME], outputs[BatchOutputs.INPUT_PREFIX]
    object_key = f"{prefix}{key or source.name}"
    machine = outputs[BatchOutputs.STATE_MACHINE_ARN]
    since = datetime.now(UTC) - CLOCK_SLACK
    # runs already there (an earlier upload of the same key within the clock slack) are not this one
    earlier = _executions_since(session.client("stepfunctions"), machine, since)
    started = time.monotonic()
    session.client("s3").upload_file(str(source), bucket, object_key)
    execution = rule_started_run(
        session,
        machine,
        {"bucket": bucket, "prefix": object_key},
        since,
        timeout=start_timeout,
        poll_seconds=poll_seconds,
        exclude=earlier,
    )
    return await_run(session, execution, timeout=timeout, poll_seconds=poll_seconds, started=started)


def rule_started_run(
    session: Any,
    state_machine_arn: str,
    run_input: dict[str, str],
    since: datetime,
    *,
    timeout: float = START_TIMEOUT_SECONDS,
    poll_seconds: float = 0.5,
    exclude: frozenset[str] = frozenset(),
) -> str:
    """The ARN of the execution of ``state_machine_arn`` started since ``since`` with ``run_input``
    (none of ``exclude``)."""
    sfn = session.client("stepfunctions")
    seen: set[str] = set(exclude)
    deadline = time.monotonic() + timeout
    while True:
        for arn in sorted(_executions_since(sfn, state_machine_arn, since) - seen):
            seen.add(arn)
            if json.loads(sfn.describe_execution(executionArn=arn)["input"]) == run_input:
                return arn
        if time.monotonic() > deadline:
            raise BatchRunNotStartedError(
                f"no run of {state_machine_arn} started for {json.dumps(run_input)} within {timeout:.0f} s: "
                "the batch layer's input rule starts it (is the data bucket's EventBridge notification on, "
                "and the rule enabled?)"
            )
        time.sleep(poll_seconds)


def _executions_since(sfn: Any, state_machine_arn: str, since: datetime) -> frozenset[str]:
    """Executions started since ``since``. ListExecutions answers newest first, so paging stops at the
    first older one: a poll reads the last few runs, not the machine's whole history."""
    found: set[str] = set()
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for execution in page["executions"]:
            if execution["startDate"] < since:
                return frozenset(found)
            found.add(str(execution["executionArn"]))
    return frozenset(found)


def await_run(
    session: Any,
    execution: str,
    *,
    timeout: float = 900.0,
    poll_seconds: float = 0.5,
    started: float | None = None,
) -> dict[str, Any]:
    """Wait for the batch run ``execution`` (however it was started) to end; what ``run_batch`` returns.

    ``seconds`` count from ``started`` (``time.monotonic()``; default: now).
    """
    s3, sfn = session.client("s3"), session.client("stepfunctions")
    started = time.monotonic() if started is None else started
    while (description := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        if time.monotonic() - started > timeout:
            raise BatchRunTimeoutError(f"{execution} still running after {timeout:.0f} s")
        time.sleep(poll_seconds)
    seconds = round(time.monotonic() - started, 2)
    output = json.loads(description.get("output") or "{}")
    report = output.get("finish", {}).get("report", {})
    manifest: dict[str, Any] = {}
    if report.get("manifest"):
        run_bucket, run_key = report["manifest"].removeprefix("s3://").split("/", 1)
        manifest = json.loads(s3.get_object(Bucket=run_bucket, Key=run_key)["Body"].read())
    history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    failures = [
        {"type": event["type"], **details}
        for event in history
        for name, details in event.items()
        if name in FAILURE_DETAILS
    ]
    return {
        "execution": execution,
        "status": description["status"],
        "seconds": seconds,
        "error": description.get("error"),
        "cause": description.get("cause"),
        "report": report,
        "manifest": manifest,
        "failures": failures,
    }
