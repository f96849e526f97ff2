"""Errors ``mlpipe`` reports to a person: a message that says what to do, and an exit code."""

from __future__ import annotations

from typing import Any

USAGE_EXIT = 2  # the request itself is wrong: unknown version, invalid weights, missing stage
FAILURE_EXIT = 1  # the request was right but could not be carried out


class MlpipeError(Exception):
    """An expected failure with a message meant for the operator."""

    exit_code = FAILURE_EXIT

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        # what ``--json`` prints beside the error (e.g. the run a failed ``train status`` reports)
        self.details: dict[str, Any] = dict(details or {})


class UsageError(MlpipeError):
    exit_code = USAGE_EXIT


class MissingStageError(UsageError):
    """The stage's stacks are not deployed (or the name is wrong)."""


class UnknownVersionError(UsageError):
    """A model version that was never registered."""


class InvalidArtifactError(UsageError):
    """A model archive that is not what ``nox -s train`` produces."""


class ConflictError(UsageError):
    """The request contradicts what is recorded (e.g. re-registering a version with another artifact)."""


class BatchRunError(MlpipeError):
    """A batch run that did not succeed (its errors and the execution are in the message)."""
