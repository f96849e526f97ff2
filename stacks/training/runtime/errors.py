"""Permanent failures of the training layer's functions, as named exception classes.

Step Functions sees a Lambda function's error as the class name of the exception it raised
(``errorType``): the state machine retries only transient errors (Lambda service errors,
throttling, timeouts) and sends these straight to its Catch. None of them succeeds on a retry of
the same input. Data that fails validation is not an error: Validate returns ``valid: false``.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base of the training layer's permanent failures."""


class InvalidRunInputError(TrainingError, ValueError):
    """The event is not the function's input shape; the message names the field and the problem."""


class ConfigurationError(TrainingError):
    """A function's environment is missing a setting or holds an invalid one."""


class TrainingDataNotFoundError(TrainingError):
    """The run's data file does not exist (deleted, or never written)."""


class InvalidTrainingDataError(TrainingError, ValueError):
    """A data file or split is not in the validated layout (Preprocess and Evaluate parse strictly)."""


class ChampionUnavailableError(TrainingError):
    """The champion (the active version) or one of its registered files is missing or unreadable."""


class ModelArtifactNotFoundError(TrainingError):
    """The candidate's ``model.tar.gz`` does not exist."""


class InvalidModelArtifactError(TrainingError, ValueError):
    """A model archive is unsafe (paths out of the folder, links, devices), too large or unloadable."""


class SplitNotFoundError(TrainingError):
    """The run's test split or manifest is missing (Preprocess did not run for this run id)."""


class SplitIntegrityError(TrainingError):
    """The run's test split does not match the sha256 its manifest records."""
