"""The training job's source bundle (``sagemaker_submit_directory``): ``sourcedir.tar.gz``.

The scikit-learn container downloads the bundle, extracts it and runs its entry point
(:data:`shared.training.ENTRY_POINT`) with the image's Python and packages only. So the bundle holds
``sagemaker_train.py`` (``model/sagemaker_train.py``) at its root and, beside it, every project module
the entry point imports, directly or not (found by reading the imports, not by running them), plus the
files ``model/train.py`` copies into each model archive (``code/inference.py``, ``code/schema.py``)::

    sagemaker_train.py
    model/__init__.py  model/data.py  model/schema.py  model/train.py  model/inference.py
    shared/__init__.py  shared/archive.py  shared/model_parameters.py  shared/training.py

No ``requirements.txt``: the job runs with network isolation, where the container's ``pip install``
would fail. The archive is deterministic (``shared.archive``): the same sources give the same bytes,
so the CDK asset's hash changes only when the code does. Plain Python (no CDK, no boto): the training
stack builds it at synth and uploads it as an asset; the local stage's emulated job downloads it
from the emulated S3 as the container does.
"""

from __future__ import annotations

import ast
from pathlib import Path

from shared.archive import deterministic_tar_gz
from shared.training import ENTRY_POINT, SOURCE_BUNDLE_NAME

ROOT = Path(__file__).resolve().parents[1]
ENTRY_SOURCE = Path("model") / "sagemaker_train.py"
PACKAGES = ("model", "shared")  # the project packages the job may import from
# read by model/train.py as files (copied into every model archive), not imported
DATA_FILES = (Path("model") / "inference.py", Path("model") / "schema.py")


def _imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of the modules ``path`` imports (``package`` resolves relative imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _module_file(root: Path, module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(root)
    return None


def bundle_sources(root: Path = ROOT) -> dict[str, Path]:
    """Archive path -> source file (relative to ``root``) of every member of the bundle."""
    members = {ENTRY_POINT: ENTRY_SOURCE}
    todo = [ENTRY_SOURCE]
    seen: set[Path] = set()
    while todo:
        source = todo.pop()
        if source in seen:
            continue
        seen.add(source)
        package = ".".join(source.parts[:-1])  # the package relative imports resolve in
        for module in sorted(_imported_modules(root / source, package)):
            parts = module.split(".")
            # a package's __init__ runs before any of its modules
            for end in range(1, len(parts) + 1):
                found = _module_file(root, ".".join(parts[:end]))
                if found is not None and found not in seen:
                    todo.append(found)
        if source != ENTRY_SOURCE:
            members[source.as_posix()] = source
    for extra in DATA_FILES:
        members[extra.as_posix()] = extra
    return members


def build_source_bundle(out_dir: Path, root: Path = ROOT) -> Path:
    """Write ``out_dir/sourcedir.tar.gz`` (deterministic) and return its path."""
    payload = deterministic_tar_gz(
        {name: (root / source).read_bytes() for name, source in bundle_sources(root).items()}
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SOURCE_BUNDLE_NAME
    path.write_bytes(payload)
    return path
