"""Container images of the project's own Python code, built from the repository as CDK assets.

The build context is staged, not the repository: the Dockerfile, the locked requirements of the
``runtime`` group with their hashes (``pip --require-hashes``), and only the runtime source files
the image runs, under ``src/``. The context's directory is named after a digest of its content,
so an unchanged image is the same asset, and synth needs no Docker engine (``cdk deploy``, or
``cdk-assets`` in CI, builds and pushes it).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

from shared.infra.python_function import DEPENDENCY_GROUP, ROOT, locked_requirements, python_sources

IMAGES_DIR = ROOT / "build" / "images"


def stage_context(
    name: str,
    *,
    dockerfile: Path,
    sources: Iterable[str],
    images_dir: Path = IMAGES_DIR,
    groups: Sequence[str] = (DEPENDENCY_GROUP,),
) -> Path:
    """Write the build context of image ``name`` (once per content) and return its directory.

    ``groups``: the locked dependency groups its ``requirements.txt`` holds (``runtime`` alone by
    default)."""
    files = python_sources(sources)
    requirements = locked_requirements(groups, hashes=True)
    digest = hashlib.sha256(dockerfile.read_bytes() + b"\0" + requirements.encode())
    for relative, source in sorted(files.items()):
        digest.update(relative.encode() + b"\0" + source.read_bytes() + b"\0")
    context = images_dir / f"{name}-{digest.hexdigest()[:16]}"
    if context.is_dir():
        return context
    staging = images_dir / f".{context.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "src").mkdir(parents=True)
    shutil.copy2(dockerfile, staging / "Dockerfile")
    (staging / "requirements.txt").write_text(requirements)
    for relative, source in files.items():
        target = staging / "src" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    staging.rename(context)
    return context


def python_image(
    scope: Construct, construct_id: str, *, name: str, dockerfile: Path, sources: Iterable[str]
) -> ecr_assets.DockerImageAsset:
    """An image asset (linux/amd64) of ``dockerfile`` with the given runtime sources under ``src/``."""
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(stage_context(name, dockerfile=dockerfile, sources=sources)),
        platform=ecr_assets.Platform.LINUX_AMD64,
    )
