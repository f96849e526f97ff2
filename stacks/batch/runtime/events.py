"""The events the state machine passes to the batch functions (pydantic models, parsed by Powertools).

- ``RunInput``: the input lister's event, ``{"bucket": str, "prefix": str}``;
- ``InputItem``: one element of the lister's ``inputs``, the inline prediction's event;
- ``ReportInput``: the report's event, ``{"execution": str, "inputs": [ReportItem, ...]}`` where an
  item is a listed ``InputItem``, or the Map's result for it (the item with ``outcome``, or with
  ``failed: true`` and the ``error`` name).

Unknown fields are ignored, so the state machine may pass an item or a state's whole output on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.parser import parse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stacks.batch.runtime.errors import BatchError, ConfigurationError
from stacks.batch.runtime.layout import split_uri

# S3 bucket naming rules (lower case letters, digits, dots, hyphens; 3-63 characters)
BUCKET_NAME = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# Step Functions execution names: 1-80 characters, none of white space, brackets, wildcards and
# " # % \ ^ | ~ ` $ & , ; : /
EXECUTION_NAME = r'^[^\s<>{}\[\]?*"#%\\^|~`$&,;:/]{1,80}$'


class RunInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    bucket: str = Field(pattern=BUCKET_NAME)
    prefix: str = Field(max_length=1024)


class InputItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    uri: str = Field(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+")
    key: str | None = None
    size: int | None = Field(default=None, ge=0)
    etag: str | None = None

    @property
    def input_key(self) -> str:
        """The object key (from ``uri``: the one field every step relies on)."""
        return split_uri(self.uri)[1]


class ReportItem(InputItem):
    """An input as the report receives it: a listed item, or the Map's result for it.

    The Map's result is the item with ``outcome`` (what the inline function or the Batch job
    returned) when the input succeeded, or ``{"uri", "key", "failed": true, "error": "<name>"}``
    when its step failed after retries.
    """

    failed: bool = False
    error: str | None = None
    outcome: dict[str, Any] | None = None


class ReportInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    execution: str = Field(pattern=EXECUTION_NAME)
    inputs: list[ReportItem]


Model = TypeVar("Model", bound=BaseModel)

RUN_INPUT_SHAPE = '{"bucket": "<bucket name>", "prefix": "<key prefix or whole key>"}'
INPUT_ITEM_SHAPE = '{"uri": "s3://<bucket>/<key>", "key": ..., "size": ..., "etag": ...}'
REPORT_INPUT_SHAPE = (
    '{"execution": "<execution name>", '
    '"inputs": [{"uri": "s3://<bucket>/<key>", "failed": <bool, optional>, "error": <str, optional>, ...}]}'
)


def describe(err: ValidationError) -> str:
    """``field: problem; ...`` without the input values (events may be large)."""
    problems = []
    for error in err.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "event"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def parse_event(event: Any, model: type[Model], error: Callable[[str], BatchError], shape: str) -> Model:
    """The event as ``model``; an event of another shape raises ``error`` naming what is wrong."""
    try:
        return parse(event=event, model=model)
    except ValidationError as err:
        raise error(f"the event must be {shape}; {describe(err)}") from None


def parse_settings(environ: dict[str, str], model: type[Model]) -> Model:
    """A function's settings from its environment; missing or invalid ones raise ConfigurationError."""
    try:
        return model.model_validate(environ)
    except ValidationError as err:
        raise ConfigurationError(f"invalid function environment: {describe(err)}") from None
