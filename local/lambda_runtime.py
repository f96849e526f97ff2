"""The deployed functions of the emulated account, run in this process (moto would need Docker).

Each function's handler string and environment come from the emulated account
(``GetFunctionConfiguration``: what the templates deployed, references resolved), never from a
second list. The handlers share one process, so their environments are merged into
``os.environ`` once; a variable two functions set differently is refused, except the
Powertools service name, which each handler sets in code.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]
PER_FUNCTION_VARIABLES = frozenset({"POWERTOOLS_SERVICE_NAME"})


class FunctionConfigError(RuntimeError):
    """The deployed functions cannot share this process (conflicting environments, bad handler)."""


@dataclass
class LocalContext:
    """The Lambda context object, with what Powertools and the handlers read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    invoked_function_arn: str
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


@dataclass(frozen=True)
class LocalFunction:
    name: str
    arn: str
    handler: str  # module.path.function
    memory_mb: int
    timeout_seconds: int
    environment: dict[str, str]


def handler_of(config: dict[str, Any]) -> str:
    """A function's handler: ``Handler`` of a zip function, the image command of an image function."""
    if config.get("PackageType") == "Image":
        command = config.get("ImageConfigResponse", {}).get("ImageConfig", {}).get("Command") or []
        if not command:
            raise FunctionConfigError(f"{config['FunctionName']}: an image function without a command")
        return str(command[0])
    if not config.get("Handler"):
        raise FunctionConfigError(f"{config['FunctionName']}: no handler")
    return str(config["Handler"])


def load_handler(handler: str) -> Handler:
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise FunctionConfigError(f"handler {handler!r} must be module.function")
    function: Handler = getattr(importlib.import_module(module_name), attribute)
    return function


class LocalFunctions:
    """The functions named ``names`` in the emulated account, invocable by name."""

    def __init__(self, lambda_client: Any, names: list[str]) -> None:
        self.functions: dict[str, LocalFunction] = {}
        for name in names:
            config = lambda_client.get_function_configuration(FunctionName=name)
            self.functions[name] = LocalFunction(
                name=name,
                arn=config["FunctionArn"],
                handler=handler_of(config),
                memory_mb=config.get("MemorySize", 128),
                timeout_seconds=config.get("Timeout", 3),
                environment=dict(config.get("Environment", {}).get("Variables", {})),
            )
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self.invocations: dict[str, int] = dict.fromkeys(self.functions, 0)

    def merged_environment(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for function in self.functions.values():
            for key, value in function.environment.items():
                if key in PER_FUNCTION_VARIABLES:
                    continue
                if key in merged and merged[key] != value:
                    raise FunctionConfigError(
                        f"{key} is {merged[key]!r} for one function and {value!r} for {function.name}: "
                        "the local stage runs them in one process"
                    )
                merged[key] = value
        return merged

    def apply_environment(self) -> dict[str, str]:
        """Put the functions' variables into this process's environment (once, before any import)."""
        merged = self.merged_environment()
        os.environ.update(merged)
        return merged

    def handler(self, name: str) -> Handler:
        with self._lock:
            if name not in self._handlers:
                self._handlers[name] = load_handler(self.functions[name].handler)
            return self._handlers[name]

    def context(self, name: str) -> LocalContext:
        function = self.functions[name]
        return LocalContext(
            function_name=name,
            memory_limit_in_mb=function.memory_mb,
            timeout_seconds=function.timeout_seconds,
            invoked_function_arn=function.arn,
        )

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        if name not in self.functions:
            raise KeyError(f"no function {name} in the local stage")
        self.invocations[name] += 1
        return self.handler(name)(event, self.context(name))
