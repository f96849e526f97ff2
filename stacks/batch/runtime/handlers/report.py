"""Report (Lambda): the run manifest of a batch run, from the manifests of its inputs, and its metrics.

Runs in the state machine's Parallel beside the run notification, after the Map processed every
input (inline or on AWS Batch).

Event (``events.ReportInput``)::

    {"execution": "<$$.Execution.Name>",
     "inputs": [{"uri": "s3://data-bucket/input/day.csv", "key": ..., "size": ..., "etag": ...,
                 "outcome": {...}},
                {"uri": "s3://data-bucket/input/bad.csv", "key": ..., "failed": true,
                 "error": "RowsFailedError"}]}

``inputs`` are ListInputs' items or the Map's results for them (only ``uri`` is required):

- an input not marked ``failed`` must have a manifest (its job finished): its counts are taken
  from it; a manifest that counts failed rows makes the input failed too (a guard: both paths
  already fail such an input);
- an input marked ``failed: true`` (its step raised or its job failed, ``error`` names why) is
  recorded as failed; its manifest's counts are added when the manifest is of the listed object
  (same ETag; a job that failed on its rows writes one), and left ``null`` otherwise;
- ``etag``, when given, is compared with the manifest's; a difference (the object changed after it
  was listed) is logged and kept in the run manifest (``listed_etag``, ``input_etag``).

Writes ``{RUNS_PREFIX}/{execution}/manifest.json``::

    {"execution": "...", "finished_at": "2026-11-24T02:05:00.000Z",
     "inputs": [{"uri": ..., "manifest": "s3://...", "input_etag": ..., "listed_etag": ...,
                 "mode": "inline" | "batch" | null, "failed_input": false, "error": null,
                 "read": 110, "predicted": 108, "rejected": 2, "failed": 0, "finished_at": ...}],
     "totals": {"inputs": 1, "failed_inputs": 0, "read": 110, "predicted": 108, "rejected": 2,
                "failed": 0}}

Output (the totals and where the run manifest is)::

    {"manifest": "s3://results-bucket/batch/runs/<execution>/manifest.json",
     "inputs": 1, "failed_inputs": 0, "read": 110, "predicted": 108, "rejected": 2, "failed": 0}

The function succeeds when inputs failed: it reports them. ``failed_inputs`` > 0 must end the run
in a Fail state (the state machine's Choice after the Parallel), so a run with failures is never
reported as a success.

Metrics (EMF, namespace ``MlPipeline`` or ``POWERTOOLS_METRICS_NAMESPACE``, dimension
``service=ml-pipeline-batch``), once per run: ``InputsProcessed``, ``InputsFailed``, ``RowsRead``,
``RowsPredicted``, ``RowsRejected``, ``RowsFailed`` (Count).

Errors (the Lambda error type Step Functions sees); nothing is written when one is raised:

- ``ManifestMissingError``: an input not marked failed has no manifest (its job never finished);
- ``ManifestInvalidError``: a manifest is not a job manifest, or is the manifest of another input
  (another bucket with the same key);
- ``InvalidReportInputError``: the event is not ``{"execution": str, "inputs": [...]}``;
- ``ConfigurationError``: ``OUTPUT_PREFIX`` or ``RUNS_PREFIX`` is missing or invalid.

Environment: ``OUTPUT_PREFIX`` (``s3://results-bucket/batch/output``), ``RUNS_PREFIX``
(``s3://results-bucket/batch/runs``).

IAM: ``s3:GetObject`` on the output prefix (with ``s3:ListBucket`` on its bucket, so a missing
manifest is ``NoSuchKey``), ``s3:PutObject`` on the runs prefix.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from shared import telemetry
from shared.predictions import timestamp
from stacks.batch.runtime.clients import s3_client
from stacks.batch.runtime.errors import (
    InvalidReportInputError,
    ManifestInvalidError,
    ManifestMissingError,
    RowsFailedError,
)
from stacks.batch.runtime.events import (
    REPORT_INPUT_SHAPE,
    ReportInput,
    ReportItem,
    parse_event,
    parse_settings,
)
from stacks.batch.runtime.layout import outputs_for, run_manifest
from stacks.batch.runtime.manifest import InputManifest, read_manifest

SERVICE = telemetry.SERVICE_NAMES["batch"]
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=telemetry.TRACED_MODULES)
metrics = Metrics(service=SERVICE, namespace=telemetry.NAMESPACE)

COUNTS = ("read", "predicted", "rejected", "failed")
METRIC_NAMES = telemetry.BATCH_ROW_METRICS


class ReportSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    output_prefix: str = Field(alias="OUTPUT_PREFIX", pattern=r"^s3://[^/]+/")
    runs_prefix: str = Field(alias="RUNS_PREFIX", pattern=r"^s3://[^/]+/")


@dataclass
class RunReport:
    execution: str
    manifest: str
    inputs: list[dict[str, Any]] = field(default_factory=list)

    def total(self, count: str) -> int:
        return sum(int(entry[count] or 0) for entry in self.inputs)

    def failed_inputs(self) -> int:
        return sum(1 for entry in self.inputs if entry["failed_input"])

    def totals(self) -> dict[str, int]:
        return {"inputs": len(self.inputs), "failed_inputs": self.failed_inputs()} | {
            count: self.total(count) for count in COUNTS
        }


def _entry(item: ReportItem, location: str, manifest: InputManifest | None) -> dict[str, Any]:
    failed_input = item.failed or (manifest is not None and not manifest.succeeded)
    error = item.error or (RowsFailedError.__name__ if failed_input else None)
    return {
        "uri": item.uri,
        "manifest": location if manifest is not None else None,
        "input_etag": manifest.input_etag if manifest is not None else None,
        "listed_etag": item.etag,
        "mode": (item.outcome or {}).get("mode"),
        "failed_input": failed_input,
        "error": error,
        **{count: getattr(manifest, count) if manifest is not None else None for count in COUNTS},
        "finished_at": manifest.finished_at if manifest is not None else None,
    }


def collect(s3: Any, request: ReportInput, settings: ReportSettings) -> RunReport:
    """Every input's manifest, checked: raises before anything is written when one is missing."""
    report = RunReport(request.execution, run_manifest(settings.runs_prefix, request.execution).uri)
    for item in request.inputs:
        location = outputs_for(settings.output_prefix, item.input_key).manifest
        manifest = read_manifest(s3, location)
        if manifest is not None and manifest.input != item.uri:
            raise ManifestInvalidError(f"{location.uri} is the manifest of {manifest.input}, not {item.uri}")
        if manifest is None and not item.failed:
            raise ManifestMissingError(
                f"{item.uri} has no manifest at {location.uri}: its job did not finish"
            )
        changed = manifest is not None and item.etag is not None and item.etag != manifest.input_etag
        if changed and item.failed:
            manifest = None  # an earlier run's manifest: this run's failed step wrote none
        elif changed:
            logger.warning(
                "the input changed after it was listed; the manifest counts the version processed",
                extra={"uri": item.uri, "listed_etag": item.etag},
            )
        report.inputs.append(_entry(item, location.uri, manifest))
    return report


def write(s3: Any, report: RunReport, settings: ReportSettings, now: datetime) -> None:
    location = run_manifest(settings.runs_prefix, report.execution)
    document = {
        "execution": report.execution,
        "finished_at": timestamp(now),
        "inputs": report.inputs,
        "totals": report.totals(),
    }
    s3.put_object(
        Bucket=location.bucket,
        Key=location.key,
        Body=(json.dumps(document, indent=2, sort_keys=True) + "\n").encode(),
        ContentType="application/json",
    )


def record_metrics(report: RunReport) -> None:
    metrics.add_metric(name=telemetry.INPUTS_PROCESSED, unit=MetricUnit.Count, value=len(report.inputs))
    metrics.add_metric(name=telemetry.INPUTS_FAILED, unit=MetricUnit.Count, value=report.failed_inputs())
    for count, name in METRIC_NAMES.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=report.total(count))


def report_run(s3: Any, request: ReportInput, settings: ReportSettings, now: datetime) -> dict[str, Any]:
    report = collect(s3, request, settings)
    write(s3, report, settings, now)
    record_metrics(report)
    output = {"manifest": report.manifest, **report.totals()}
    if output["failed_inputs"]:
        failing = [entry["uri"] for entry in report.inputs if entry["failed_input"]]
        logger.error("run reported with failed inputs", extra={**output, "failing": failing[:20]})
    else:
        logger.info("run reported", extra=output)
    return output


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse_event(event, ReportInput, InvalidReportInputError, REPORT_INPUT_SHAPE)
    settings = parse_settings(dict(os.environ), ReportSettings)
    return report_run(s3_client(), request, settings, datetime.now(UTC))
