"""The archives `nox -s train` writes are what the registry accepts, deploys and pins."""

from __future__ import annotations

import hashlib

from mlpipe.artifact import read_artifact
from mlpipe.registry import ModelRegistry


def test_both_trained_versions_register_with_their_metrics(aws, data_stack, trained):
    registry = ModelRegistry(location=data_stack, s3=aws.client("s3"), ssm=aws.client("ssm"))
    for version, built in sorted(trained.artifacts.items()):
        artifact = read_artifact(built.archive)
        assert artifact.sha256 == hashlib.sha256(built.archive.read_bytes()).hexdigest()
        record, created = registry.register(artifact, version, actor="ci")
        assert created
        assert record.metrics["accuracy"] == trained.metrics(version)["test_metrics"]["accuracy"]
        assert record.metrics["accuracy"] > 0.9
    records = registry.list_versions()
    assert [r.version for r in records] == ["v1", "v2"]
    assert records[0].metrics.get("algorithm") != records[1].metrics.get("algorithm")
