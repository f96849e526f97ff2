"""Where the batch layer's inputs are accepted from and where their results live: one place.

The batch job, the inline prediction function, the input lister and the report all locate
outputs through this module, so a run that lists, predicts and reports agrees on every key.

For the input ``s3://data/input/2026/11/day.csv`` and ``OUTPUT_PREFIX=s3://results/batch/output``:

| object | location |
|---|---|
| predictions, one file per chunk | ``s3://results/batch/output/input/2026/11/day.csv/part-00000.jsonl`` |
| rejected rows with their reasons | ``s3://results/batch/output/input/2026/11/day.csv/rejects.jsonl`` |
| the input's manifest (counts) | ``s3://results/batch/output/input/2026/11/day.csv/manifest.json`` |

The whole input key is kept under the output prefix, so two inputs with the same file name in
different folders never share results. A run's manifest (``RUNS_PREFIX``) is
``s3://results/batch/runs/{execution name}/manifest.json``.

Accepted inputs end in ``.csv`` (a header of feature names), ``.jsonl`` or ``.json`` (JSON Lines);
the suffix is matched without regard to case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from stacks.batch.runtime.errors import UnsupportedInputError

InputFormat = Literal["csv", "jsonl"]

INPUT_FORMATS: Final[dict[str, InputFormat]] = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
INPUT_SUFFIXES: Final = tuple(INPUT_FORMATS)
PART_PREFIX: Final = "part-"
REJECTS: Final = "rejects.jsonl"
MANIFEST: Final = "manifest.json"


def input_format(key: str) -> InputFormat | None:
    """``csv`` or ``jsonl`` for an accepted input key, ``None`` for anything else."""
    lowered = key.lower()
    for suffix, kind in INPUT_FORMATS.items():
        if lowered.endswith(suffix):
            return kind
    return None


def require_input_format(key: str) -> InputFormat:
    kind = input_format(key)
    if kind is None:
        raise UnsupportedInputError(
            f"{key}: input must be .csv (with a header) or .jsonl / .json (JSON Lines), "
            f"one of {', '.join(INPUT_SUFFIXES)}"
        )
    return kind


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        """``s3://bucket/key`` (the key may be empty for a prefix at the bucket's root)."""
        if not uri.startswith("s3://") or "/" not in uri[5:] or uri[5:].startswith("/"):
            raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
        bucket, key = uri[5:].split("/", 1)
        return cls(bucket, key)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def split_uri(uri: str) -> tuple[str, str]:
    location = S3Location.parse(uri)
    return location.bucket, location.key


def _join(prefix: str, name: str) -> str:
    prefix = prefix.rstrip("/")
    return f"{prefix}/{name}" if prefix else name


@dataclass(frozen=True)
class InputOutputs:
    """The result objects of one input."""

    bucket: str
    prefix: str  # no trailing slash

    @property
    def directory(self) -> S3Location:
        return S3Location(self.bucket, self.prefix + "/")

    def part(self, index: int) -> S3Location:
        return S3Location(self.bucket, f"{self.prefix}/{PART_PREFIX}{index:05d}.jsonl")

    @property
    def parts_prefix(self) -> str:
        return f"{self.prefix}/{PART_PREFIX}"

    def part_index(self, key: str) -> int | None:
        """The chunk number of a part file's key; ``None`` for any other key."""
        number = key.removeprefix(self.parts_prefix).removesuffix(".jsonl")
        if not key.startswith(self.parts_prefix) or not key.endswith(".jsonl") or not number.isdigit():
            return None
        return int(number)

    @property
    def rejects(self) -> S3Location:
        return S3Location(self.bucket, f"{self.prefix}/{REJECTS}")

    @property
    def manifest(self) -> S3Location:
        return S3Location(self.bucket, f"{self.prefix}/{MANIFEST}")


def outputs_for(output_prefix: str, input_key: str) -> InputOutputs:
    """The outputs of the input ``input_key`` under ``output_prefix`` (``s3://bucket/prefix``)."""
    base = S3Location.parse(output_prefix)
    return InputOutputs(base.bucket, _join(base.key, input_key))


def is_output(output_prefix: str, bucket: str, key: str) -> bool:
    """Whether ``bucket``/``key`` lies under ``output_prefix`` (results are never inputs)."""
    base = S3Location.parse(output_prefix)
    root = base.key.rstrip("/")
    return bucket == base.bucket and (not root or key.startswith(root + "/"))


def run_manifest(runs_prefix: str, execution: str) -> S3Location:
    """The manifest of the run (state machine execution) named ``execution``."""
    if not execution or "/" in execution:
        raise ValueError(f"{execution!r} is not an execution name")
    base = S3Location.parse(runs_prefix)
    return S3Location(base.bucket, _join(base.key, f"{execution}/{MANIFEST}"))
