"""One suite, two targets: the local stage (default; started and stopped here) or a deployed stage.

    nox -s integration                  # the local stage, on 127.0.0.1
    nox -s integration -- --stage dev   # a deployed stage; names from its stack outputs

Resource names always come from the stacks' outputs, never from the tests. Tests that need to
break something (stop a model server) run against the local stage only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest

from shared.config import get_config
from shared.outputs import DataOutputs, InferenceOutputs


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stage", default="local", help="local (default: started by the suite) or a deployed stage"
    )


@dataclass
class Target:
    name: str
    api_url: str
    api_key: str
    session: boto3.session.Session
    inference: dict[str, str]
    data: dict[str, str]
    batch: dict[str, str]
    local: Any = None  # the LocalStage when the target is the local stage

    @property
    def ttl_days(self) -> int:
        return get_config(self.name).data.prediction_ttl_days

    def api(self, key: str | None = None) -> httpx.Client:
        headers = {"x-api-key": key if key is not None else self.api_key}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=30)

    @property
    def table(self) -> Any:
        return self.session.resource("dynamodb").Table(self.data[DataOutputs.PREDICTIONS_TABLE_NAME])

    def stored_items(self) -> int:
        return int(self.table.scan(Select="COUNT")["Count"])


def _outputs(session: boto3.session.Session, stack: str) -> dict[str, str]:
    described = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    name = request.config.getoption("--stage")
    config = get_config(name)
    if name == "local":
        from local.stage import LocalStage  # noqa: PLC0415 - only the local target needs it

        warnings.filterwarnings("ignore", module="moto")
        stage = LocalStage(log=lambda _line: None)
        try:
            info = stage.start()
            session = boto3.session.Session(region_name=config.region)
            yield Target(
                name=name,
                api_url=info.api_url,
                api_key=info.api_key,
                session=session,
                inference=info.outputs[config.stack_name("inference")],
                data=info.outputs[config.stack_name("data")],
                batch=info.outputs[config.stack_name("batch")],
                local=stage,
            )
        finally:
            stage.stop()
        return
    session = boto3.session.Session(region_name=config.region)
    inference = _outputs(session, config.stack_name("inference"))
    key = session.client("apigateway").get_api_key(
        apiKey=inference[InferenceOutputs.API_KEY_ID], includeValue=True
    )
    yield Target(
        name=name,
        api_url=inference[InferenceOutputs.API_URL].rstrip("/"),
        api_key=key["value"],
        session=session,
        inference=inference,
        data=_outputs(session, config.stack_name("data")),
        batch=_outputs(session, config.stack_name("batch")),
    )


@pytest.fixture
def local_stage(target: Target) -> Any:
    if target.local is None:
        pytest.skip("breaks a component on purpose: local stage only")
    return target.local


@pytest.fixture
def api(target: Target) -> Iterator[httpx.Client]:
    with target.api() as client:
        yield client
