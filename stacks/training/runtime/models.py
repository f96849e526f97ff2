"""The champion's registered files and model archives, as the training functions read them.

- ``champion_reference``: the active version, its feature schema and its training baseline
  (``models/{version}/schema.json`` and ``baseline.json`` in the model bucket);
- ``champion_archive``: the active version's ``model.tar.gz`` at the S3 object version its
  registry record pins (``mlpipe.registry``), so the gate scores the bytes that are deployed;
- ``load_archive``: a ``model.tar.gz`` extracted safely into a folder and loaded as the serving
  container loads it (``model.inference.model_fn``: ``model.joblib``, ``schema.json``,
  ``metrics.json``).

Extraction refuses what a model archive never holds: members outside the folder, links, devices
(``tarfile``'s ``data`` filter), more than ``MAX_MEMBERS`` members or ``MAX_EXTRACTED_BYTES``
bytes in all (Lambda's ``/tmp`` holds two models).
"""

from __future__ import annotations

import json
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError
from pydantic import ValidationError

from mlpipe.errors import MlpipeError
from mlpipe.registry import ModelRegistry, champion_schema
from mlpipe.stage import RegistryLocation
from model.inference import LoadedModel, ModelLoadError, model_fn
from model.schema import FeatureSchema
from shared.model_parameters import ModelParameterNames, artifact_key, baseline_key
from stacks.training.runtime.errors import ChampionUnavailableError, InvalidModelArtifactError
from stacks.training.runtime.storage import MISSING_CODES, download, read_object

MAX_MEMBERS: Final = 1000
MAX_EXTRACTED_BYTES: Final = 200 * 1024 * 1024


@dataclass(frozen=True)
class ChampionReference:
    version: str
    schema: FeatureSchema
    baseline: dict[str, Any]


def _missing(err: ClientError) -> bool:
    return err.response.get("Error", {}).get("Code") in {*MISSING_CODES, "ParameterNotFound"}


def champion_reference(ssm: Any, s3: Any, model_bucket: str, parameters_path: str) -> ChampionReference:
    """The champion's version, schema and baseline; ``ChampionUnavailableError`` when one is missing."""
    try:
        version, schema = champion_schema(
            ssm=ssm, s3=s3, bucket=model_bucket, parameters_path=parameters_path
        )
    except ClientError as err:
        if _missing(err):
            raise ChampionUnavailableError(
                f"no champion to validate against: {ModelParameterNames(parameters_path).active_version} "
                f"or its schema in s3://{model_bucket} is missing ({err.response['Error']['Code']})"
            ) from None
        raise
    except ValueError as err:  # an invalid version in the parameter, or an unreadable schema.json
        raise ChampionUnavailableError(f"the champion's version or schema.json is unusable: {err}") from None
    body = read_object(
        s3, model_bucket, baseline_key(version), ChampionUnavailableError, f"champion {version}'s baseline"
    )
    try:
        baseline = json.loads(body)
    except ValueError as err:
        raise ChampionUnavailableError(f"champion {version}'s baseline.json is not JSON: {err}") from None
    if not isinstance(baseline, dict):
        raise ChampionUnavailableError(f"champion {version}'s baseline.json is not a JSON object")
    return ChampionReference(version=version, schema=schema, baseline=baseline)


def champion_archive(
    ssm: Any, s3: Any, *, stage: str, model_bucket: str, parameters_path: str, target: Path
) -> str:
    """Download the champion's archive to ``target``; returns its version."""
    parameters = ModelParameterNames(parameters_path)
    try:
        version = ssm.get_parameter(Name=parameters.active_version)["Parameter"]["Value"]
        record = ModelRegistry(
            location=RegistryLocation(
                stage=stage, model_bucket=model_bucket, parameters_path=parameters_path
            ),
            s3=s3,
            ssm=ssm,
        ).get(version)
    except ClientError as err:
        if _missing(err):
            raise ChampionUnavailableError(
                f"no champion to compare with: {parameters.active_version} is not set"
            ) from None
        raise
    except (MlpipeError, ValidationError) as err:
        raise ChampionUnavailableError(f"the champion's registry record is unusable: {err}") from None
    download(
        s3,
        model_bucket,
        artifact_key(version),
        target,
        missing=ChampionUnavailableError,
        what=f"champion {version}'s archive",
        version_id=record.artifact_version_id,
    )
    return str(version)


def extract(archive: Path, folder: Path, what: str) -> None:
    """Extract ``archive`` (a ``.tar.gz``) into ``folder`` safely (module docstring)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise InvalidModelArtifactError(
                    f"{what} holds {len(members)} members (at most {MAX_MEMBERS})"
                )
            size = sum(member.size for member in members)
            if size > MAX_EXTRACTED_BYTES:
                raise InvalidModelArtifactError(
                    f"{what} unpacks to {size} bytes (at most {MAX_EXTRACTED_BYTES})"
                )
            tar.extractall(folder, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise InvalidModelArtifactError(f"{what} is not a safe, readable .tar.gz: {err}") from None


def load_archive(archive: Path, folder: Path, what: str) -> LoadedModel:
    """Extract ``archive`` into ``folder`` and load it as the serving container does."""
    extract(archive, folder, what)
    try:
        return model_fn(str(folder))
    except ModelLoadError as err:
        raise InvalidModelArtifactError(f"{what} cannot be served: {err}") from None
    except Exception as err:  # unpickling raises whatever the pickled classes raise (numpy, sklearn versions)
        raise InvalidModelArtifactError(
            f"{what}'s model.joblib does not load: {type(err).__name__}: {err}"
        ) from None
