"""The deploy function: EventBridge events in, mlpipe's start/finish out (moto + emulator)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent
from pydantic import ValidationError

from mlpipe.errors import MlpipeError
from mlpipe.lifecycle import Lifecycle
from mlpipe.stage import DEPLOY_FUNCTION
from mlpipe.state import DesiredState, Traffic
from shared import answer_cache
from stacks.inference.runtime.deploy.handler import Settings, build_lifecycle, handler, route
from tests.unit.conftest import ANSWER_CACHE_TABLE, BUCKET, ENDPOINT, IMAGE, PATH, ROLE, cache_generation

ENVIRONMENT = {
    "STAGE": "local",
    "ENDPOINT_NAME": ENDPOINT,
    "SAGEMAKER_EXECUTION_ROLE_ARN": ROLE,
    "INFERENCE_IMAGE_URI": IMAGE,
    "MODEL_BUCKET": BUCKET,
    "MODEL_PARAMETERS_PATH": PATH,
}


def parameter_change(name: str) -> EventBridgeEvent:
    return EventBridgeEvent(
        {
            "version": "0",
            "id": "1",
            "detail-type": "Parameter Store Change",
            "source": "aws.ssm",
            "account": "123456789012",
            "time": "2026-11-24T12:00:00Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:ssm:us-east-1:123456789012:parameter{name}"],
            "detail": {"operation": "Update", "name": name, "type": "String"},
        }
    )


def endpoint_change(endpoint: str, status: str = "IN_SERVICE") -> EventBridgeEvent:
    return EventBridgeEvent(
        {
            "version": "0",
            "id": "2",
            "detail-type": "SageMaker Endpoint State Change",
            "source": "aws.sagemaker",
            "account": "123456789012",
            "time": "2026-11-24T12:05:00Z",
            "region": "us-east-1",
            "resources": [f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{endpoint}"],
            "detail": {"EndpointName": endpoint, "EndpointStatus": status},
        }
    )


@pytest.fixture
def environment(answer_cache_table) -> dict[str, str]:
    return {**ENVIRONMENT, answer_cache.TABLE_ENVIRONMENT: ANSWER_CACHE_TABLE}


@pytest.fixture
def settings(environment) -> Settings:
    return Settings.from_environment(environment)


@pytest.fixture
def lifecycle(aws, stage, settings):
    return build_lifecycle(settings, aws)


def _desire(lifecycle, challenger: str, weight: float) -> None:
    lifecycle.set_desired(
        DesiredState(champion="v1", traffic=Traffic(challenger=challenger, challenger_weight=weight))
    )


def test_a_desired_state_change_starts_and_the_endpoint_event_finishes(
    lifecycle, settings, answer_cache_table
):
    _desire(lifecycle, "v2", 0.25)
    started = route(parameter_change(f"{PATH}/traffic"), settings, lifecycle)
    assert started.action == "started"
    assert route(endpoint_change(ENDPOINT, "UPDATING"), settings, lifecycle).action == "waiting"
    finished = route(endpoint_change(ENDPOINT), settings, lifecycle)
    assert finished.action == "finished"
    verified = lifecycle.verified()
    assert verified is not None
    assert verified.variants["ModelB"].version == "v2"
    assert verified.variants["ModelB"].weight == 0.25
    assert cache_generation(answer_cache_table) == verified.request_id, "the answer cache is invalidated"


def test_a_change_during_a_deployment_is_deployed_after_it(lifecycle, settings):
    _desire(lifecycle, "v2", 0.25)
    assert route(parameter_change(f"{PATH}/traffic"), settings, lifecycle).action == "started"
    _desire(lifecycle, "v2", 0.5)  # an operator moves on while SageMaker is updating
    assert route(parameter_change(f"{PATH}/traffic"), settings, lifecycle).action == "busy"
    route(endpoint_change(ENDPOINT, "UPDATING"), settings, lifecycle)
    finished = route(endpoint_change(ENDPOINT), settings, lifecycle)
    assert finished.action == "finished"
    assert "desired state changed since: started" in finished.detail
    # the weights update shows Updating first, as SageMaker's does, then InService
    assert route(endpoint_change(ENDPOINT, "UPDATING"), settings, lifecycle).action == "waiting"
    assert route(endpoint_change(ENDPOINT), settings, lifecycle).action == "finished"
    verified = lifecycle.verified()
    assert verified is not None
    assert verified.variants["ModelB"].weight == 0.5


def test_events_for_other_parameters_or_endpoints_are_ignored(lifecycle, settings):
    assert route(parameter_change(f"{PATH}/verified"), settings, lifecycle).action == "ignored"
    assert route(endpoint_change("someone-elses-endpoint"), settings, lifecycle).action == "ignored"
    assert route(endpoint_change(ENDPOINT), settings, lifecycle).action == "ignored"  # nothing in progress
    assert lifecycle.pending() is None


def test_the_lambda_entry_point_reports_a_failed_deployment_without_raising(
    aws, stage, environment, monkeypatch, lambda_context
):
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("stacks.inference.runtime.deploy.handler.boto3.session.Session", lambda: aws)
    aws.client("ssm").put_parameter(
        Name=f"{PATH}/traffic",
        Value=json.dumps({"challenger": "v7", "challenger_weight": 0.1}),
        Type="String",
    )
    result = handler(parameter_change(f"{PATH}/traffic").raw_event, lambda_context)
    assert result["action"] == "failed"
    assert "v7 is not registered" in result["detail"]


def test_invalid_configuration_is_refused_with_the_field_named(environment):
    with pytest.raises(ValidationError, match="SAGEMAKER_EXECUTION_ROLE_ARN"):
        Settings.from_environment({**environment, "SAGEMAKER_EXECUTION_ROLE_ARN": "not-an-arn"})
    missing = {k: v for k, v in environment.items() if k != answer_cache.TABLE_ENVIRONMENT}
    with pytest.raises(ValidationError, match=answer_cache.TABLE_ENVIRONMENT):
        Settings.from_environment(missing)


@pytest.fixture
def operator(lifecycle, settings, aws):
    """mlpipe in a stage with the deploy function: it hands requests over and waits."""
    cli = Lifecycle(**{**lifecycle.__dict__, "actor": "alice", "on_verified": []})
    cli.reconciler = DEPLOY_FUNCTION
    cli.poll_seconds = 1.0
    cli.timeout_seconds = 10.0
    return cli


def test_mlpipe_hands_its_request_to_the_deploy_function_and_waits_for_that_request(operator, settings, aws):
    """One reconciler: mlpipe only locks, writes the desired state and waits; the function deploys."""
    events = iter(
        [
            parameter_change(f"{PATH}/traffic"),
            endpoint_change(ENDPOINT, "UPDATING"),
            endpoint_change(ENDPOINT),
        ]
    )
    function = build_lifecycle(settings, aws)
    outcomes: list[str] = []
    lock_holders: list[str] = []

    def function_reacts(_seconds: float) -> None:
        pending = operator.pending()
        if pending is not None:
            lock_holders.append(pending.request_id)
        outcomes.append(route(next(events), settings, function).action)

    operator.sleep = function_reacts
    said: list[str] = []
    operator.progress = said.append
    sagemaker_calls: list[str] = []
    operator.sagemaker = _Recording(operator.sagemaker, sagemaker_calls)
    verified = operator.deploy("v2", variant="ModelB", weight=0.3)
    assert verified.variants["ModelB"].version == "v2"
    assert verified.variants["ModelB"].weight == 0.3
    assert outcomes == ["started", "waiting", "finished"]
    assert len(set(lock_holders)) == 1, "the function adopted mlpipe's request, same id throughout"
    assert verified.request_id == lock_holders[0]
    last = operator.last_request()
    assert last is not None
    assert (last.request_id, last.status) == (verified.request_id, "succeeded")
    assert not [c for c in sagemaker_calls if c.startswith(("update_", "create_"))], "mlpipe changed nothing"
    assert any("desired state written" in line for line in said)
    assert any("started; waiting for the endpoint" in line for line in said)


class _Recording:
    def __init__(self, client, calls: list[str]) -> None:
        self._client, self._calls = client, calls

    def __getattr__(self, name: str):
        self._calls.append(name)
        return getattr(self._client, name)


def test_the_second_parameter_event_of_a_promotion_finds_the_request_already_started(operator, settings, aws):
    """promote writes active-version and traffic: two events, one deployment of the whole request."""
    function = build_lifecycle(settings, aws)
    operator.rollback_grace_seconds = 600
    events = iter(
        [
            parameter_change(f"{PATH}/traffic"),
            endpoint_change(ENDPOINT, "UPDATING"),
            endpoint_change(ENDPOINT),
            parameter_change(f"{PATH}/active-version"),
            parameter_change(f"{PATH}/traffic"),
            endpoint_change(ENDPOINT, "UPDATING"),
            endpoint_change(ENDPOINT),
        ]
    )
    outcomes: list[str] = []
    operator.sleep = lambda _s: outcomes.append(route(next(events), settings, function).action)
    operator.deploy("v2", variant="ModelB", weight=0.3)
    promoted = operator.promote()
    assert outcomes[3:] == ["started", "busy", "waiting", "finished"]
    assert {k: (v.version, v.weight) for k, v in promoted.variants.items()} == {
        "ModelA": ("v1", 0.0),
        "ModelB": ("v2", 1.0),
    }


def test_mlpipe_reports_the_deploy_function_failure_of_its_request(operator, settings, aws):
    aws.client("s3").put_object(Bucket=BUCKET, Key="models/v2/model.tar.gz", Body=b"tampered")
    function = build_lifecycle(settings, aws)
    operator.sleep = lambda _seconds: route(parameter_change(f"{PATH}/traffic"), settings, function)
    with pytest.raises(
        MlpipeError, match=r"request \w+ failed in the deploy function: .*overwritten outside"
    ):
        operator.deploy("v2", variant="ModelB", weight=0.3)
    assert operator.pending() is None, "the failed request released the lock"


def test_a_scheduled_event_retires_an_expired_standby_and_nothing_else(operator, settings, aws):
    function = build_lifecycle(settings, aws)
    scheduled = EventBridgeEvent(
        {**parameter_change(f"{PATH}/traffic").raw_event, "detail-type": "Scheduled Event", "detail": {}}
    )
    assert route(scheduled, settings, function).action == "ignored"  # no standby
    operator.rollback_grace_seconds = 60
    events = itertools.cycle([parameter_change(f"{PATH}/traffic"), endpoint_change(ENDPOINT)])
    operator.sleep = lambda _s: route(next(events), settings, function)
    operator.deploy("v2", variant="ModelB", weight=0.3)
    operator.promote()
    assert route(scheduled, settings, function).detail.startswith("standby v1 is kept until")
    function.clock = lambda: datetime.now(UTC) + timedelta(seconds=120)
    started = route(scheduled, settings, function)
    assert started.action == "started"
    assert route(endpoint_change(ENDPOINT, "UPDATING"), settings, function).action == "waiting"
    assert route(endpoint_change(ENDPOINT), settings, function).action == "finished"
    verified = function.verified()
    assert verified is not None
    assert {v.version for v in verified.variants.values()} == {"v2"}


class _States:
    """Step Functions' task-token calls, recorded (the waiting training run)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    def send_task_success(self, **kwargs: str) -> None:
        self.calls.append(("success", kwargs))

    def send_task_failure(self, **kwargs: str) -> None:
        self.calls.append(("failure", kwargs))


class _Session:
    def __init__(self, session, states: _States) -> None:
        self._session, self._states = session, states

    def client(self, name: str):
        return self._states if name == "stepfunctions" else self._session.client(name)


@pytest.fixture
def entry_point(aws, stage, environment, monkeypatch, lambda_context):
    """The Lambda entry point with Step Functions recorded: handle(event) -> outcome."""
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    states = _States()
    monkeypatch.setattr(
        "stacks.inference.runtime.deploy.handler.boto3.session.Session", lambda: _Session(aws, states)
    )

    def handle(event: EventBridgeEvent) -> dict[str, str]:
        return handler(event.raw_event, lambda_context)

    handle.states = states  # type: ignore[attr-defined]
    return handle


def test_a_submitted_request_s_task_token_is_completed_with_its_verified_state(operator, entry_point):
    desired = DesiredState(champion="v1", traffic=Traffic(challenger="v2", challenger_weight=0.2))
    request_id = operator.submit(desired, callback_token="token-1")
    pending = operator.pending()
    assert pending is not None
    assert (pending.request_id, pending.callback_token, pending.awaiting_function) == (
        request_id,
        "token-1",
        True,
    )
    assert entry_point(parameter_change(f"{PATH}/traffic"))["action"] == "started"
    adopted = operator.pending()
    assert adopted is not None
    assert (adopted.request_id, adopted.callback_token) == (request_id, "token-1"), (
        "the token survives the start"
    )
    assert entry_point(endpoint_change(ENDPOINT, "UPDATING"))["action"] == "waiting"
    assert entry_point.states.calls == [], "nothing is sent while the endpoint updates"
    assert entry_point(endpoint_change(ENDPOINT))["action"] == "finished"
    ((kind, call),) = entry_point.states.calls
    assert kind == "success"
    assert call["taskToken"] == "token-1"
    output = json.loads(call["output"])
    assert output["request_id"] == request_id
    assert output["verified"]["variants"]["ModelB"]["version"] == "v2"


def test_a_submitted_request_that_fails_fails_its_task(operator, entry_point, aws):
    desired = DesiredState(champion="v1", traffic=Traffic(challenger="v2", challenger_weight=0.2))
    operator.submit(desired, callback_token="token-2")
    aws.client("sagemaker").delete_endpoint(EndpointName=ENDPOINT)  # the deployment cannot start
    assert entry_point(parameter_change(f"{PATH}/traffic"))["action"] == "failed"
    ((kind, call),) = entry_point.states.calls
    assert kind == "failure"
    assert call["taskToken"] == "token-2"
    assert call["error"] == "DeploymentFailed"
    assert ENDPOINT in call["cause"]


def test_submit_needs_the_deploy_function(lifecycle):
    direct = Lifecycle(**{**lifecycle.__dict__, "reconciler": "direct", "on_verified": []})
    desired = DesiredState(champion="v1", traffic=Traffic(challenger="v2", challenger_weight=0.2))
    with pytest.raises(MlpipeError, match="needs the stage's deploy function"):
        direct.submit(desired, callback_token="token")
    assert direct.pending() is None
