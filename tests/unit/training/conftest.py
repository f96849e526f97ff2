"""Fixtures of the training layer: the champion registered, the data bucket, model archives to gate."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from mlpipe.artifact import read_artifact
from mlpipe.registry import ModelRegistry
from mlpipe.stage import RegistryLocation
from model import data, schema, train
from shared.model_parameters import baseline_key, schema_key
from shared.training import TARGET_COLUMN
from stacks.training.runtime import clients
from tests.unit.conftest import BUCKET, PATH, Trained

DATA = "ml-pipeline-data-local-us-east-1-123456789012"
DATA_KEY = "training/data/breast-cancer.csv"
RUN_ID = "scheduled-20261206-0300"
JOB = "ml-pipeline-train-scheduled-20261206"


@dataclass(frozen=True)
class Archives:
    """Model archives (``model.tar.gz`` bytes) fitted on the data set's training split."""

    trained: Trained
    weak: bytes  # logistic regression, C=1e-4, unscaled: test ROC AUC 0.990, recall 0.905 (floors pass)
    fair: bytes  # gradient boosting, 30 stumps: test ROC AUC 0.985, recall 0.881
    poor: bytes  # gradient boosting, 3 stumps: test ROC AUC 0.836, recall 0.714 (both floors fail)

    def real(self, version: str) -> bytes:
        return self.trained.artifacts[version].archive.read_bytes()


def archive_of(estimator: Any, version: str, dataset: data.Dataset) -> bytes:
    """A model archive as ``model.train`` packages a version, around any fitted estimator."""
    spec = train.VersionSpec(
        algorithm=type(estimator).__name__, estimator=type(estimator).__name__, candidates=(), build=dict
    )
    fitted = train.FittedVersion(version, spec, estimator, {}, [])
    feature_schema = schema.build_schema(dataset.feature_names, dataset.train.features.tolist())
    return train.deterministic_tar_gz(train.archive_members(fitted, dataset, feature_schema, None))


@pytest.fixture(scope="session")
def archives(trained: Trained, dataset: data.Dataset) -> Archives:
    weak = LogisticRegression(C=1e-4, max_iter=1000).fit(dataset.train.features, dataset.train.labels)
    stumps = {
        count: GradientBoostingClassifier(n_estimators=count, max_depth=1, random_state=7).fit(
            dataset.train.features, dataset.train.labels
        )
        for count in (30, 3)
    }
    return Archives(
        trained,
        weak=archive_of(weak, "v3", dataset),
        fair=archive_of(stumps[30], "v4", dataset),
        poor=archive_of(stumps[3], "v5", dataset),
    )


def data_csv(
    names: list[str],
    features: np.ndarray,
    labels: np.ndarray,
    cells: dict[tuple[int, int], str] | None = None,
) -> bytes:
    """A data file (header, then rows); ``cells`` replaces the text of (row, column) cells."""
    cells = cells or {}
    lines = [",".join([*names, TARGET_COLUMN])]
    for row, (vector, label) in enumerate(zip(features.tolist(), labels.tolist(), strict=True)):
        values = [*(repr(value) for value in vector), str(label)]
        for (at_row, column), text in cells.items():
            if at_row == row:
                values[column] = text
        lines.append(",".join(values))
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="session")
def full_csv() -> bytes:
    """The whole data set (569 rows, scikit-learn's order) as a run's data file."""
    names, features, labels = data.load_arrays()
    return data_csv(list(names), features, labels)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"STAGE": "local", "DATA_BUCKET": DATA, "MODEL_BUCKET": BUCKET}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    """Each test builds the functions' clients anew (the session, which only caches service models, stays)."""
    for cached in (clients.s3_client, clients.ssm_client):
        cached.cache_clear()
    yield
    for cached in (clients.s3_client, clients.ssm_client):
        cached.cache_clear()


@pytest.fixture
def buckets(aws, environment, fresh_clients, full_csv) -> Any:
    """The model bucket (versioned) and the data bucket holding the data set; the S3 client.

    The tests reach moto through the functions' own clients: a new boto3 session reads botocore's
    endpoint data again (about a second on a busy machine), the functions' session does so once.
    """
    s3 = clients.s3_client()
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(Bucket=DATA)
    s3.put_object(Bucket=DATA, Key=DATA_KEY, Body=full_csv)
    return s3


def activate(version: str) -> None:
    """Make ``version`` the champion (the registry's active-version parameter)."""
    clients.ssm_client().put_parameter(
        Name=f"{PATH}/active-version", Value=version, Type="String", Overwrite=True
    )


@pytest.fixture
def champion_files(buckets, trained: Trained) -> None:
    """What Validate and Preprocess read of the champion: v2 active, its schema and baseline."""
    for key, member in ((schema_key("v2"), "schema.json"), (baseline_key("v2"), "baseline.json")):
        buckets.put_object(Bucket=BUCKET, Key=key, Body=(trained.extracted["v2"] / member).read_bytes())
    activate("v2")


def write_archive(tmp_path: Path, name: str, body: bytes) -> Path:
    path = tmp_path / f"{name}.tar.gz"
    path.write_bytes(body)
    return path


@pytest.fixture
def registered(buckets, archives: Archives, tmp_path) -> Callable[[str], None]:
    """v2 (the real version) registered with the registry's own code and active.

    Returns ``champion(version)``, which registers v3 (weak) or v4 (fair) and makes it the champion.
    """
    location = RegistryLocation(stage="local", model_bucket=BUCKET, parameters_path=PATH)
    registry = ModelRegistry(location=location, s3=buckets, ssm=clients.ssm_client())
    bodies = {"v2": archives.real("v2"), "v3": archives.weak, "v4": archives.fair}

    def champion(version: str) -> None:
        registry.register(
            read_artifact(write_archive(tmp_path, version, bodies[version])), version, actor="ci"
        )
        activate(version)

    champion("v2")
    return champion


def tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A ``.tar.gz`` of ``members`` (and symbolic ``links`` name -> target), for unsafe archives."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return raw.getvalue()
