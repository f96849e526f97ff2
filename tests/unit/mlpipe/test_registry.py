"""Registering model versions: S3 object versions, Parameter Store records, history, refusals."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from mlpipe.artifact import read_artifact
from mlpipe.errors import ConflictError, InvalidArtifactError, MlpipeError, UnknownVersionError, UsageError
from mlpipe.registry import ModelRegistry
from tests.unit.conftest import BUCKET, PATH

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def registry(aws, data_stack):
    return ModelRegistry(location=data_stack, s3=aws.client("s3"), ssm=aws.client("ssm"))


def test_register_uploads_pins_the_object_version_and_records_metadata(aws, registry, make_artifact):
    path = make_artifact("logreg", accuracy=0.97)
    record, created = registry.register(read_artifact(path), "v1", actor="alice", now=NOW)
    assert created
    expected_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert record.sha256 == expected_sha
    assert record.artifact_uri == f"s3://{BUCKET}/models/v1/model.tar.gz"
    s3 = aws.client("s3")
    stored = s3.get_object(Bucket=BUCKET, Key="models/v1/model.tar.gz", VersionId=record.artifact_version_id)
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == expected_sha
    assert stored["Metadata"]["sha256"] == expected_sha
    baseline = s3.get_object(Bucket=BUCKET, Key="models/v1/baseline.json")["Body"].read()
    assert json.loads(baseline) == {"x": {"mean": 0.0, "std": 1.0}}
    parameter = aws.client("ssm").get_parameter(Name=f"{PATH}/versions/v1/metadata")["Parameter"]
    assert json.loads(parameter["Value"]) == record.model_dump()
    assert record.metrics == {"accuracy": 0.97, "algorithm": "logreg", "n_test": 114}  # headline metrics only
    assert record.registered_at == "2026-11-24T12:00:00+00:00"


def test_registering_the_same_artifact_again_changes_nothing(aws, registry, make_artifact):
    artifact = read_artifact(make_artifact("logreg"))
    first, _ = registry.register(artifact, "v1", actor="alice", now=NOW)
    again, created = registry.register(artifact, "v1", actor="bob")
    assert not created
    assert again == first
    versions = aws.client("s3").list_object_versions(Bucket=BUCKET, Prefix="models/v1/model.tar.gz")[
        "Versions"
    ]
    assert len(versions) == 1
    assert [e.event for e in registry.history()] == ["registered"]


def test_a_different_artifact_under_a_registered_version_is_refused(aws, registry, make_artifact):
    registry.register(read_artifact(make_artifact("logreg")), "v1", actor="alice", now=NOW)
    with pytest.raises(ConflictError, match="already registered with another artifact") as refused:
        registry.register(read_artifact(make_artifact("boosting")), "v1", actor="mallory")
    assert refused.value.exit_code == 2
    assert registry.get("v1").metrics["algorithm"] == "logreg"
    versions = aws.client("s3").list_object_versions(Bucket=BUCKET, Prefix="models/v1/model.tar.gz")[
        "Versions"
    ]
    assert len(versions) == 1, "a refused registration uploads nothing"


def test_a_concurrent_registration_that_loses_the_conditional_write_is_refused(aws, registry, make_artifact):
    """Both writers upload, but only one metadata record wins; the loser sees the conflict."""
    winner = read_artifact(make_artifact("logreg"))
    loser = read_artifact(make_artifact("boosting"))
    registry._existing = lambda version: None  # both passed the check
    registry.register(winner, "v1", actor="alice", now=NOW)
    with pytest.raises(ConflictError):
        registry.register(loser, "v1", actor="bob", now=NOW)
    assert registry.get("v1").sha256 == winner.sha256


def test_list_and_history_in_version_order(registry, make_artifact):
    registry.register(read_artifact(make_artifact("boosting")), "v10", actor="alice", now=NOW)
    registry.register(read_artifact(make_artifact("logreg")), "v2", actor="alice", now=NOW.replace(hour=13))
    assert [r.version for r in registry.list_versions()] == ["v2", "v10"]
    assert [(e.event, e.version) for e in registry.history()] == [("registered", "v10"), ("registered", "v2")]


def test_unknown_version_names_the_registered_ones(registry, make_artifact):
    registry.register(read_artifact(make_artifact("logreg")), "v1", actor="alice", now=NOW)
    with pytest.raises(UnknownVersionError, match=r"v7 is not registered in stage local \(registered: v1\)"):
        registry.get("v7")


@pytest.mark.parametrize("version", ["1", "v0", "v1.2", "latest", "v1/../v2"])
def test_malformed_version_names_are_refused(registry, version):
    with pytest.raises(UsageError, match="must look like v1"):
        registry.get(version)


def test_an_unversioned_bucket_is_refused_because_the_version_could_not_be_pinned(
    aws, data_stack, make_artifact
):
    aws.client("s3").create_bucket(Bucket="plain")
    location = type(data_stack)(stage="local", model_bucket="plain", parameters_path=PATH)
    registry = ModelRegistry(location=location, s3=aws.client("s3"), ssm=aws.client("ssm"))
    with pytest.raises(MlpipeError, match="is not versioned"):
        registry.register(read_artifact(make_artifact("logreg")), "v1", actor="alice")
    with pytest.raises(UnknownVersionError):
        registry.get("v1")


def test_archives_that_are_not_trained_models_are_refused(tmp_path, make_artifact):
    with pytest.raises(InvalidArtifactError, match=r"missing metrics\.json, baseline\.json"):
        read_artifact(make_artifact("partial", drop=("metrics.json", "baseline.json")))
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(InvalidArtifactError, match=r"not a readable \.tar\.gz archive"):
        read_artifact(junk)
    with pytest.raises(InvalidArtifactError, match="no such file"):
        read_artifact(tmp_path / "missing.tar.gz")
