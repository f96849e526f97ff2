"""Permanent failures of the batch layer, as named exception classes.

Step Functions sees a Lambda function's error as the class name of the exception it raised
(``errorType``), so each permanent problem has its own class here: the state machine retries only
transient errors (Lambda service errors, throttling, timeouts) and sends these straight to its
Catch. None of them succeeds on a retry of the same input.
"""

from __future__ import annotations


class BatchError(Exception):
    """Base of the batch layer's permanent failures."""


class InvalidRunInputError(BatchError, ValueError):
    """The input lister's event is not ``{"bucket": str, "prefix": str}``."""


class InvalidInputItemError(BatchError, ValueError):
    """The inline prediction's event is not an item of the lister's ``inputs``."""


class InvalidReportInputError(BatchError, ValueError):
    """The report's event is not ``{"execution": str, "inputs": [...]}``."""


class ConfigurationError(BatchError):
    """A function's environment is missing a setting or holds an invalid one."""


class UnsupportedInputError(BatchError, ValueError):
    """The input is not one of the accepted formats (see ``layout.INPUT_SUFFIXES``)."""


class InputNotFoundError(BatchError):
    """The input object does not exist (deleted or never written)."""


class RowsFailedError(BatchError):
    """Rows of an input could not be predicted; the manifest holds the counts and the reasons."""


class ManifestMissingError(BatchError):
    """An input that the run processed has no manifest at its layout location."""


class ManifestInvalidError(BatchError):
    """An input's manifest is not the document the batch job writes."""
