"""The model registry: versioned artifacts in S3, their metadata in Parameter Store, a history log.

``/ml-pipeline/{env}/models/versions/{version}/metadata`` holds one JSON record per version:
artifact URI, S3 object version id, sha256, size, metrics and the baseline's URI. The S3 object
version id pins the exact bytes, so a later upload to the same key can never change what a
registered version deploys. Every registration appends an entry to
``s3://{model bucket}/registry/history/``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from mlpipe.artifact import ModelArtifact
from mlpipe.errors import ConflictError, MlpipeError, UnknownVersionError, UsageError
from mlpipe.stage import RegistryLocation
from model.schema import FeatureSchema
from shared.model_parameters import (
    InvalidVersionError,
    ModelParameterNames,
    artifact_key,
    baseline_key,
    schema_key,
)
from shared.model_parameters import check_version as shared_check_version

MAX_STANDARD_PARAMETER_BYTES = 4096


class VersionRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    artifact_uri: str
    artifact_version_id: str
    sha256: str
    size_bytes: int
    baseline_uri: str
    schema_uri: str
    metrics: dict[str, Any]
    registered_at: str
    registered_by: str


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: str
    event: str
    version: str
    actor: str
    detail: dict[str, Any]


def check_version(version: str) -> str:
    try:
        return shared_check_version(version)
    except InvalidVersionError as err:
        raise UsageError(str(err)) from None


class ModelRegistry:
    def __init__(self, *, location: RegistryLocation, s3: Any, ssm: Any) -> None:
        self.location = location
        self.s3 = s3
        self.ssm = ssm

    # ----- reads -----
    def get(self, version: str) -> VersionRecord:
        check_version(version)
        try:
            value = self.ssm.get_parameter(Name=self.location.parameters.metadata(version))["Parameter"][
                "Value"
            ]
        except ClientError as err:
            if err.response["Error"]["Code"] == "ParameterNotFound":
                known = ", ".join(r.version for r in self.list_versions()) or "none"
                raise UnknownVersionError(
                    f"model version {version} is not registered in stage {self.location.stage} "
                    f"(registered: {known}); register it with "
                    f"`mlpipe models register PATH --version {version}`"
                ) from None
            raise
        return VersionRecord.model_validate_json(value)

    def list_versions(self) -> list[VersionRecord]:
        records = []
        paginator = self.ssm.get_paginator("get_parameters_by_path")
        for page in paginator.paginate(Path=self.location.parameters.versions, Recursive=True):
            for parameter in page["Parameters"]:
                if parameter["Name"].endswith("/metadata"):
                    records.append(VersionRecord.model_validate_json(parameter["Value"]))
        return sorted(records, key=lambda r: int(r.version[1:]))

    def history(self, limit: int = 50) -> list[HistoryEntry]:
        """The newest ``limit`` entries, oldest first."""
        keys: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(
            Bucket=self.location.model_bucket, Prefix=self.location.history_prefix
        ):
            keys += [o["Key"] for o in page.get("Contents", [])]
        entries = []
        for key in sorted(keys)[-limit:]:
            body = self.s3.get_object(Bucket=self.location.model_bucket, Key=key)["Body"].read()
            entries.append(HistoryEntry.model_validate_json(body))
        return entries

    # ----- writes -----
    def register(
        self, artifact: ModelArtifact, version: str, *, actor: str, now: datetime | None = None
    ) -> tuple[VersionRecord, bool]:
        """Upload and record ``artifact`` as ``version``; returns (record, created).

        Registering the same bytes again is a no-op (``created`` is False); registering other
        bytes under an existing version is refused: versions are immutable.
        """
        check_version(version)
        existing = self._existing(version)
        if existing is not None:
            return self._same_or_conflict(existing, artifact), False
        at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        bucket = self.location.model_bucket
        key = artifact_key(version)
        with artifact.path.open("rb") as body:
            uploaded = self.s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                Metadata={"sha256": artifact.sha256, "model-version": version},
            )
        version_id = uploaded.get("VersionId")
        if not version_id or version_id == "null":
            raise MlpipeError(
                f"bucket {bucket} is not versioned: a registered version must pin its object version; "
                "enable versioning (the data stack does) and register again"
            )
        baseline_object = baseline_key(version)
        self.s3.put_object(
            Bucket=bucket, Key=baseline_object, Body=artifact.baseline, ContentType="application/json"
        )
        schema_object = schema_key(version)
        self.s3.put_object(
            Bucket=bucket, Key=schema_object, Body=artifact.schema, ContentType="application/json"
        )
        record = VersionRecord(
            version=version,
            artifact_uri=f"s3://{bucket}/{key}",
            artifact_version_id=version_id,
            sha256=artifact.sha256,
            size_bytes=artifact.size_bytes,
            baseline_uri=f"s3://{bucket}/{baseline_object}",
            schema_uri=f"s3://{bucket}/{schema_object}",
            metrics=_headline_metrics(artifact.metrics),
            registered_at=at,
            registered_by=actor,
        )
        value = record.model_dump_json()
        if len(value.encode()) > MAX_STANDARD_PARAMETER_BYTES:
            raise MlpipeError(f"metadata of {version} is {len(value)} bytes; Parameter Store allows 4096")
        try:
            self.ssm.put_parameter(
                Name=self.location.parameters.metadata(version),
                Value=value,
                Type="String",
                Overwrite=False,  # the conditional write: two concurrent registrations cannot both win
                Description=f"ml-pipeline model {version}: artifact, checksum, metrics",
            )
        except ClientError as err:
            if err.response["Error"]["Code"] != "ParameterAlreadyExists":
                raise
            winner = self.get(version)  # someone registered the same version a moment ago
            return self._same_or_conflict(winner, artifact), False
        self.record_event("registered", version, actor=actor, at=at, detail={"sha256": artifact.sha256})
        return record, True

    def record_event(self, event: str, version: str, *, actor: str, at: str, detail: dict[str, Any]) -> None:
        entry = HistoryEntry(at=at, event=event, version=version, actor=actor, detail=detail)
        stamp = at.replace(":", "").replace("-", "")
        key = f"{self.location.history_prefix}{stamp}-{event}-{version}.json"
        self.s3.put_object(
            Bucket=self.location.model_bucket,
            Key=key,
            Body=entry.model_dump_json().encode(),
            ContentType="application/json",
        )

    def _existing(self, version: str) -> VersionRecord | None:
        try:
            return self.get(version)
        except UnknownVersionError:
            return None

    def _same_or_conflict(self, existing: VersionRecord, artifact: ModelArtifact) -> VersionRecord:
        if existing.sha256 == artifact.sha256:
            return existing
        raise ConflictError(
            f"model version {existing.version} is already registered with another artifact "
            f"(sha256 {existing.sha256[:12]}..., this one {artifact.sha256[:12]}...); versions are "
            "immutable: register this artifact under a new version"
        )


_SCORES = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
_FACTS = ("algorithm", "n_train", "n_test")


def _headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The held-out scores and a few facts, kept in Parameter Store (the full file stays in the archive)."""
    scores = metrics.get("test_metrics", {})
    if not isinstance(scores, dict):
        scores = {}
    headline = {k: scores[k] for k in _SCORES if k in scores}
    headline.update({k: metrics[k] for k in _FACTS if k in metrics})
    return headline


def champion_schema(*, ssm: Any, s3: Any, bucket: str, parameters_path: str) -> tuple[str, FeatureSchema]:
    """The active (champion) version and its feature schema, as stored beside its artifact."""
    version = ssm.get_parameter(Name=ModelParameterNames(parameters_path).active_version)["Parameter"][
        "Value"
    ]
    body = s3.get_object(Bucket=bucket, Key=schema_key(version))["Body"].read()
    return version, FeatureSchema.from_json(body.decode("utf-8"))
