"""A model archive as ``nox -s train`` writes it, checked before it is registered."""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipe.errors import InvalidArtifactError

REQUIRED_MEMBERS = ("model.joblib", "schema.json", "metrics.json", "baseline.json", "code/inference.py")
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelArtifact:
    path: Path
    sha256: str
    size_bytes: int
    metrics: dict[str, Any]
    baseline: bytes  # baseline.json as stored in the archive (uploaded beside it for drift checks)
    schema: bytes  # schema.json (uploaded beside it: the API and the batch job validate rows with it)


def read_artifact(path: Path) -> ModelArtifact:
    """Open ``path`` (a SageMaker scikit-learn ``model.tar.gz``) and check its members."""
    if not path.is_file():
        raise InvalidArtifactError(f"{path}: no such file")
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            names = {m.name.removeprefix("./") for m in archive.getmembers() if m.isfile()}
            missing = [name for name in REQUIRED_MEMBERS if name not in names]
            if missing:
                raise InvalidArtifactError(
                    f"{path}: not a model archive from `nox -s train`; missing {', '.join(missing)}"
                )
            metrics = _json_member(archive, path, "metrics.json")
            baseline = _member(archive, "baseline.json")
            json.loads(baseline)  # must be valid JSON; drift detection reads it
            schema = _member(archive, "schema.json")
            json.loads(schema)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise InvalidArtifactError(f"{path}: not a readable .tar.gz archive ({err})") from None
    except json.JSONDecodeError as err:
        raise InvalidArtifactError(f"{path}: a JSON member is not valid JSON ({err.msg})") from None
    if not isinstance(metrics, dict):
        raise InvalidArtifactError(f"{path}: metrics.json must hold an object")
    return ModelArtifact(
        path=path,
        sha256=sha256_of(path),
        size_bytes=path.stat().st_size,
        metrics=metrics,
        baseline=baseline,
        schema=schema,
    )


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    for candidate in (name, f"./{name}"):
        try:
            stream = archive.extractfile(candidate)
        except KeyError:
            continue
        if stream is not None:
            return stream.read()
    raise InvalidArtifactError(f"archive member {name} is not a regular file")


def _json_member(archive: tarfile.TarFile, path: Path, name: str) -> Any:
    return json.loads(_member(archive, name))
