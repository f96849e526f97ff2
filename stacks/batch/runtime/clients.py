"""The botocore client configuration every batch component uses (the job and the functions).

Adaptive retries: throttling (S3 ``SlowDown``, DynamoDB and SageMaker throttling) and transient
errors are retried up to 8 attempts with exponential backoff and client-side rate limiting.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import boto3
from botocore.config import Config

RETRIES: Final = Config(retries={"max_attempts": 8, "mode": "adaptive"})


@cache
def s3_client() -> Any:
    """The S3 client of this execution environment (created once, at the first invocation)."""
    return boto3.session.Session().client("s3", config=RETRIES)
