"""Reads and writes of the training functions' S3 objects, with typed errors for missing ones."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from stacks.training.runtime.errors import TrainingDataNotFoundError, TrainingError
from stacks.training.runtime.table import MAX_DATA_BYTES

MISSING_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
CHUNK_BYTES = 1024 * 1024


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def json_bytes(document: Any) -> bytes:
    """Deterministic JSON text (sorted keys, no NaN), as the reports and the manifest are written."""
    return (json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def get_object(
    s3: Any, bucket: str, key: str, *, missing: type[TrainingError], what: str, version_id: str | None = None
) -> Any:
    """``GetObject``'s answer; a missing object (or object version) raises ``missing`` naming ``what``."""
    pinned = {"VersionId": version_id} if version_id else {}
    try:
        return s3.get_object(Bucket=bucket, Key=key, **pinned)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in MISSING_CODES:
            at = f" (object version {version_id})" if version_id else ""
            raise missing(f"{what} s3://{bucket}/{key}{at} does not exist") from None
        raise


def read_object(s3: Any, bucket: str, key: str, missing: type[TrainingError], what: str) -> bytes:
    """The object's bytes; a missing object raises ``missing`` naming ``what`` and its URI."""
    body: bytes = get_object(s3, bucket, key, missing=missing, what=what)["Body"].read()
    return body


@dataclass(frozen=True)
class Fetched:
    body: bytes | None  # None: larger than the limit, only hashed (in chunks, never held whole)
    sha256: str
    size: int
    limit: int  # the bytes read at most


def fetch(
    s3: Any, bucket: str, key: str, *, missing: type[TrainingError], what: str, max_bytes: int
) -> Fetched:
    """The object's bytes and sha256, or only its sha256 and size when it is over ``max_bytes``."""
    answer = get_object(s3, bucket, key, missing=missing, what=what)
    size = int(answer["ContentLength"])
    if size <= max_bytes:
        body: bytes = answer["Body"].read()
        return Fetched(body=body, sha256=sha256(body), size=len(body), limit=max_bytes)
    digest = hashlib.sha256()
    for chunk in answer["Body"].iter_chunks(CHUNK_BYTES):
        digest.update(chunk)
    return Fetched(body=None, sha256=digest.hexdigest(), size=size, limit=max_bytes)


def fetch_data(s3: Any, bucket: str, key: str) -> Fetched:
    """A run's data file (``TrainingDataNotFoundError`` when missing; not read over ``MAX_DATA_BYTES``)."""
    return fetch(
        s3, bucket, key, missing=TrainingDataNotFoundError, what="the training data", max_bytes=MAX_DATA_BYTES
    )


def download(
    s3: Any,
    bucket: str,
    key: str,
    target: Path,
    *,
    missing: type[TrainingError],
    what: str,
    version_id: str | None = None,
) -> None:
    """The object streamed into the file ``target``; a missing one raises ``missing``."""
    answer = get_object(s3, bucket, key, missing=missing, what=what, version_id=version_id)
    with target.open("wb") as file:
        for chunk in answer["Body"].iter_chunks(CHUNK_BYTES):
            file.write(chunk)


def put_object(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def put_json(s3: Any, bucket: str, key: str, document: Any) -> None:
    put_object(s3, bucket, key, json_bytes(document), "application/json")


def put_report(s3: Any, bucket: str, output: dict[str, Any], key_field: str, extra: dict[str, Any]) -> None:
    """Write a function's output as a report at ``output[key_field]``: without that field, with ``extra``."""
    document = {**extra, **{name: value for name, value in output.items() if name != key_field}}
    put_json(s3, bucket, output[key_field], document)
