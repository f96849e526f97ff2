"""The AWS clients of the training functions (one per execution environment, adaptive retries).

Throttling (S3 ``SlowDown``, SSM ``ThrottlingException``) and transient errors are retried up to 8
attempts with exponential backoff and client-side rate limiting.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import boto3
from botocore.config import Config

RETRIES: Final = Config(retries={"max_attempts": 8, "mode": "adaptive"})


@cache
def session() -> boto3.session.Session:
    """The session of this execution environment (its clients share the loaded service models)."""
    return boto3.session.Session()


@cache
def s3_client() -> Any:
    """The S3 client of this execution environment (created at the first invocation)."""
    return session().client("s3", config=RETRIES)


@cache
def ssm_client() -> Any:
    """The SSM client of this execution environment (created at the first invocation)."""
    return session().client("ssm", config=RETRIES)
