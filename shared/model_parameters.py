"""Names in the model registry's Parameter Store hierarchy (one place for infrastructure and runtime).

Under ``/ml-pipeline/{env}/models``:

- ``active-version``: the champion (desired; the seed's "rollback by updating the parameter");
- ``traffic``: the challenger and its share of traffic (desired);
- ``versions/{version}/metadata``: one record per registered version;
- ``verified``, ``last-request``, ``deploy-lock``: what the endpoint was verified to run, how the
  latest request ended, and the lock that keeps two deployments from interleaving.

and, in the model bucket, ``models/{version}/`` holds each version's artifact, baseline and schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

VERSION_PATTERN: Final = re.compile(r"^v[1-9]\d{0,5}$")


class InvalidVersionError(ValueError):
    pass


def check_version(version: str) -> str:
    if not VERSION_PATTERN.match(version):
        raise InvalidVersionError(
            f"model version {version!r} must look like v1, v2, ... (a 'v' and a number)"
        )
    return version


def artifact_key(version: str) -> str:
    """Key of a registered version's ``model.tar.gz`` in the model bucket."""
    return f"models/{check_version(version)}/model.tar.gz"


def baseline_key(version: str) -> str:
    """Key of its training baseline (drift detection reads it)."""
    return f"models/{check_version(version)}/baseline.json"


def schema_key(version: str) -> str:
    """Key of its feature schema (the API and the batch job validate rows with it)."""
    return f"models/{check_version(version)}/schema.json"


@dataclass(frozen=True)
class ModelParameterNames:
    path: str  # /ml-pipeline/{env}/models

    @property
    def active_version(self) -> str:
        return f"{self.path}/active-version"

    @property
    def traffic(self) -> str:
        return f"{self.path}/traffic"

    @property
    def versions(self) -> str:
        return f"{self.path}/versions"

    def metadata(self, version: str) -> str:
        return f"{self.versions}/{check_version(version)}/metadata"

    @property
    def verified(self) -> str:
        return f"{self.path}/verified"

    @property
    def last_request(self) -> str:
        return f"{self.path}/last-request"

    @property
    def deploy_lock(self) -> str:
        return f"{self.path}/deploy-lock"
