"""An on-demand batch run of one file, on any stage: upload it under the input prefix, run, wait.

The same request the S3 rule makes when a file lands under the input prefix, made directly (and
awaited), so a caller gets the run's outcome: its status, its failures from the execution
history, and the run manifest the Report step wrote. Names come from the batch stack's outputs.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from shared.outputs import BatchOutputs

# execution history events that carry a failure's error and cause
FAILURE_DETAILS = (
    "taskFailedEventDetails",
    "lambdaFunctionFailedEventDetails",
    "executionFailedEventDetails",
)


class BatchRunTimeoutError(TimeoutError):
    """The run did not end within the time the caller gave it (it goes on running)."""


def run_batch(
    session: Any,
    outputs: dict[str, str],
    source: Path,
    *,
    key: str | None = None,
    timeout: float = 900.0,
    poll_seconds: float = 0.5,
) -> dict[str, Any]:
    """Upload ``source`` (as ``key`` under the input prefix), run the state machine for it, wait.

    Returns ``execution``, ``status``, ``seconds``, ``error``/``cause``, ``report`` (the Report
    step's totals), ``manifest`` (the run manifest, when the run wrote one) and ``failures``.
    """
    bucket, prefix = outputs[BatchOutputs.INPUT_BUCKET_NAME], outputs[BatchOutputs.INPUT_PREFIX]
    object_key = f"{prefix}{key or source.name}"
    s3 = session.client("s3")
    s3.upload_file(str(source), bucket, object_key)
    sfn = session.client("stepfunctions")
    started = time.monotonic()
    execution = sfn.start_execution(
        stateMachineArn=outputs[BatchOutputs.STATE_MACHINE_ARN],
        name=f"on-demand-{uuid.uuid4()}",
        input=json.dumps({"bucket": bucket, "prefix": object_key}),
    )["executionArn"]
    return await_run(session, execution, timeout=timeout, poll_seconds=poll_seconds, started=started)


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
