"""Step Functions runs in moto: the real definition, interpreted; its Lambda and Batch tasks run here.

moto interprets a state machine's definition (its ``stepfunctions.execute_state_machine`` mode),
but three gaps stand between that and a run of the batch layer on this machine:

- moto's CloudFormation handler creates state machines in its non-interpreting backend, so the
  API (which then uses the interpreting one) would not see the deployed machine: created in the
  backend the API uses instead;
- a Lambda task is an ``Invoke`` of moto's Lambda, which runs the function in Docker: a function
  the stage attached (:func:`attach`) is called in this process instead, and an exception it
  raises is answered as Lambda does (``FunctionError`` with ``errorType`` = the exception's
  class name, which is what the definition's Retry and Catch match on);
- moto's Batch integration hands the state's PascalCase parameters to boto unconverted (boto
  rejects ``JobDefinition``) and returns boto's camelCase answer where Step Functions answers in
  PascalCase (``JobId``, ``Status``): both are converted along the Batch API's shapes;
- a Batch ``.sync`` task submits a job that moto runs in Docker: the job definition's command
  (parameters substituted, environment and overrides applied) runs through the attached job
  runner instead, and the job ends SUCCEEDED or FAILED by its exit code, which the ``.sync``
  integration reads with ``DescribeJobs`` as it would from Batch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import botocore.session
from botocore.model import ListShape, Shape, StructureShape
from moto.awslambda.models import LambdaBackend
from moto.batch import models as batch_models
from moto.batch.utils import JobStatus
from moto.core.config import default_user_config
from moto.stepfunctions import models as sfn_models
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk as sfn_aws_sdk,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_batch as sfn_batch,
)
from moto.stepfunctions.responses import get_backend

_BY = "fixed by local.emulator.stepfunctions"
GAPS = (
    f"Step Functions executions interpret the definition (moto's execute_state_machine mode; its "
    f"CloudFormation handler created machines the interpreter did not see): {_BY}",
    f"Lambda tasks of a state machine (moto invokes functions in Docker): run in-process, {_BY}",
    f"Batch jobs (moto runs the container in Docker): the job definition's command runs on this machine, "
    f"{_BY}",
    f"Step Functions' Batch integration (moto passes PascalCase parameters to boto and returns camelCase): "
    f"converted along the Batch API's shapes, {_BY}",
    f"Step Functions' AWS SDK integrations (moto keeps boto's datetime objects in the state, and "
    f"DescribeExecution then fails with a 500): timestamps become ISO 8601 strings, as Step Functions "
    f"answers them, {_BY}",
)

LambdaRunner = Callable[[str, dict[str, Any]], Any]  # (function name, event) -> result
# (command, environment, the attempt's timeout in seconds or None) -> exit code
JobRunner = Callable[[list[str], dict[str, str], float | None], int]


class _Attached:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.functions: dict[str, LambdaRunner] = {}
        self.job_runner: JobRunner | None = None


_attached = _Attached()


def attach(*, functions: dict[str, LambdaRunner], job_runner: JobRunner | None) -> None:
    """Route Invoke of the named functions, and Batch jobs, to this process's runners."""
    with _attached.lock:
        _attached.functions = dict(functions)
        _attached.job_runner = job_runner


def detach() -> None:
    attach(functions={}, job_runner=None)


def _create_in_api_backend(
    cls: Any, /, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **_: Any
) -> Any:
    properties = cloudformation_json["Properties"]
    name = properties.get("StateMachineName", resource_name)
    tags = [{"key": tag["Key"], "value": tag["Value"]} for tag in properties.get("Tags", [])]
    backend = get_backend(account_id, region_name)
    return backend.create_state_machine(
        name, properties.get("DefinitionString", ""), properties.get("RoleArn", ""), tags=tags
    )


def _delete_in_api_backend(
    cls: Any, /, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **_: Any
) -> None:
    get_backend(account_id, region_name).delete_state_machine(resource_name)


def _invoke(original: Callable[..., Any]) -> Callable[..., Any]:
    def invoke(  # noqa: PLR0917 - moto's LambdaBackend.invoke signature
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> str | bytes | None:
        function = self.get_function(function_name, qualifier)
        runner = _attached.functions.get(function.function_name)
        if runner is None:
            return original(self, function_name, qualifier, body, headers, response_headers)  # type: ignore[no-any-return]
        event = json.loads(body) if body else {}
        try:
            payload = json.dumps(runner(function.function_name, event), default=str)
        except Exception as err:  # the function's error, answered the way Lambda answers it
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps({"errorType": type(err).__name__, "errorMessage": str(err)})
        response_headers["Content-Length"] = str(len(payload))
        return payload

    return invoke


def _run_job(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(job: Any) -> None:
        runner = _attached.job_runner
        if runner is None:
            original(job)
            return
        try:
            command = job._add_parameters_to_command(job._get_container_property("command", []))
            environment = {
                item["name"]: item["value"] for item in job._get_container_property("environment", [])
            }
            environment["AWS_BATCH_JOB_ID"] = job.job_id
            environment["AWS_BATCH_JOB_ATTEMPT"] = "1"
            job.job_started_at = datetime.now()
            job.status = JobStatus.RUNNING
            job._start_attempt()
            exit_code = runner(list(command), environment, job._get_attempt_duration())
            job.exit_code = exit_code
            if exit_code != 0:
                job.job_stopped_reason = f"Essential container in task exited (exit code {exit_code})"
            job._mark_stopped(success=exit_code == 0)
        except Exception as err:
            job.job_stopped_reason = f"CannotStartContainerError: {type(err).__name__}: {err}"
            job._mark_stopped(success=False)

    return run


@cache
def _operation(action: str) -> Any:
    """The Batch API operation of a Step Functions action (``submit_job`` or ``describe_jobs``)."""
    model = botocore.session.get_session().get_service_model("batch")
    return model.operation_model("".join(part.capitalize() for part in action.split("_")))


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def _to_sfn(value: Any, shape: Shape | None) -> None:
    """boto's answer as Step Functions gives it, in place: structure members PascalCase, map keys kept.

    In place, because the interpreter holds on to the answer (and to the job inside it) it asks
    to have converted.
    """
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for key in list(value):
            _to_sfn(value[key], shape.members.get(key))
            value[_pascal(key)] = value.pop(key)
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for item in value:
            _to_sfn(item, shape.member)


def _normalise_parameters(
    self: Any,
    parameters: dict[str, Any],
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    action = self._get_boto_service_action(service_action_name)
    self._to_boto_request(parameters, _operation(action).input_shape)


def _normalise_response(
    self: Any, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    _to_sfn(response, _operation(self._get_boto_service_action(service_action_name)).output_shape)


def iso_timestamps(value: Any) -> Any:
    """A boto answer as Step Functions' AWS SDK integrations give it: timestamps as ISO 8601 strings
    (``2026-12-03T15:04:05.123Z``), everything else unchanged."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: iso_timestamps(item) for key, item in value.items()}
    if isinstance(value, list):
        return [iso_timestamps(item) for item in value]
    return value


def _sdk_task(original: Callable[..., Any]) -> Callable[..., Any]:
    def evaluate(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, env, *args, **kwargs)
        env.stack.append(iso_timestamps(env.stack.pop()))
        return result

    return evaluate


def install() -> tuple[str, ...]:
    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True
    state_machine: Any = sfn_models.StateMachine
    if not getattr(state_machine, "_mlpipe_fixed", False):
        state_machine.create_from_cloudformation_json = classmethod(_create_in_api_backend)
        state_machine.delete_from_cloudformation_json = classmethod(_delete_in_api_backend)
        state_machine._mlpipe_fixed = True
    backend: Any = LambdaBackend
    if not getattr(backend, "_mlpipe_fixed", False):
        backend.invoke = _invoke(backend.invoke)
        backend._mlpipe_fixed = True
    integration: Any = sfn_batch.StateTaskServiceBatch
    if not getattr(integration, "_mlpipe_fixed", False):
        integration._normalise_parameters = _normalise_parameters
        integration._normalise_response = _normalise_response
        integration._mlpipe_fixed = True
    sdk: Any = sfn_aws_sdk.StateTaskServiceAwsSdk
    if not getattr(sdk, "_mlpipe_fixed", False):
        sdk._eval_service_task = _sdk_task(sdk._eval_service_task)
        sdk._mlpipe_fixed = True
    job: Any = batch_models.Job
    if not getattr(job, "_mlpipe_fixed", False):
        job.run = _run_job(job.run)
        job._mlpipe_fixed = True
    return GAPS
