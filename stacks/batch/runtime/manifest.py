"""The manifest the batch job writes beside an input's results, and how the other steps read it.

``{output prefix}/{input key}/manifest.json`` (see ``layout``)::

    {"input": "s3://data/input/day.csv", "input_etag": "\\"9b2c...\\"", "output": "s3://results/.../",
     "read": 110, "predicted": 108, "rejected": 2, "failed": 0, "failures": [],
     "finished_at": "2026-11-24T02:00:31.123Z"}

It is written last, after every part file and the rejects file, so its presence means the job ran
to the end for the object with ``input_etag``; ``failed`` > 0 means that run did not succeed.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stacks.batch.runtime.errors import ManifestInvalidError
from stacks.batch.runtime.layout import S3Location

MAX_FAILURES = 20  # reasons kept in a manifest (the counts are complete)


class InputManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    input: str = Field(pattern=r"^s3://[^/]+/.+")
    input_etag: str = Field(min_length=1)
    output: str = Field(default="", description="the input's output directory")
    read: int = Field(ge=0)
    predicted: int = Field(ge=0)
    rejected: int = Field(ge=0)
    failed: int = Field(ge=0)
    failures: list[str] = Field(default_factory=list)
    finished_at: str

    @property
    def succeeded(self) -> bool:
        return self.failed == 0


def _is_missing(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}


def read_manifest(s3: Any, location: S3Location) -> InputManifest | None:
    """The manifest at ``location``; ``None`` when there is none.

    Raises ``ManifestInvalidError`` for an object that is not a manifest; other S3 errors (access
    denied, throttling after retries) propagate.
    """
    try:
        body = s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
    except ClientError as err:
        if _is_missing(err):
            return None
        raise
    try:
        return InputManifest.model_validate(json.loads(body))
    except (ValueError, ValidationError) as err:
        raise ManifestInvalidError(f"{location.uri} is not a batch job manifest: {err}") from None
