"""The local stage's in-process Lambda runtime."""

from __future__ import annotations

import os
from typing import Any

import pytest

from local.lambda_runtime import FunctionConfigError, LocalFunctions, load_handler


class Functions:
    """``GetFunctionConfiguration`` answers, as the emulated account gives them."""

    def __init__(self, configs: dict[str, dict[str, Any]]) -> None:
        self.configs = configs

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        return self.configs[FunctionName]


def echo_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"event": event, "function": context.function_name, "request": context.aws_request_id}


ECHO = "tests.unit.local.test_lambda_runtime.echo_handler"


def config(handler: str, **variables: str) -> dict[str, Any]:
    return {
        "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
        "Handler": handler,
        "MemorySize": 256,
        "Timeout": 10,
        "Environment": {"Variables": variables},
    }


def test_functions_are_invoked_in_process_with_a_lambda_context(monkeypatch):
    monkeypatch.delenv("LOCAL_RUNTIME_TEST", raising=False)
    functions = LocalFunctions(
        Functions({"echo": config(ECHO, LOCAL_RUNTIME_TEST="1", POWERTOOLS_SERVICE_NAME="a")}), ["echo"]
    )
    assert functions.apply_environment() == {"LOCAL_RUNTIME_TEST": "1"}
    assert os.environ["LOCAL_RUNTIME_TEST"] == "1"
    context = functions.context("echo")
    assert context.memory_limit_in_mb == 256
    assert 0 < context.get_remaining_time_in_millis() <= 10_000
    answer = functions.invoke("echo", {"a": 1})
    assert answer["event"] == {"a": 1}
    assert answer["function"] == "echo"
    assert answer["request"] != functions.invoke("echo", {})["request"]  # a request id per invocation
    assert functions.invocations == {"echo": 2}
    with pytest.raises(KeyError, match="no function other"):
        functions.invoke("other", {})


def test_conflicting_environments_cannot_share_the_process():
    functions = LocalFunctions(
        Functions(
            {
                "a": config("json.dumps", TABLE="one", POWERTOOLS_SERVICE_NAME="a"),
                "b": config("json.dumps", TABLE="two", POWERTOOLS_SERVICE_NAME="b"),
            }
        ),
        ["a", "b"],
    )
    with pytest.raises(FunctionConfigError, match="TABLE is 'one' for one function and 'two' for b"):
        functions.merged_environment()


def test_a_handler_string_needs_a_module():
    with pytest.raises(FunctionConfigError, match=r"must be module\.function"):
        load_handler("handler")
