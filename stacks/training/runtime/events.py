"""The events the training state machine passes to its functions, and the functions' environment.

- ``RunInput`` (Validate, Preprocess): ``{"run_id": str, "bucket": str, "data_key": str}``;
- ``EvaluateInput`` (Evaluate): ``{"run_id": str, "bucket": str, "model_artifact": "s3://...",
  "job_name": str}``.

``bucket`` is the data bucket (it must equal the function's ``DATA_BUCKET``: every file of a run is
read from and written to it). Unknown fields are ignored, so the state machine may pass a state's
whole output on. A malformed event raises ``InvalidRunInputError`` naming each wrong field.

Environment of every function: ``STAGE`` (the configuration name: thresholds come from
``get_config(STAGE).training``, the registry's Parameter Store path from its
``model_parameters_path``), ``DATA_BUCKET`` and ``MODEL_BUCKET``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.config import ConfigError, EnvironmentConfig, get_config
from shared.training import RUN_ID_PATTERN, TRAINING_DATA_PREFIX, output_prefix, run_prefix
from stacks.training.runtime.errors import ConfigurationError, InvalidRunInputError

# S3 bucket naming rules (lower case letters, digits, dots, hyphens; 3-63 characters)
BUCKET_NAME: Final = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# SageMaker training job names: 1-63 letters, digits and non-leading, non-trailing hyphens
JOB_NAME: Final = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
ARTIFACT_NAME: Final = "model.tar.gz"

RUN_INPUT_SHAPE: Final = (
    '{"run_id": "<run id>", "bucket": "<data bucket>", "data_key": "training/data/<name>.csv"}'
)
EVALUATE_INPUT_SHAPE: Final = (
    '{"run_id": "<run id>", "bucket": "<data bucket>", '
    '"model_artifact": "s3://<data bucket>/training/runs/<run id>/output/<job>/output/model.tar.gz", '
    '"job_name": "<training job name>"}'
)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; ``ValueError`` for anything else."""
    bucket, slash, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not slash or not key or not bucket:
        raise ValueError(f"must be an s3://bucket/key URI, got {uri[:80]!r}")
    return bucket, key


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    bucket: str = Field(pattern=BUCKET_NAME)

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str) -> str:
        if not RUN_ID_PATTERN.match(value):
            raise ValueError(
                "must be 1-63 lower-case letters, digits and '-', starting with a letter or digit"
            )
        return value

    @property
    def prefix(self) -> str:
        """The run's prefix in the data bucket (``shared.training.run_prefix``)."""
        return run_prefix(self.run_id)


class RunInput(_Event):
    """Validate's and Preprocess's event."""

    data_key: str = Field(max_length=1024)

    @field_validator("data_key")
    @classmethod
    def _data_key(cls, value: str) -> str:
        if not value.startswith(TRAINING_DATA_PREFIX):
            raise ValueError(f"must be a key under {TRAINING_DATA_PREFIX!r}")
        if not value.lower().endswith(".csv") or value.endswith("/"):
            raise ValueError("must name a .csv file")
        if any(part in {"", ".", ".."} for part in value.split("/")):
            raise ValueError("must not hold empty, '.' or '..' path segments")
        return value


class EvaluateInput(_Event):
    """Evaluate's event: the trained (or best tuned) job's ``ModelArtifacts.S3ModelArtifacts``."""

    model_artifact: str = Field(max_length=1100)
    job_name: str = Field(pattern=JOB_NAME)

    @model_validator(mode="after")
    def _artifact_of_the_run(self) -> EvaluateInput:
        try:
            bucket, key = split_s3_uri(self.model_artifact)
        except ValueError as err:
            raise ValueError(f"model_artifact {err}") from None
        if bucket != self.bucket:
            raise ValueError(f"model_artifact must be in the data bucket {self.bucket!r}, not {bucket!r}")
        if not key.startswith(output_prefix(self.prefix)) or not key.endswith(f"/{ARTIFACT_NAME}"):
            raise ValueError(
                f"model_artifact must be a {ARTIFACT_NAME} under the run's job output "
                f"{output_prefix(self.prefix)!r}, got {key[:200]!r}"
            )
        return self

    @property
    def artifact_key(self) -> str:
        return split_s3_uri(self.model_artifact)[1]


class Settings(BaseModel):
    """A function's environment."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stage: str = Field(alias="STAGE", min_length=1)
    data_bucket: str = Field(alias="DATA_BUCKET", pattern=BUCKET_NAME)
    model_bucket: str = Field(alias="MODEL_BUCKET", pattern=BUCKET_NAME)

    @property
    def config(self) -> EnvironmentConfig:
        return get_config(self.stage)


Model = TypeVar("Model", bound=BaseModel)
Event = TypeVar("Event", bound=_Event)


def describe(err: ValidationError) -> str:
    """``field: problem; ...`` without the input values (events may be large)."""
    problems = []
    for error in err.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "event"
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def parse_event(event: Any, model: type[Model], shape: str) -> Model:
    """The event as ``model``; another shape raises ``InvalidRunInputError`` naming what is wrong."""
    try:
        return model.model_validate(event)
    except ValidationError as err:
        raise InvalidRunInputError(f"the event must be {shape}; {describe(err)}") from None


def parse_settings(environ: Mapping[str, str]) -> Settings:
    """The environment as ``Settings``, its ``STAGE`` a known configuration; else ``ConfigurationError``."""
    try:
        settings = Settings.model_validate(dict(environ))
        settings.config  # noqa: B018 -- an unknown stage fails here, before any work
    except ValidationError as err:
        raise ConfigurationError(f"invalid function environment: {describe(err)}") from None
    except ConfigError as err:
        raise ConfigurationError(f"invalid function environment: STAGE: {err}") from None
    return settings


def parse_request(
    event: Any, model: type[Event], shape: str, environ: Mapping[str, str]
) -> tuple[Event, Settings]:
    """The event and the settings, the event's bucket the function's data bucket (the one it may use)."""
    request = parse_event(event, model, shape)
    settings = parse_settings(environ)
    if request.bucket != settings.data_bucket:
        raise InvalidRunInputError(
            f"bucket: {request.bucket!r} is not this stage's data bucket {settings.data_bucket!r}"
        )
    return request, settings
