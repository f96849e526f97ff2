"""The deployment plan: each stage's stacks in dependency order, read from the cloud assembly.

CI deploys stack by stack in this order; the local stage creates the stacks in it too. The
order comes from the manifest's ``dependencies`` (which CDK derives from the cross-stack
references made by passing objects in the stage), never from a hand-written list.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StackPlan:
    artifact_id: str
    display_name: str  # the CLI's stack selector, e.g. ``prod/Network``
    stack_name: str
    template_file: Path
    depends_on: tuple[str, ...]
    account: str
    region: str


def _manifest(assembly: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((assembly / "manifest.json").read_text())
    return manifest


def stage_assemblies(cdk_out: Path) -> dict[str, Path]:
    """Stage name -> nested assembly directory, in manifest order."""
    stages: dict[str, Path] = {}
    for artifact_id, artifact in _manifest(cdk_out).get("artifacts", {}).items():
        if artifact.get("type") == "cdk:cloud-assembly":
            name = artifact.get("displayName") or artifact_id.removeprefix("assembly-")
            stages[name] = cdk_out / artifact["properties"]["directoryName"]
    return stages


def stack_order(assembly: Path) -> list[StackPlan]:
    """The stacks of one stage assembly, every stack after the stacks it depends on."""
    artifacts = _manifest(assembly).get("artifacts", {})
    stacks = {aid: a for aid, a in artifacts.items() if a.get("type") == "aws:cloudformation:stack"}
    graph = {aid: [d for d in a.get("dependencies", []) if d in stacks] for aid, a in stacks.items()}
    order = list(TopologicalSorter(graph).static_order())
    plans = []
    for aid in order:
        artifact = stacks[aid]
        props = artifact["properties"]
        environment = artifact.get("environment", "aws://unknown/unknown").removeprefix("aws://")
        account, _, region = environment.partition("/")
        plans.append(
            StackPlan(
                artifact_id=aid,
                display_name=artifact.get("displayName", aid),
                stack_name=props.get("stackName", aid),
                template_file=assembly / props["templateFile"],
                depends_on=tuple(graph[aid]),
                account=account,
                region=region,
            )
        )
    return plans


def deployment_plan(cdk_out: Path) -> dict[str, list[StackPlan]]:
    return {stage: stack_order(assembly) for stage, assembly in stage_assemblies(cdk_out).items()}


def render(plan: dict[str, list[StackPlan]]) -> str:
    lines = []
    for stage, stacks in plan.items():
        target = f"{stacks[0].account}/{stacks[0].region}" if stacks else "-"
        lines.append(f"stage {stage} ({target}):")
        for number, stack in enumerate(stacks, start=1):
            after = f"  after {', '.join(stack.depends_on)}" if stack.depends_on else ""
            lines.append(f"  {number}. {stack.stack_name}  [{stack.artifact_id}]{after}")
    return "\n".join(lines)


def as_json(plan: dict[str, list[StackPlan]]) -> dict[str, list[dict[str, Any]]]:
    return {
        stage: [
            {
                "artifactId": s.artifact_id,
                "displayName": s.display_name,
                "stackName": s.stack_name,
                "templateFile": str(s.template_file),
                "dependsOn": list(s.depends_on),
                "account": s.account,
                "region": s.region,
            }
            for s in stacks
        ]
        for stage, stacks in plan.items()
    }
