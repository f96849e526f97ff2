"""The functions' code asset holds what the handlers import, and nothing that imports CDK."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from shared.infra.python_function import ROOT, locked_requirements, python_files
from stacks.batch.compute import JOB_MODULE, JOB_SOURCES
from stacks.batch.stack import HANDLERS as BATCH_HANDLERS
from stacks.batch.stack import RUNTIME_SOURCES as BATCH_SOURCES
from stacks.inference.stack import HANDLERS, RUNTIME_SOURCES

# (what is packaged, the entry point it must import): every function asset and the job image
PACKAGES = {
    **{name: (RUNTIME_SOURCES, handler) for name, handler in HANDLERS.items()},
    **{name: (BATCH_SOURCES, handler) for name, handler in BATCH_HANDLERS.items()},
    "batch-job-image": (JOB_SOURCES, f"{JOB_MODULE}.main"),
}

REQUEST_SCHEMA = ROOT / "stacks" / "inference" / "request-schema.json"


@pytest.mark.parametrize("sources", [RUNTIME_SOURCES, BATCH_SOURCES, JOB_SOURCES])
def test_the_asset_holds_every_handler_and_no_infrastructure_code(sources):
    files = python_files(sources)
    for packaged, handler in PACKAGES.values():
        if packaged is sources:
            module = handler.rsplit(".", 1)[0]
            assert module.replace(".", "/") + ".py" in files
    assert not [f for f in files if f.startswith("shared/infra/")]
    cdk_import = re.compile(r"^\s*(import|from)\s+(aws_cdk|constructs|cdk_nag)\b", re.MULTILINE)
    importing_cdk = [f for f in files if cdk_import.search((ROOT / f).read_text())]
    assert importing_cdk == []


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_each_handler_imports_from_the_asset_alone(name, tmp_path):
    """Copy the asset's files, hide the repository and CDK, import the handler as Lambda would."""
    sources, handler = PACKAGES[name]
    for relative in python_files(sources):
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    module, attribute = handler.rsplit(".", 1)
    script = f"""
import sys
from pathlib import Path
root = Path({str(ROOT)!r}).resolve()
sys.path[:] = [{str(tmp_path)!r}] + [p for p in sys.path if p and Path(p).resolve() != root]
sys.modules["aws_cdk"] = None  # the Lambda runtime has no CDK: importing it must fail
import importlib
handler_module = importlib.import_module({module!r})
assert callable(getattr(handler_module, {attribute!r}))
assert Path(handler_module.__file__).is_relative_to({str(tmp_path)!r}), handler_module.__file__
"""
    environment = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "MlPipeline",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr


def test_the_layer_is_the_locked_runtime_group():
    requirements = locked_requirements()
    pinned = dict(line.split("==", 1) for line in requirements.splitlines() if "==" in line)
    for package in ("aws-lambda-powertools", "pydantic", "boto3", "aws-xray-sdk"):
        assert package in pinned, package
    assert "ml-pipeline" not in requirements
    assert not any(dev in pinned for dev in ("aws-cdk-lib", "pytest", "moto", "scikit-learn"))


def test_the_api_request_model_is_the_trained_models_request_schema(trained):
    """``nox -s train`` writes the schema; the API's committed copy must be the same document."""
    for version in trained.artifacts:
        written = json.loads((trained.output / version / "request-schema.json").read_text())
        assert json.loads(REQUEST_SCHEMA.read_text()) == written, (
            f"stacks/inference/request-schema.json differs from the {version} schema: copy "
            f"build/models/{version}/request-schema.json there after changing the features"
        )
