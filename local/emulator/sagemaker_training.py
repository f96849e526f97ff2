"""SageMaker training and tuning jobs for moto's Step Functions: ``createTrainingJob.sync`` and
``createHyperParameterTuningJob.sync`` run here.

moto's interpreter fails both (``Unsupported .sync callback procedure``) and moto's SageMaker only
stores a job, ``Completed`` at once with no artifact and made-up metrics. Installed (:func:`install`)
where the interpreter picks a task's service (``state_task_service_for``), this module runs them the
way the service does, on this machine:

- **a training job** stages its channels (``S3Prefix`` sources) from the emulated S3 into a fresh
  ``SAGEMAKER_BASE_DIR`` (``input/data/<channel>/``), writes ``input/config/hyperparameters.json``,
  ``resourceconfig.json`` and ``inputdataconfig.json``, downloads and extracts the source bundle
  (``sagemaker_submit_directory``) into ``code/``, restores ``CheckpointConfig.S3Uri`` into the
  checkpoint directory, and runs ``sagemaker_program`` with the current Python (cwd = the bundle) as
  the scikit-learn container does: the user hyper-parameters as ``--name value`` and ``SM_HP_*``, the
  ``SM_*`` variables, no AWS credentials (network isolation). The checkpoint directory is synced to S3
  while it runs. ``MaxRuntimeInSeconds`` is enforced (the process is stopped: ``Stopped`` /
  ``MaxRuntimeExceeded``, as the API reference lists it). Exit code 0 -> the model directory is tarred
  to ``<S3OutputPath>/<job>/output/model.tar.gz`` (``output/data`` to ``output.tar.gz``) and the job
  is ``Completed``; otherwise ``Failed`` with ``AlgorithmError: <the failure file>, exit code: N``.
  Metrics come from the process's output through the job's own ``MetricDefinitions`` (last value
  wins). The job lives in moto's SageMaker backend, so ``DescribeTrainingJob`` (boto3, an
  ``aws-sdk`` task) answers what the ``.sync`` task returned.
- **billing**: ``TrainingTimeInSeconds`` is the wall-clock time from start to end (interruptions and
  their lost work included, as on SageMaker); ``BillableTimeInSeconds`` is the same on demand and,
  with managed spot, ``ceil(training x (1 - SPOT_SAVINGS))`` with a modelled saving of 70 %.
- **a spot interruption** can be injected (:func:`interrupt_next_training_job`): the next managed-spot
  job with a ``CheckpointConfig`` has its process killed once its first checkpoint is in S3, then
  starts again on a fresh instance (a new base directory, checkpoints restored from S3);
  ``SecondaryStatusTransitions`` show ``Interrupted`` and the restart.
- **a tuning job** runs ``MaxNumberOfTrainingJobs`` training jobs (at most ``MaxParallelTrainingJobs``
  at once) named ``<tuning job>-<NNN>-<8 hex>``, with hyper-parameters sampled from the ranges by a
  generator seeded from the tuning job's name (``Grid``: the categorical grid in order; ``Random``,
  ``Bayesian`` and ``Hyperband`` all sample at random here), each job's checkpoints under
  ``CheckpointConfig.S3Uri/<job>/``; the best completed job by the objective becomes
  ``BestTrainingJob``.
- **errors** as Step Functions reports them: a job that ends ``Failed`` or ``Stopped`` fails the task
  with ``States.TaskFailed`` and the job's description (JSON) as the cause; a request SageMaker
  rejects (a name in use, ``MaxWaitTimeInSeconds`` without spot or below the runtime, a tuning name
  over 32 characters, bad ranges) fails it with ``SageMaker.AmazonSageMakerException``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final, cast

import botocore.session
from botocore.exceptions import ClientError
from moto.core.utils import utcnow
from moto.sagemaker.models import sagemaker_backends
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback as sfn_callback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_unsupported as sfn_unsupported,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

from shared.archive import deterministic_tar_gz, directory_members

_BY = "fixed by local.emulator.sagemaker_training"
GAPS = (
    "Step Functions' sagemaker:createTrainingJob.sync (moto: 'Unsupported .sync callback procedure'; moto's "
    "SageMaker stores a Completed job with no artifact): the entry point runs as a local process under the "
    f"container contract, its model tarred to S3, metrics parsed by the job's definitions, {_BY}",
    "Step Functions' sagemaker:createHyperParameterTuningJob.sync (same): seeded local training jobs, the "
    f"best by the objective, {_BY}",
)

ACTIONS: Final = ("create_training_job", "create_hyper_parameter_tuning_job")
CONTAINER_ROOT: Final = "/opt/ml"
SPOT_SAVINGS: Final = 0.7  # the modelled managed-spot saving on BillableTimeInSeconds
MAX_TUNING_JOB_NAME: Final = 32
MAX_FAILURE_REASON: Final = 1024
POLL_SECONDS: Final = 0.05
STOP_GRACE_SECONDS: Final = 2.0
RESERVED_HYPERPARAMETERS: Final = ("sagemaker_program", "sagemaker_submit_directory", "sagemaker_region")

LogSink = Callable[[str], None]
_event_details: Any = EventDetails  # a TypedDict of every event kind; one is given at a time


@dataclass
class _JobRecord:
    done: threading.Event = field(default_factory=threading.Event)
    output: list[str] = field(default_factory=list)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.python: str = sys.executable
        self.log: LogSink | None = None
        self.interruptions = 0
        self.jobs: dict[tuple[str, str, str], _JobRecord] = {}
        self.tuning: dict[tuple[str, str, str], threading.Event] = {}


_state = _State()


def attach(*, python: str | None = None, log: LogSink | None = None) -> None:
    """Run entry points with ``python`` (default: this interpreter); send job output lines to ``log``."""
    with _state.lock:
        _state.python = python or sys.executable
        _state.log = log


def detach() -> None:
    attach()


def interrupt_next_training_job(count: int = 1) -> None:
    """Interrupt the next ``count`` managed-spot training jobs with checkpoints once (module docstring)."""
    if count < 1:
        raise ValueError("count must be >= 1")
    with _state.lock:
        _state.interruptions += count


def training_job_output(name: str, *, account_id: str, region: str) -> str:
    """What a training job's process printed (every attempt), as its CloudWatch log stream would hold."""
    record = _state.jobs.get((account_id, region, name))
    if record is None:
        raise KeyError(f"no emulated training job {name!r} in {account_id}/{region}")
    return "".join(record.output)


def reset() -> None:
    with _state.lock:
        _state.interruptions = 0
        _state.jobs.clear()
        _state.tuning.clear()


def _take_interruption() -> bool:
    with _state.lock:
        if _state.interruptions > 0:
            _state.interruptions -= 1
            return True
        return False


# ---- requests -----------------------------------------------------------------------------------


def _client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError(
        cast(
            Any,
            {
                "Error": {"Code": code, "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": str(uuid.uuid4())},
            },
        ),
        operation,
    )


def _s3_location(uri: str, what: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if match is None:
        raise ValueError(f"{what} {uri!r} is not an s3:// URI")
    return match.group(1), match.group(2)


def _validate_training_request(request: dict[str, Any], client: Any, operation: str) -> None:
    name = request.get("TrainingJobName")
    if name is not None:
        try:
            existing = client.describe_training_job(TrainingJobName=name)["TrainingJobArn"]
        except ClientError:
            existing = None
        if existing is not None:
            raise _client_error(
                "ValidationException",
                "Training job names must be unique within an AWS account and region, and a training job "
                f"with this name already exists ({existing})",
                operation,
            )
    for key in ("HyperParameters", "StaticHyperParameters"):
        wrong = sorted(k for k, v in (request.get(key) or {}).items() if not isinstance(v, str))
        if wrong:
            raise _client_error(
                "ValidationException",
                f"{key} values must be strings; {', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not",
                operation,
            )
    stopping = request.get("StoppingCondition") or {}
    wait, runtime = stopping.get("MaxWaitTimeInSeconds"), stopping.get("MaxRuntimeInSeconds", 86400)
    spot = bool(request.get("EnableManagedSpotTraining"))
    if wait is not None and not spot:
        raise _client_error(
            "ValidationException",
            "MaxWaitTimeInSeconds is only supported with managed spot training",
            operation,
        )
    if spot and wait is None:
        raise _client_error(
            "ValidationException", "MaxWaitTimeInSeconds is required for managed spot training", operation
        )
    if wait is not None and int(wait) < int(runtime):
        raise _client_error(
            "ValidationException",
            f"MaxWaitTimeInSeconds ({wait}) must be greater than or equal to MaxRuntimeInSeconds ({runtime})",
            operation,
        )


# ---- a training job -----------------------------------------------------------------------------


def _transition(job: Any, status: str, message: str) -> None:
    now = utcnow()
    transitions = job.secondary_status_transitions
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1]["EndTime"] = now
    transitions.append({"Status": status, "StartTime": now, "StatusMessage": message})
    job.secondary_status = status
    job.last_modified_time = now


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _cli_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


class _Stage:
    """One attempt's ``/opt/ml`` tree (a fresh instance) and the process run in it."""

    def __init__(self, job: Any, s3: Any, root: Path) -> None:
        self.job, self.s3 = job, s3
        self.base = root / "opt" / "ml"
        self.code = self.base / "code"
        self.model = self.base / "model"
        checkpoint = (job.checkpoint_config or {}).get("LocalPath", f"{CONTAINER_ROOT}/checkpoints")
        if not (checkpoint == CONTAINER_ROOT or checkpoint.startswith(CONTAINER_ROOT + "/")):
            raise _JobError(
                "ClientError", f"CheckpointConfig.LocalPath {checkpoint!r} is outside {CONTAINER_ROOT}"
            )
        self.checkpoints = self.base / Path(checkpoint).relative_to(CONTAINER_ROOT)
        self.synced: dict[str, tuple[int, int]] = {}
        self.output = ""

    def prepare(self) -> None:
        for directory in (
            self.code,
            self.model,
            self.base / "output" / "data",
            self.base / "input" / "config",
        ):
            directory.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        channels = {}
        for channel in self.job.input_data_config or []:
            name = channel["ChannelName"]
            source = (channel.get("DataSource") or {}).get("S3DataSource")
            if source is None or source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise _JobError(
                    "ClientError", f"channel {name!r}: only S3DataSource with S3DataType S3Prefix is emulated"
                )
            self._download_prefix(source["S3Uri"], self.base / "input" / "data" / name, required=True)
            channels[name] = {
                "ContentType": channel.get("ContentType"),
                "TrainingInputMode": channel.get(
                    "InputMode", self.job.algorithm_specification.get("TrainingInputMode", "File")
                ),
                "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            }
        config = self.base / "input" / "config"
        (config / "hyperparameters.json").write_text(json.dumps(self.job.hyper_parameters or {}, indent=2))
        (config / "inputdataconfig.json").write_text(json.dumps(channels, indent=2))
        resource = self.job.resource_config or {}
        (config / "resourceconfig.json").write_text(
            json.dumps(
                {
                    "current_host": "algo-1",
                    "current_instance_type": resource.get("InstanceType"),
                    "current_group_name": "homogeneousCluster",
                    "hosts": ["algo-1"],
                    "instance_groups": [
                        {
                            "instance_group_name": "homogeneousCluster",
                            "instance_type": resource.get("InstanceType"),
                            "hosts": ["algo-1"],
                        }
                    ],
                    "network_interface_name": "eth0",
                },
                indent=2,
            )
        )
        self._extract_source_bundle()
        if self.job.checkpoint_config:
            self._download_prefix(self.job.checkpoint_config["S3Uri"], self.checkpoints, required=False)
        self.synced = {path: self._stamp(path) for path in self._checkpoint_files()}

    def _download_prefix(self, uri: str, target: Path, *, required: bool) -> None:
        bucket, prefix = _s3_location(uri, "S3Uri")
        cut = len(prefix) if prefix.endswith("/") or not prefix else prefix.rfind("/") + 1
        found = 0
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    relative = item["Key"][cut:]
                    if not relative or relative.endswith("/"):
                        continue
                    path = target / relative
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
                    found += 1
        except ClientError as err:
            raise _JobError("ClientError", f"could not read {uri}: {err}") from None
        if required and not found:
            raise _JobError(
                "ClientError",
                f'No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure '
                "that the bucket exists in the selected region, that objects exist under that S3 prefix, "
                "and that the role has s3:ListBucket and s3:GetObject permissions on them.",
            )

    def _extract_source_bundle(self) -> None:
        hyper = self.job.hyper_parameters or {}
        submit, program = hyper.get("sagemaker_submit_directory"), hyper.get("sagemaker_program")
        if not submit or not program:
            raise _JobError(
                "ClientError",
                "hyper-parameters sagemaker_submit_directory and sagemaker_program are required",
            )
        bucket, key = _s3_location(_decode(submit), "sagemaker_submit_directory")
        try:
            payload = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as err:
            raise _JobError("ClientError", f"could not download the source bundle {submit}: {err}") from None
        bundle = self.base / "source.tar.gz"
        bundle.write_bytes(payload)
        try:
            with tarfile.open(bundle) as tar:
                tar.extractall(self.code, filter="data")
        except (tarfile.TarError, OSError) as err:
            raise _JobError(
                "ClientError", f"the source bundle {submit} is not a readable tar.gz: {err}"
            ) from None
        bundle.unlink()
        if not (self.code / _decode(program)).is_file():
            raise _JobError(
                "AlgorithmError", f"sagemaker_program {program!r} is not in the source bundle {submit}"
            )

    def environment(self) -> dict[str, str]:
        hyper = {k: _decode(v) for k, v in (self.job.hyper_parameters or {}).items()}
        user = {k: v for k, v in hyper.items() if k not in RESERVED_HYPERPARAMETERS}
        channels = sorted(channel["ChannelName"] for channel in self.job.input_data_config or [])
        program = str(hyper["sagemaker_program"])
        environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        environment.update(
            {
                "SAGEMAKER_BASE_DIR": str(self.base),
                "TRAINING_JOB_NAME": self.job.training_job_name,
                "TRAINING_JOB_ARN": self.job.arn,
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "SM_MODEL_DIR": str(self.model),
                "SM_INPUT_DIR": str(self.base / "input"),
                "SM_INPUT_DATA_DIR": str(self.base / "input" / "data"),
                "SM_INPUT_CONFIG_DIR": str(self.base / "input" / "config"),
                "SM_OUTPUT_DIR": str(self.base / "output"),
                "SM_OUTPUT_DATA_DIR": str(self.base / "output" / "data"),
                "SM_OUTPUT_INTERMEDIATE_DIR": str(self.base / "output" / "intermediate"),
                "SM_CHANNELS": json.dumps(channels),
                "SM_HPS": json.dumps(user, sort_keys=True),
                "SM_HOSTS": json.dumps(["algo-1"]),
                "SM_CURRENT_HOST": "algo-1",
                "SM_CURRENT_INSTANCE_TYPE": str((self.job.resource_config or {}).get("InstanceType", "")),
                "SM_NUM_CPUS": str(os.cpu_count() or 1),
                "SM_NUM_GPUS": "0",
                "SM_USER_ENTRY_POINT": program,
                "SM_MODULE_NAME": Path(program).stem,
                "SM_MODULE_DIR": str(hyper["sagemaker_submit_directory"]),
                "SM_USER_ARGS": json.dumps(self.arguments()),
                "SM_LOG_LEVEL": "20",
            }
        )
        for channel in channels:
            environment[f"SM_CHANNEL_{channel.upper()}"] = str(self.base / "input" / "data" / channel)
        for name, value in user.items():
            environment[f"SM_HP_{name.upper()}"] = _cli_value(value)
        return environment

    def arguments(self) -> list[str]:
        hyper = {k: _decode(v) for k, v in (self.job.hyper_parameters or {}).items()}
        args: list[str] = []
        for name in sorted(k for k in hyper if k not in RESERVED_HYPERPARAMETERS):
            args += [f"--{name}", _cli_value(hyper[name])]
        return args

    def _checkpoint_files(self) -> Iterator[str]:
        for path in sorted(self.checkpoints.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.checkpoints).as_posix()

    def _stamp(self, relative: str) -> tuple[int, int]:
        stat = (self.checkpoints / relative).stat()
        return (stat.st_mtime_ns, stat.st_size)

    def sync_checkpoints(self) -> int:
        """Upload new or changed checkpoint files; returns how many were uploaded."""
        if not self.job.checkpoint_config:
            return 0
        bucket, prefix = _s3_location(self.job.checkpoint_config["S3Uri"], "CheckpointConfig.S3Uri")
        prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        uploaded = 0
        for relative in self._checkpoint_files():
            try:
                stamp = self._stamp(relative)
            except FileNotFoundError:
                continue
            if self.synced.get(relative) == stamp:
                continue
            self.s3.put_object(
                Bucket=bucket, Key=prefix + relative, Body=(self.checkpoints / relative).read_bytes()
            )
            self.synced[relative] = stamp
            uploaded += 1
        return uploaded

    def run(self, deadline: float, interrupt: bool) -> tuple[str, int | None]:
        """``("exited", code)``, ``("interrupted", None)`` or ``("timeout", None)``."""
        log_path = self.base / "output" / "process.log"
        hyper = self.job.hyper_parameters or {}
        command = [_state.python, str(_decode(hyper["sagemaker_program"])), *self.arguments()]
        outcome: tuple[str, int | None]
        uploaded_total = 0
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - the job's own entry point, as the container runs it
                command,
                cwd=self.code,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                while True:
                    code = process.poll()
                    uploaded_total += self.sync_checkpoints()
                    if code is not None:
                        self.sync_checkpoints()
                        outcome = ("exited", code)
                        break
                    if interrupt and uploaded_total:
                        _kill(process, grace=0)
                        outcome = ("interrupted", None)
                        break
                    if time.monotonic() > deadline:
                        _kill(process, grace=STOP_GRACE_SECONDS)
                        self.sync_checkpoints()
                        outcome = ("timeout", None)
                        break
                    time.sleep(POLL_SECONDS)
            finally:
                if process.poll() is None:
                    _kill(process, grace=0)
        self.output = log_path.read_text(encoding="utf-8", errors="replace")
        return outcome

    def failure(self) -> str | None:
        path = self.base / "output" / "failure"
        return path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else None

    def upload(self) -> str | None:
        """The model (and ``output/data``) tarred to the job's output path; the model's S3 URI."""
        output = self.job.output_data_config["S3OutputPath"].rstrip("/")
        bucket, prefix = _s3_location(f"{output}/{self.job.training_job_name}/output/", "S3OutputPath")
        data = directory_members(self.base / "output" / "data")
        if data:
            self.s3.put_object(Bucket=bucket, Key=prefix + "output.tar.gz", Body=deterministic_tar_gz(data))
        self.s3.put_object(
            Bucket=bucket,
            Key=prefix + "model.tar.gz",
            Body=deterministic_tar_gz(directory_members(self.model)),
        )
        return f"s3://{bucket}/{prefix}model.tar.gz"


class _JobError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.reason = f"{kind}: {message}"


def _kill(process: subprocess.Popen[bytes], grace: float) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM if grace else signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace or 5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _arn_key(arn: str) -> tuple[str, str, str]:
    """(account, region, name) of a SageMaker job ARN."""
    parts = arn.split(":")
    return (parts[4], parts[3], parts[5].split("/", 1)[1])


def _record(job: Any) -> _JobRecord:
    with _state.lock:
        return _state.jobs.setdefault(_arn_key(job.arn), _JobRecord())


def _emit(record: _JobRecord, job: Any, text: str) -> None:
    record.output.append(text)
    sink = _state.log
    if sink is not None:
        for line in text.splitlines():
            sink(f"training job {job.training_job_name}: {line}")


def _metrics(job: Any, output: str) -> list[dict[str, Any]]:
    found = []
    for definition in (job.algorithm_specification or {}).get("MetricDefinitions") or []:
        values = re.findall(definition["Regex"], output)
        if values:
            last = values[-1]
            value = float(last[0] if isinstance(last, tuple) else last)
            if math.isfinite(value):
                found.append({"MetricName": definition["Name"], "Value": value, "Timestamp": utcnow()})
    return found


def _prepare_job(job: Any, request: dict[str, Any]) -> None:
    """moto's job as SageMaker shows a new one (moto makes it Completed with made-up metrics)."""
    job.algorithm_specification = copy.deepcopy(request.get("AlgorithmSpecification") or {})
    job.training_job_status = "InProgress"
    job.secondary_status_transitions = []
    job.final_metric_data_list = []
    job.model_artifacts = None
    job.training_start_time = job.training_end_time = None
    job.failure_reason = None
    job.training_time_in_seconds = job.billable_time_in_seconds = None
    _transition(job, "Starting", "Launching requested ML instances")
    _record(job)


def _attempts(
    job: Any, record: _JobRecord, workdir: Path, deadline: float, interrupt: bool
) -> tuple[str, str, str | None, str | None]:
    """Run the job's attempts; (status, secondary status, failure reason, model URI)."""
    s3: Any = boto_client_for(region=job.arn.split(":")[3], service="s3")
    attempt = 0
    while True:
        attempt += 1
        stage = _Stage(job, s3, workdir / f"attempt-{attempt}")
        _transition(job, "Downloading", "Downloading input data")
        stage.prepare()
        _transition(job, "Training", "Training image download completed. Training in progress.")
        outcome, code = stage.run(deadline, interrupt)
        _emit(record, job, stage.output)
        if outcome != "interrupted":
            break
        interrupt = False
        _transition(job, "Interrupted", "The training job was interrupted: the spot instance was reclaimed")
        _transition(job, "Starting", "Restarting the training job on a new spot instance")
    job.final_metric_data_list = _metrics(job, "".join(record.output))
    if outcome == "timeout":
        runtime = (job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400)
        reason = f"The training job exceeded MaxRuntimeInSeconds ({runtime} s) and was stopped"
        return "Stopped", "MaxRuntimeExceeded", reason, None
    if code == 0:
        _transition(job, "Uploading", "Uploading generated training model")
        return "Completed", "Completed", None, stage.upload()
    failure = stage.failure() or "no failure reason was written to /opt/ml/output/failure"
    return "Failed", "Failed", f"AlgorithmError: {failure}, exit code: {code}", None


def run_training_job(job: Any) -> None:
    """Run a prepared job to its end (module docstring); never raises."""
    record = _record(job)
    runtime = float((job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400))
    spot = bool(job.enable_managed_spot_training)
    interrupt = spot and bool(job.checkpoint_config) and _take_interruption()
    workdir = Path(tempfile.mkdtemp(prefix=f"sagemaker-{job.training_job_name}-"))
    started = time.monotonic()
    job.training_start_time = utcnow()
    status, secondary, reason, artifact = "Failed", "Failed", None, None
    try:
        status, secondary, reason, artifact = _attempts(job, record, workdir, started + runtime, interrupt)
    except _JobError as err:
        reason = err.reason
    except Exception as err:  # the emulator's own failure still ends the job, as the service's would
        reason = f"InternalServerError: {type(err).__name__}: {err}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    end = utcnow()
    training = max(1, math.ceil(time.monotonic() - started))
    job.training_end_time = end
    job.training_time_in_seconds = training
    job.billable_time_in_seconds = max(1, math.ceil(training * (1 - SPOT_SAVINGS))) if spot else training
    job.model_artifacts = {"S3ModelArtifacts": artifact} if artifact else None
    job.failure_reason = reason[:MAX_FAILURE_REASON] if reason else None
    _transition(job, secondary, _FINAL_MESSAGES[secondary])
    job.secondary_status_transitions[-1]["EndTime"] = end
    job.training_job_status = status
    record.done.set()


_FINAL_MESSAGES = {
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "MaxRuntimeExceeded": "Training job stopped: it exceeded MaxRuntimeInSeconds",
}


# ---- a tuning job -------------------------------------------------------------------------------


def _seed(name: str) -> int:
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:16], 16)


def _check_ranges(ranges: dict[str, Any], static: dict[str, Any], operation: str) -> None:
    names: list[str] = []
    for kind in ("ContinuousParameterRanges", "IntegerParameterRanges", "CategoricalParameterRanges"):
        for item in ranges.get(kind) or []:
            names.append(item["Name"])
            if kind == "CategoricalParameterRanges":
                if not item.get("Values"):
                    raise _client_error(
                        "ValidationException", f"range {item['Name']!r} has no Values", operation
                    )
                continue
            low, high = float(item["MinValue"]), float(item["MaxValue"])
            scaling = item.get("ScalingType", "Auto")
            if low > high:
                raise _client_error(
                    "ValidationException",
                    f"range {item['Name']!r}: MinValue {low} > MaxValue {high}",
                    operation,
                )
            if scaling == "Logarithmic" and low <= 0:
                raise _client_error(
                    "ValidationException",
                    f"range {item['Name']!r}: Logarithmic scaling needs MinValue > 0, got {low}",
                    operation,
                )
    duplicated = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(static)))
    if duplicated:
        raise _client_error(
            "ValidationException",
            f"hyper-parameter(s) {', '.join(duplicated)} are given more than once (ranges or static)",
            operation,
        )


def _uniform(rng: random.Random, low: float, high: float, scaling: str) -> float:
    if scaling == "Logarithmic":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if scaling == "ReverseLogarithmic":
        return 1 - math.exp(rng.uniform(math.log(1 - high), math.log(1 - low)))
    return rng.uniform(low, high)


def sample_hyperparameters(name: str, config: dict[str, Any], count: int) -> list[dict[str, str]]:
    """``count`` hyper-parameter sets from the config's ranges, determined by the tuning job's name."""
    ranges = config.get("ParameterRanges") or {}
    categorical = ranges.get("CategoricalParameterRanges") or []
    if config.get("Strategy") == "Grid":
        grid = itertools.product(
            *[[(item["Name"], value) for value in item["Values"]] for item in categorical]
        )
        return [dict(point) for point in itertools.islice(grid, count)]
    rng = random.Random(_seed(name))  # noqa: S311 - reproducible sampling, not security
    samples = []
    for _ in range(count):
        sample: dict[str, str] = {}
        for item in ranges.get("ContinuousParameterRanges") or []:
            value = _uniform(
                rng, float(item["MinValue"]), float(item["MaxValue"]), item.get("ScalingType", "Auto")
            )
            sample[item["Name"]] = repr(value)
        for item in ranges.get("IntegerParameterRanges") or []:
            low, high = int(item["MinValue"]), int(item["MaxValue"])
            value = _uniform(rng, low, high + 1 - 1e-9, item.get("ScalingType", "Auto"))
            sample[item["Name"]] = str(min(high, max(low, math.floor(value))))
        for item in categorical:
            sample[item["Name"]] = str(rng.choice(item["Values"]))
        samples.append(sample)
    return samples


def tuning_training_job_name(tuning_name: str, index: int) -> str:
    """SageMaker's ``<tuning job>-<NNN>-<8 hex>`` (``index`` from 1)."""
    digest = hashlib.sha256(f"{tuning_name}/{index}".encode()).hexdigest()[:8]
    return f"{tuning_name}-{index:03d}-{digest}"


def _tuning_child(backend: Any, tuning: Any, index: int, tuned: dict[str, str]) -> Any:
    definition = tuning.training_job_definition
    name = tuning_training_job_name(tuning.hyper_parameter_tuning_job_name, index)
    checkpoint = copy.deepcopy(definition.get("CheckpointConfig"))
    if checkpoint:
        checkpoint["S3Uri"] = f"{checkpoint['S3Uri'].rstrip('/')}/{name}/"
    request = {"AlgorithmSpecification": definition.get("AlgorithmSpecification") or {}}
    job = backend.create_training_job(
        training_job_name=name,
        hyper_parameters={**(definition.get("StaticHyperParameters") or {}), **tuned},
        algorithm_specification=copy.deepcopy(request["AlgorithmSpecification"]),
        role_arn=definition.get("RoleArn"),
        input_data_config=copy.deepcopy(definition.get("InputDataConfig")),
        output_data_config=copy.deepcopy(definition.get("OutputDataConfig")),
        resource_config=copy.deepcopy(definition.get("ResourceConfig")),
        vpc_config=copy.deepcopy(definition.get("VpcConfig")),
        stopping_condition=copy.deepcopy(definition.get("StoppingCondition")),
        tags=[],
        enable_network_isolation=bool(definition.get("EnableNetworkIsolation")),
        enable_inter_container_traffic_encryption=bool(
            definition.get("EnableInterContainerTrafficEncryption")
        ),
        enable_managed_spot_training=bool(definition.get("EnableManagedSpotTraining")),
        checkpoint_config=checkpoint,
        debug_hook_config=None,
        debug_rule_configurations=None,
        tensor_board_output_config=None,
        experiment_config=None,
    )
    job.tuning_job_arn = tuning.arn
    _prepare_job(job, request)
    return job


def _prepare_tuning(tuning: Any) -> None:
    tuning.hyper_parameter_tuning_job_status = "InProgress"
    tuning.hyper_parameter_tuning_end_time = None
    tuning.best_training_job = None
    tuning.OverallBestTrainingJob = None
    tuning.tuning_job_completion_details = None
    tuning.failure_reason = None
    tuning.training_job_status_counters = {
        "Completed": 0,
        "InProgress": 0,
        "RetryableError": 0,
        "NonRetryableError": 0,
        "Stopped": 0,
    }
    tuning.objective_status_counters = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    tuning.consumed_resources = {"RuntimeInSeconds": 0}


def run_tuning_job(backend: Any, tuning: Any, region: str, done: threading.Event) -> None:
    config = tuning.hyper_parameter_tuning_job_config
    objective = config["HyperParameterTuningJobObjective"]
    limits = config.get("ResourceLimits") or {}
    count = int(limits.get("MaxNumberOfTrainingJobs", 1))
    parallel = max(1, int(limits.get("MaxParallelTrainingJobs", 1)))
    lock = threading.Lock()
    started = time.monotonic()
    results: list[tuple[Any, dict[str, str], float | None]] = []

    def one(index: int, tuned: dict[str, str]) -> None:
        with lock:
            job = _tuning_child(backend, tuning, index, tuned)
            tuning.training_job_status_counters["InProgress"] += 1
            tuning.objective_status_counters["Pending"] += 1
        run_training_job(job)
        value = next(
            (m["Value"] for m in job.final_metric_data_list if m["MetricName"] == objective["MetricName"]),
            None,
        )
        with lock:
            counters = tuning.training_job_status_counters
            counters["InProgress"] -= 1
            if job.training_job_status == "Completed":
                counters["Completed"] += 1
            elif job.training_job_status == "Stopped":
                counters["Stopped"] += 1
            else:
                counters["NonRetryableError"] += 1
            tuning.objective_status_counters["Pending"] -= 1
            ok = job.training_job_status == "Completed" and value is not None
            tuning.objective_status_counters["Succeeded" if ok else "Failed"] += 1
            results.append((job, tuned, value if ok else None))
            tuning.last_modified_time = utcnow()

    try:
        samples = sample_hyperparameters(tuning.hyper_parameter_tuning_job_name, config, count)
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            for future in [pool.submit(one, index, tuned) for index, tuned in enumerate(samples, start=1)]:
                future.result()
        scored = [(job, tuned, value) for job, tuned, value in results if value is not None]
        if scored:
            pick = max if objective["Type"] == "Maximize" else min
            best, tuned, value = pick(scored, key=lambda item: item[2])
            tuning.best_training_job = {
                "TrainingJobName": best.training_job_name,
                "TrainingJobArn": best.arn,
                "TuningJobName": tuning.hyper_parameter_tuning_job_name,
                "CreationTime": best.creation_time,
                "TrainingStartTime": best.training_start_time,
                "TrainingEndTime": best.training_end_time,
                "TrainingJobStatus": best.training_job_status,
                "TunedHyperParameters": tuned,
                "FinalHyperParameterTuningJobObjectiveMetric": {
                    "Type": objective["Type"],
                    "MetricName": objective["MetricName"],
                    "Value": value,
                },
                "ObjectiveStatus": "Succeeded",
            }
            tuning.hyper_parameter_tuning_job_status = "Completed"
        else:
            tuning.hyper_parameter_tuning_job_status = "Failed"
            tuning.failure_reason = (
                f"No training job succeeded with objective metric {objective['MetricName']!r} "
                f"({len(results)} of {count} ran)"
            )
    except Exception as err:
        tuning.hyper_parameter_tuning_job_status = "Failed"
        tuning.failure_reason = f"InternalServerError: {type(err).__name__}: {err}"
    tuning.consumed_resources = {"RuntimeInSeconds": max(1, math.ceil(time.monotonic() - started))}
    tuning.hyper_parameter_tuning_end_time = tuning.last_modified_time = utcnow()
    done.set()


# ---- the Step Functions integration ------------------------------------------------------------


@cache
def _operation(action: str) -> Any:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model("".join(part.capitalize() for part in action.split("_")))


def _epoch_millis(value: Any) -> Any:
    """Timestamps as Step Functions renders them in a task's output (epoch milliseconds)."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: _epoch_millis(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_epoch_millis(v) for v in value]
    return value


class StateTaskServiceSageMakerJobs(sfn_unsupported.StateTaskServiceUnsupported):
    """``sagemaker:createTrainingJob`` and ``createHyperParameterTuningJob`` (request-response or ``.sync``).

    Any other SageMaker action is moto's as before (forwarded to its SageMaker, no ``.sync``).
    """

    def __init__(self) -> None:
        # moto's callback base needs the task-token pattern listed beside .sync (it tidies its endpoint)
        sfn_callback.StateTaskServiceCallback.__init__(
            self,
            supported_integration_patterns=cast(
                Any, {ResourceCondition.WaitForTaskToken, ResourceCondition.Sync}
            ),
        )

    def _emulated(self) -> bool:
        return self._get_boto_service_action() in ACTIONS

    def _validate_service_integration_is_supported(self) -> None:
        if not self._emulated():
            super()._validate_service_integration_is_supported()  # type: ignore[no-untyped-call]

    def _normalise_parameters(
        self,
        parameters: dict[str, Any],
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        action = self._get_boto_service_action(service_action_name)
        if action in ACTIONS:
            self._to_boto_request(parameters, _operation(action).input_shape)

    def _from_error(self, env: Any, ex: Exception) -> FailureEvent:
        if isinstance(ex, ClientError):
            code = ex.response["Error"]["Code"]
            request_id = ex.response.get("ResponseMetadata", {}).get("RequestId", "")
            status = ex.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
            name = "SageMaker.AmazonSageMakerException"
            cause = (
                f"{ex.response['Error']['Message']} (Service: AmazonSageMaker; Status Code: {status}; "
                f"Error Code: {code}; Request ID: {request_id}; Proxy: null)"
            )
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(name),
                event_type=HistoryEventType.TaskFailed,
                event_details=_event_details(
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=name,
                        cause=cause,
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                    )
                ),
            )
        return super()._from_error(env=env, ex=ex)

    def _eval_service_task(
        self,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> None:
        if not self._emulated():
            super()._eval_service_task(env, resource_runtime_part, normalised_parameters, state_credentials)
            return
        action = self._get_boto_service_action()
        region = resource_runtime_part.region
        client: Any = boto_client_for(region=region, service="sagemaker", state_credentials=state_credentials)
        if action == "create_training_job":
            _validate_training_request(normalised_parameters, client, "CreateTrainingJob")
            arn = client.create_training_job(**normalised_parameters)["TrainingJobArn"]
            account, _, name = _arn_key(arn)
            job = sagemaker_backends[account][region].training_jobs[name]
            _prepare_job(job, normalised_parameters)
            threading.Thread(
                target=run_training_job,
                args=(job,),
                name=f"training-{job.training_job_name}",
                daemon=True,
            ).start()
            env.stack.append({"TrainingJobArn": arn})
            return
        name = normalised_parameters.get("HyperParameterTuningJobName", "")
        operation = "CreateHyperParameterTuningJob"
        if len(name) > MAX_TUNING_JOB_NAME:
            raise _client_error(
                "ValidationException",
                f"HyperParameterTuningJobName {name!r} is longer than {MAX_TUNING_JOB_NAME} characters",
                operation,
            )
        definition = normalised_parameters.get("TrainingJobDefinition")
        if not definition:
            raise _client_error(
                "ValidationException", "TrainingJobDefinition is required (emulated)", operation
            )
        config = normalised_parameters["HyperParameterTuningJobConfig"]
        _check_ranges(
            config.get("ParameterRanges") or {}, definition.get("StaticHyperParameters") or {}, operation
        )
        metric = config["HyperParameterTuningJobObjective"]["MetricName"]
        defined = [
            m["Name"] for m in (definition.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
        ]
        if metric not in defined:
            raise _client_error(
                "ValidationException",
                f"the objective metric {metric!r} is not among the MetricDefinitions",
                operation,
            )
        _validate_training_request(
            {k: v for k, v in definition.items() if k != "TrainingJobName"}, client, operation
        )
        arn = client.create_hyper_parameter_tuning_job(**normalised_parameters)["HyperParameterTuningJobArn"]
        account = _arn_key(arn)[0]
        backend = sagemaker_backends[account][region]
        tuning = backend.hyper_parameter_tuning_jobs[name]
        _prepare_tuning(tuning)
        done = threading.Event()
        with _state.lock:
            _state.tuning[(account, region, name)] = done
        threading.Thread(
            target=run_tuning_job, args=(backend, tuning, region, done), name=f"tuning-{name}", daemon=True
        ).start()
        env.stack.append({"HyperParameterTuningJobArn": arn})

    def _build_sync_resolver(
        self,
        env: Any,
        resource_runtime_part: Any,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> Callable[[], Any] | None:
        if not self._emulated():
            return super()._build_sync_resolver(
                env, resource_runtime_part, normalised_parameters, state_credentials
            )
        created = env.stack.pop()
        account, region, name = _arn_key(
            created.get("TrainingJobArn") or created["HyperParameterTuningJobArn"]
        )
        client: Any = boto_client_for(region=region, service="sagemaker", state_credentials=state_credentials)
        if self._get_boto_service_action() == "create_training_job":
            done = _state.jobs[(account, region, name)].done

            def describe() -> dict[str, Any]:
                return dict(client.describe_training_job(TrainingJobName=name))

            status_key, ok = "TrainingJobStatus", "Completed"
        else:
            done = _state.tuning[(account, region, name)]

            def describe() -> dict[str, Any]:
                return dict(client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name))

            status_key, ok = "HyperParameterTuningJobStatus", "Completed"

        def resolve() -> dict[str, Any] | None:
            if not done.is_set():
                return None
            answer = describe()
            answer.pop("ResponseMetadata", None)
            described: dict[str, Any] = _epoch_millis(answer)
            if described.get(status_key) == ok:
                return described
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=_event_details(
                        taskFailedEventDetails=TaskFailedEventDetails(
                            resource=self._get_sfn_resource(),
                            resourceType=self._get_sfn_resource_type(),
                            error=StatesErrorNameType.StatesTaskFailed.to_name(),
                            cause=to_json_str(described),
                        )
                    ),
                )
            )

        return resolve


def _service_for(original: Callable[..., Any]) -> Callable[..., Any]:
    def state_task_service_for(service_name: str) -> Any:
        if service_name == "sagemaker":
            return StateTaskServiceSageMakerJobs()
        return original(service_name)

    state_task_service_for._mlpipe_original = original  # type: ignore[attr-defined]
    return state_task_service_for


def install() -> tuple[str, ...]:
    """Route the interpreter's SageMaker job tasks here (idempotent); returns the gap lines."""
    current = getattr(state_task_factory, "state_task_service_for")  # noqa: B009 - not re-exported
    if not hasattr(current, "_mlpipe_original"):
        setattr(state_task_factory, "state_task_service_for", _service_for(current))  # noqa: B010
    return GAPS
