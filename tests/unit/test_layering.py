"""Runtime code never imports aws_cdk; infrastructure code never imports runtime code."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Folders whose code runs in Lambda, containers, the CLI or the local stage.
RUNTIME_GLOBS = ["stacks/*/runtime/**/*.py", "model/**/*.py", "mlpipe/**/*.py", "local/**/*.py"]
RUNTIME_SAFE_SHARED = [
    "shared/config.py",
    "shared/outputs.py",
    "shared/model_parameters.py",
    "shared/telemetry.py",
    "shared/__init__.py",
]
INFRA_GLOBS = ["stacks/**/*.py", "shared/infra/**/*.py", "app.py"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _files(globs: list[str]) -> list[Path]:
    return sorted({p for pattern in globs for p in ROOT.glob(pattern)})


def test_runtime_code_and_shared_runtime_modules_do_not_import_cdk():
    offenders = []
    for path in _files(RUNTIME_GLOBS + RUNTIME_SAFE_SHARED):
        for name in _imports(path):
            if name.split(".")[0] in {"aws_cdk", "constructs", "cdk_nag", "jsii"} or name.startswith(
                "shared.infra"
            ):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_infrastructure_code_does_not_import_runtime_code():
    offenders = []
    for path in _files(INFRA_GLOBS):
        if "runtime" in path.parts:
            continue
        for name in _imports(path):
            parts = name.split(".")
            if "runtime" in parts or parts[0] in {"model", "mlpipe", "local"}:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_the_scan_sees_the_project():
    assert (ROOT / "shared" / "config.py") in _files(RUNTIME_SAFE_SHARED)
    assert len(_files(INFRA_GLOBS)) >= 10


def test_a_layers_runtime_does_not_import_another_layers_runtime():
    offenders = []
    for path in _files(["stacks/*/runtime/**/*.py"]):
        layer = path.relative_to(ROOT).parts[1]
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "stacks" and len(parts) > 2 and parts[2] == "runtime" and parts[1] != layer:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_infrastructure_code_imports_no_shared_module_that_needs_the_runtime_dependencies():
    """The synth installs the infra group only: a shared module it imports may not import boto."""
    needs_runtime = set()
    for path in _files(["shared/*.py"]):
        if any(name.split(".")[0] in {"boto3", "botocore"} for name in _imports(path)):
            needs_runtime.add(f"shared.{path.stem}")
    assert "shared.predictions" in needs_runtime  # the check sees a module that does import botocore
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _files(INFRA_GLOBS)
        if "runtime" not in path.parts
        for name in _imports(path)
        if name in needs_runtime
    ]
    assert not offenders, offenders
