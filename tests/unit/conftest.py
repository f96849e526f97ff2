"""Shared unit-test fixtures: both model versions trained once per test session (a few seconds)."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from model import data, train


@dataclass(frozen=True)
class Trained:
    output: Path
    artifacts: dict[str, train.Artifact]
    extracted: dict[str, Path]

    def metrics(self, version: str) -> dict:
        metrics: dict = json.loads((self.extracted[version] / "metrics.json").read_text())
        return metrics


@pytest.fixture(scope="session")
def dataset() -> data.Dataset:
    return data.load_dataset()


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    output = tmp_path_factory.mktemp("models")
    artifacts = {artifact.version: artifact for artifact in train.train(output)}
    extracted = {}
    for version, artifact in artifacts.items():
        target = tmp_path_factory.mktemp(f"extracted-{version}")
        with tarfile.open(artifact.archive, "r:gz") as tar:
            tar.extractall(target, filter="data")
        extracted[version] = target
    return Trained(output, artifacts, extracted)


def feature_rows(dataset: data.Dataset, split: data.Split, count: int) -> list[dict[str, float]]:
    """The first ``count`` rows of a split in the canonical object form."""
    return [dict(zip(dataset.feature_names, row, strict=True)) for row in split.features[:count].tolist()]
