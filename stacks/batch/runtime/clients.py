"""The botocore client configuration every batch component uses (the job and the functions).

Adaptive retries: throttling (S3 ``SlowDown``, DynamoDB and SageMaker throttling) and transient
errors are retried up to 8 attempts with exponential backoff and client-side rate limiting.
"""

from __future__ import annotations

from typing import Final

from botocore.config import Config

RETRIES: Final = Config(retries={"max_attempts": 8, "mode": "adaptive"})
