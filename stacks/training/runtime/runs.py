"""Runs function (Lambda): starts training runs (one at a time) and records how they ended.

The only writer of run items and of the run lock in the metadata table (``shared.training``'s
keys). Invoked three ways:

- **EventBridge** (the stack's rules): ``Scheduled Event`` (the retraining schedule),
  ``CloudWatch Alarm State Change`` of a drift alarm to ``ALARM`` (other states are ignored), and
  S3 ``Object Created`` under ``shared.training.TRAINING_DATA_PREFIX`` (that object is the data);
- **mlpipe** (``mlpipe train start``): ``{"action": "start", "trigger": "manual", "tune": bool,
  "data_key": str | null, "experiment": str | null, "requested_by": str}``;
- **the state machine**: ``{"action": "finish", "run_id", "status", "reason", "error"?,
  "model_version"?, "details"?}`` from its Record* states.

Start: the data is the given/created object, or the newest CSV under the training data prefix.
The run id, which is also the execution name, is derived from the trigger (the EventBridge
event's id and time, the CLI request's id), so a redelivered event starts nothing new
(``ExecutionAlreadyExists``). The lock is a conditional write of one item (free, expired, or
already ours); a trigger while a run holds it records a ``SKIPPED`` run naming the holder and
starts nothing. The candidate's version is the next free number of the registry (no two runs
compute it at once: the lock). Output of a start::

    {"started": true, "run_id": "...", "execution_arn": "...", "model_version": "v3"}
    {"started": false, "run_id": "...", "reason": "skipped: run schedule-... in progress"}

Finish updates the run item (status, reason, job names, billable seconds, metrics, decision) and
releases the lock if this run holds it. Errors: ``InvalidRunInputError`` (the message names the
field) for an event of no known shape.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlpipe.registry import ModelRegistry
from mlpipe.stage import RegistryLocation
from shared import training
from shared.config import get_config
from stacks.training.runtime.inputs import problems

logger = Logger(service="ml-pipeline-training-runs")

SCHEDULED = "Scheduled Event"
ALARM_CHANGE = "CloudWatch Alarm State Change"
OBJECT_CREATED = "Object Created"


class InvalidRunInputError(ValueError):
    """The event is not one the function handles (the message names the field)."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    stage: str = Field(alias="STAGE", min_length=2)
    data_bucket: str = Field(alias="DATA_BUCKET", min_length=3)
    model_bucket: str = Field(alias="MODEL_BUCKET", min_length=3)
    table: str = Field(alias="METADATA_TABLE", min_length=3)
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN", pattern=r"^arn:aws[a-z-]*:states:")

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Settings:
        return cls.model_validate(dict(environ if environ is not None else os.environ))


class StartRequest(BaseModel):
    """A run to start, from whichever trigger."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trigger: str = Field(pattern=r"^(schedule|drift|data|manual)$")
    tune: bool = False
    data_key: str | None = Field(default=None, min_length=1, max_length=1024)
    experiment: str = Field(default=training.DEFAULT_EXPERIMENT, pattern=training.EXPERIMENT_PATTERN.pattern)
    requested_by: str = Field(default="", max_length=256)
    request_id: str = Field(min_length=1, max_length=128)  # the event id or the CLI's request id
    requested_at: datetime


class FinishRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str = Field(pattern=r"^finish$")
    run_id: str = Field(pattern=training.RUN_ID_PATTERN.pattern)
    status: str = Field(pattern=r"^(SUCCEEDED|NOT_PROMOTED|FAILED)$")
    reason: str = Field(default="", max_length=100_000)
    error: str | None = Field(default=None, max_length=1024)
    model_version: str | None = Field(default=None, pattern=r"^v[1-9]\d{0,5}$")
    details: dict[str, Any] = {}


def run_id_for(request: StartRequest) -> str:
    """``{trigger}-{YYYYmmddtHHMMSS}-{8 hex of the request id}`` (an execution name, <= 63 chars)."""
    digest = hashlib.sha256(request.request_id.encode()).hexdigest()[:8]
    return f"{request.trigger}-{request.requested_at.astimezone(UTC):%Y%m%dt%H%M%S}-{digest}"


def _dynamo(value: Any) -> Any:
    """JSON-like data as DynamoDB accepts it (floats as Decimal)."""
    return json.loads(json.dumps(value), parse_float=Decimal)


class Runs:
    def __init__(self, settings: Settings, session: Any, *, clock: Any = None) -> None:
        self.settings = settings
        self.config = get_config(settings.stage)
        self.table = session.resource("dynamodb").Table(settings.table)
        self.s3 = session.client("s3")
        self.states = session.client("stepfunctions")
        self.registry = ModelRegistry(
            location=RegistryLocation(
                stage=settings.stage,
                model_bucket=settings.model_bucket,
                parameters_path=self.config.model_parameters_path,
            ),
            s3=self.s3,
            ssm=session.client("ssm"),
        )
        self.clock = clock or (lambda: datetime.now(UTC))

    # ----- start -----
    def start(self, request: StartRequest) -> dict[str, Any]:
        run_id = run_id_for(request)
        now = self.clock()
        data_key = request.data_key or self.newest_data()
        base = {
            **training.run_key(run_id),
            "runId": run_id,
            "trigger": request.trigger,
            training.EXPERIMENT_ATTRIBUTE: request.experiment,
            training.STARTED_AT_ATTRIBUTE: now.isoformat(timespec="seconds"),
            "requestedBy": request.requested_by or request.trigger,
            "tune": request.tune,
        }
        if data_key is None:
            reason = f"skipped: no training data under s3://{self.settings.data_bucket}/{training.TRAINING_DATA_PREFIX}"
            self._put_run({**base, training.STATUS_ATTRIBUTE: "SKIPPED", "reason": reason})
            return {"started": False, "run_id": run_id, "reason": reason}
        holder = self._acquire_lock(run_id, now)
        if holder is not None and holder != run_id:
            reason = f"skipped: run {holder} in progress"
            self._put_run(
                {**base, "dataKey": data_key, training.STATUS_ATTRIBUTE: "SKIPPED", "reason": reason}
            )
            logger.info("run skipped", extra={"run_id": run_id, "holder": holder})
            return {"started": False, "run_id": run_id, "reason": reason}
        try:
            model_version = self.next_version()
            prefix = training.run_prefix(run_id)
            bucket = self.settings.data_bucket
            run_input = {
                "run_id": run_id,
                "trigger": request.trigger,
                "experiment": request.experiment,
                "bucket": bucket,
                "data_key": data_key,
                "tune": request.tune,
                "model_version": model_version,
                "job_name": training.training_job_name(self.config.name, run_id),
                "tuning_job_name": training.tuning_job_name(self.config.name, run_id),
                "run_prefix": prefix,
                "output_uri": f"s3://{bucket}/{training.output_prefix(prefix)}",
                "checkpoint_uri": f"s3://{bucket}/{training.checkpoint_prefix(prefix)}",
            }
            self._ensure_experiment(request.experiment, now)
            self._put_run(
                {
                    **base,
                    "dataKey": data_key,
                    training.STATUS_ATTRIBUTE: "RUNNING",
                    "candidateVersion": model_version,
                    "input": _dynamo(run_input),
                }
            )
            execution = self._start_execution(run_id, run_input)
        except Exception as err:
            self._release_lock(run_id)
            self._update_run(
                run_id, {training.STATUS_ATTRIBUTE: "FAILED", "reason": f"could not start: {err}"}
            )
            raise
        logger.info("run started", extra={"run_id": run_id, "execution": execution})
        return {"started": True, "run_id": run_id, "execution_arn": execution, "model_version": model_version}

    def newest_data(self) -> str | None:
        newest: tuple[datetime, str] | None = None
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(
            Bucket=self.settings.data_bucket, Prefix=training.TRAINING_DATA_PREFIX
        ):
            for item in page.get("Contents", []):
                if item["Key"].lower().endswith(".csv") and (
                    newest is None or item["LastModified"] > newest[0]
                ):
                    newest = (item["LastModified"], item["Key"])
        return newest[1] if newest else None

    def next_version(self) -> str:
        versions = [int(record.version[1:]) for record in self.registry.list_versions()]
        return f"v{max(versions, default=0) + 1}"

    def _start_execution(self, run_id: str, run_input: dict[str, Any]) -> str:
        try:
            answer = self.states.start_execution(
                stateMachineArn=self.settings.state_machine_arn, name=run_id, input=json.dumps(run_input)
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ExecutionAlreadyExists":
                raise
            # a redelivered trigger: the run exists already
            return training.execution_arn(self.settings.state_machine_arn, run_id)
        return str(answer["executionArn"])

    # ----- finish -----
    def finish(self, request: FinishRequest) -> dict[str, Any]:
        now = self.clock().isoformat(timespec="seconds")
        details = request.details
        training_facts = details.get("training") if isinstance(details.get("training"), dict) else {}
        updates: dict[str, Any] = {
            training.STATUS_ATTRIBUTE: request.status,
            "finishedAt": now,
            "reason": request.reason or request.error or "",
            "decision": {"SUCCEEDED": "deployed", "NOT_PROMOTED": "not promoted"}.get(
                request.status, "failed"
            ),
        }
        if request.error:
            updates["error"] = request.error
        if training_facts:
            updates["jobName"] = training_facts.get("job_name")
            updates["billableSeconds"] = training_facts.get("billable_seconds")
            updates["metrics"] = training_facts.get("metrics")
            updates["hyperparameters"] = training_facts.get("hyperparameters")
        for key in ("evaluation", "data", "validation", "deployment"):
            if key in details:
                updates[key] = details[key]
        if request.model_version:
            updates[training.MODEL_VERSION_ATTRIBUTE] = request.model_version
        self._update_run(request.run_id, {k: v for k, v in updates.items() if v is not None})
        released = self._release_lock(request.run_id)
        logger.info("run finished", extra={"run_id": request.run_id, "status": request.status})
        return {"run_id": request.run_id, "status": request.status, "lock_released": released}

    # ----- the lock and the items -----
    def _acquire_lock(self, run_id: str, now: datetime) -> str | None:
        """None when the lock is taken for ``run_id``; else the holder's run id."""
        expires = int(now.timestamp()) + self.config.training.run_timeout_minutes * 60
        try:
            self.table.put_item(
                Item={**training.LOCK_KEY, "runId": run_id, training.TTL_ATTRIBUTE: expires},
                ConditionExpression="attribute_not_exists(pk) OR expiresAt < :now OR runId = :run",
                ExpressionAttributeValues={":now": int(now.timestamp()), ":run": run_id},
            )
            return None
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        holder = self.table.get_item(Key=training.LOCK_KEY, ConsistentRead=True).get("Item") or {}
        return str(holder.get("runId", "unknown"))

    def _release_lock(self, run_id: str) -> bool:
        try:
            self.table.delete_item(
                Key=training.LOCK_KEY,
                ConditionExpression="runId = :run",
                ExpressionAttributeValues={":run": run_id},
            )
        except ClientError as err:
            if err.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False  # not ours (expired and taken over) or already released
            raise
        return True

    def _ensure_experiment(self, name: str, now: datetime) -> None:
        """The experiment's item, written by its first run."""
        try:
            self.table.put_item(
                Item={
                    **training.experiment_key(name),
                    "name": name,
                    "createdAt": now.isoformat(timespec="seconds"),
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def _put_run(self, item: dict[str, Any]) -> None:
        self.table.put_item(Item=_dynamo(item))

    def _update_run(self, run_id: str, updates: dict[str, Any]) -> None:
        names = {f"#a{i}": key for i, key in enumerate(updates)}
        values = {f":v{i}": value for i, value in enumerate(_dynamo(list(updates.values())))}
        self.table.update_item(
            Key=training.run_key(run_id),
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(updates))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )


def start_request(event: dict[str, Any], drift_alarms: frozenset[str]) -> StartRequest | None:
    """The run an event asks for; None for an event that asks for none (an alarm back to OK)."""
    detail_type = event.get("detail-type")
    if detail_type is None:
        if event.get("action") != "start":
            raise InvalidRunInputError(
                "event: expected an EventBridge event or {'action': 'start' | 'finish', ...}"
            )
        fields = {k: v for k, v in event.items() if k != "action"}
        fields.setdefault("request_id", f"cli-{time.time_ns()}")
        fields.setdefault("requested_at", datetime.now(UTC).isoformat())
        fields.setdefault("trigger", "manual")
        return StartRequest.model_validate(fields)
    common = {"request_id": str(event.get("id") or ""), "requested_at": event.get("time")}
    detail = event.get("detail") or {}
    if detail_type == SCHEDULED:
        return StartRequest.model_validate({**common, "trigger": "schedule"})
    if detail_type == ALARM_CHANGE:
        name = detail.get("alarmName")
        if name not in drift_alarms:
            raise InvalidRunInputError(f"detail.alarmName: {name!r} is not one of the drift alarms")
        if (detail.get("state") or {}).get("value") != "ALARM":
            return None
        return StartRequest.model_validate({**common, "trigger": "drift", "requested_by": f"alarm:{name}"})
    if detail_type == OBJECT_CREATED:
        key = ((detail.get("object") or {}).get("key")) or ""
        if not key.startswith(training.TRAINING_DATA_PREFIX):
            raise InvalidRunInputError(
                f"detail.object.key: {key!r} is not under {training.TRAINING_DATA_PREFIX}"
            )
        if not key.lower().endswith(".csv"):
            return None  # a folder marker or a file of another kind is not training data
        return StartRequest.model_validate(
            {**common, "trigger": "data", "data_key": key, "requested_by": "s3"}
        )
    raise InvalidRunInputError(f"detail-type: {detail_type!r} is not handled")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = Settings.from_environment()
    runs = Runs(settings, boto3.session.Session())
    try:
        if event.get("action") == "finish":
            return runs.finish(FinishRequest.model_validate(event))
        variants = [variant.name for variant in runs.config.inference.variants]
        request = start_request(event, frozenset(runs.config.drift_alarm_name(v) for v in variants))
    except ValidationError as err:
        raise InvalidRunInputError(problems(err)) from None
    if request is None:
        return {"started": False, "reason": "the event asks for no run"}
    return runs.start(request)
