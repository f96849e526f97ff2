"""Template assertions: the app is synthesized once per test session, every environment."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from shared.config import ENVIRONMENTS
from tools.deploy_plan import StackPlan, deployment_plan
from tools.synth import synthesize

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cdk_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = ROOT / "cdk.out"
    if os.environ.get("MLPIPE_REUSE_CDK_OUT") == "1" and (shared / "manifest.json").is_file():
        return shared  # built once by the task graph's synth (stage:synth), which runs the same gate
    out = tmp_path_factory.mktemp("cdk") / "cdk.out"
    synthesize(out, environments=None)  # raises if cdk-nag has an open finding
    return out


@pytest.fixture(scope="session")
def plan(cdk_out: Path) -> dict[str, list[StackPlan]]:
    return deployment_plan(cdk_out)


@pytest.fixture(scope="session")
def template_json(plan: dict[str, list[StackPlan]]) -> Callable[[str, str], dict[str, Any]]:
    """template_json(env, layer) -> the raw template dict of stack ``ml-pipeline-{layer}-{env}``."""
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def load(env: str, layer: str) -> dict[str, Any]:
        if (env, layer) not in cache:
            stack_name = ENVIRONMENTS[env].stack_name(layer)
            match = [s for s in plan[env] if s.stack_name == stack_name]
            assert match, f"no stack {stack_name} in stage {env}"
            cache[(env, layer)] = json.loads(match[0].template_file.read_text())
        return cache[(env, layer)]

    return load


@pytest.fixture(scope="session")
def template(template_json: Callable[[str, str], dict[str, Any]]) -> Callable[[str, str], Template]:
    cache: dict[tuple[str, str], Template] = {}

    def load(env: str, layer: str) -> Template:
        if (env, layer) not in cache:
            cache[(env, layer)] = Template.from_json(template_json(env, layer))
        return cache[(env, layer)]

    return load


def resources_of(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}
