"""Affected stacks for a deploy: compare the base and head cloud assemblies stack by stack.

A stack is changed when what CloudFormation would receive differs: its template (``AWS::CDK::Metadata``
resources and the ``CDKMetadataAvailable`` condition ignored; key order never matters), the hashes of
the assets it publishes (Lambda code, layers, container images), its tags or its parameters. Every
stack that depends on a changed, added or removed stack (the manifest's ``dependencies``, transitively)
is affected too, since its imports may resolve differently. The answer comes out in each stage's
deployment order (``tools.deploy_plan``).

    python -m tools.affected_stacks BASE_CDK_OUT HEAD_CDK_OUT [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.deploy_plan import StackPlan, stack_order, stage_assemblies

IGNORED_RESOURCE_TYPES = {"AWS::CDK::Metadata"}
IGNORED_CONDITIONS = {"CDKMetadataAvailable"}
ASSET_PLACEHOLDER = "<asset-hash>"


@dataclass(frozen=True)
class StackState:
    """What a deploy of one stack sends: template, asset hashes, tags, parameters."""

    stack_name: str
    artifact_id: str
    template: dict[str, Any]
    assets: frozenset[str]
    tags: dict[str, str]
    parameters: dict[str, Any]
    depends_on: tuple[str, ...]  # stack names


@dataclass(frozen=True)
class StackChange:
    stage: str
    stack_name: str
    status: str  # added | removed | changed | dependent
    reasons: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "stack": self.stack_name,
            "status": self.status,
            "reasons": list(self.reasons),
        }


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _asset_hashes(assembly: Path, artifact_id: str, artifacts: dict[str, Any]) -> frozenset[str]:
    """Source hashes of the files and images the stack publishes (its own template excluded)."""
    hashes: set[str] = set()
    for dependency in artifacts[artifact_id].get("dependencies", []):
        artifact = artifacts.get(dependency, {})
        if artifact.get("type") != "cdk:asset-manifest":
            continue
        manifest = _read_json(assembly / artifact["properties"]["file"])
        for asset_hash, asset in manifest.get("files", {}).items():
            if not str(asset.get("source", {}).get("path", "")).endswith(".template.json"):
                hashes.add(asset_hash)
        hashes.update(manifest.get("dockerImages", {}))
    return frozenset(hashes)


def normalized_template(template: dict[str, Any]) -> dict[str, Any]:
    """The template without what changes on every CDK upgrade and deploys nothing."""
    result = dict(template)
    resources = {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") not in IGNORED_RESOURCE_TYPES
    }
    result["Resources"] = resources
    conditions = {k: v for k, v in template.get("Conditions", {}).items() if k not in IGNORED_CONDITIONS}
    if conditions:
        result["Conditions"] = conditions
    else:
        result.pop("Conditions", None)
    return result


def read_stage(assembly: Path) -> dict[str, StackState]:
    """Stack name -> state, for one stage's nested assembly."""
    artifacts = _read_json(assembly / "manifest.json").get("artifacts", {})
    plans: list[StackPlan] = stack_order(assembly)
    names = {plan.artifact_id: plan.stack_name for plan in plans}
    states = {}
    for plan in plans:
        properties = artifacts[plan.artifact_id].get("properties", {})
        template = normalized_template(_read_json(plan.template_file))
        states[plan.stack_name] = StackState(
            stack_name=plan.stack_name,
            artifact_id=plan.artifact_id,
            template=template,
            assets=_asset_hashes(assembly, plan.artifact_id, artifacts),
            tags=dict(properties.get("tags", {})),
            # declared in the template, and the values the manifest passes at deploy time
            parameters={
                **template.get("Parameters", {}),
                **{k: {"Value": v} for k, v in properties.get("parameters", {}).items()},
            },
            depends_on=tuple(names[d] for d in plan.depends_on if d in names),
        )
    return states


def _without_assets(value: dict[str, Any], hashes: frozenset[str]) -> str:
    text = json.dumps(value, sort_keys=True)
    for asset_hash in sorted(hashes, key=len, reverse=True):
        text = text.replace(asset_hash, ASSET_PLACEHOLDER)
    return text


def _changed_keys(base: dict[str, Any], head: dict[str, Any]) -> list[str]:
    return sorted(k for k in base.keys() | head.keys() if base.get(k) != head.get(k))


def stack_reasons(base: StackState, head: StackState) -> list[str]:
    """Why one stack present in both assemblies differs; empty when it would deploy nothing new."""
    reasons = []
    hashes = base.assets | head.assets
    if base.template != head.template:
        if _without_assets(base.template, hashes) == _without_assets(head.template, hashes):
            reasons.append("template: only asset hashes changed")
        else:
            for section in _changed_keys(base.template, head.template):
                if section in {"Resources", "Outputs", "Conditions", "Mappings", "Rules"}:
                    ids = _changed_keys(base.template.get(section, {}), head.template.get(section, {}))
                    reasons.append(f"template {section}: {', '.join(ids)}")
                elif section != "Parameters":
                    reasons.append(f"template {section}")
    if base.assets != head.assets:
        added, removed = len(head.assets - base.assets), len(base.assets - head.assets)
        reasons.append(f"assets: {added} new hash(es), {removed} gone")
    if base.tags != head.tags:
        reasons.append(f"tags: {', '.join(_changed_keys(base.tags, head.tags))}")
    if base.parameters != head.parameters:
        reasons.append(f"parameters: {', '.join(_changed_keys(base.parameters, head.parameters))}")
    return reasons


def _direct_changes(
    base: dict[str, StackState], head: dict[str, StackState]
) -> dict[str, tuple[str, list[str]]]:
    """Stacks added, removed or changed themselves: name -> (status, reasons)."""
    direct: dict[str, tuple[str, list[str]]] = {}
    for name, state in head.items():
        reasons = stack_reasons(base[name], state) if name in base else ["not in the base assembly"]
        if reasons:
            direct[name] = ("changed" if name in base else "added", reasons)
    direct.update({name: ("removed", ["not in the head assembly"]) for name in base if name not in head})
    return direct


def _dependents(
    sources: list[str], base: dict[str, StackState], head: dict[str, StackState]
) -> dict[str, set[str]]:
    """Head stacks that depend (transitively) on a source: name -> the sources it was reached from."""
    dependents: dict[str, set[str]] = {}
    for states in (base, head):
        for name, state in states.items():
            for dependency in state.depends_on:
                dependents.setdefault(dependency, set()).add(name)
    reached: dict[str, set[str]] = {}
    todo = list(sources)
    while todo:
        source = todo.pop()
        for dependent in sorted(dependents.get(source, set()) - set(sources)):
            if dependent in head:
                if dependent not in reached:
                    todo.append(dependent)
                reached.setdefault(dependent, set()).add(source)
    return reached


def compare_stage(stage: str, base: dict[str, StackState], head: dict[str, StackState]) -> list[StackChange]:
    """Changed, added and removed stacks plus their dependents, in head's deploy order (removed last)."""
    direct = _direct_changes(base, head)
    rippled = _dependents(list(direct), base, head)
    changes = []
    for name in head:  # read_stage keeps the deploy order
        if name in direct:
            status, reasons = direct[name]
            changes.append(StackChange(stage, name, status, tuple(reasons)))
        elif name in rippled:
            reasons = [f"depends on {source}" for source in sorted(rippled[name])]
            changes.append(StackChange(stage, name, "dependent", tuple(reasons)))
    changes.extend(
        StackChange(stage, name, "removed", tuple(direct[name][1])) for name in base if name not in head
    )
    return changes


def compare(base_out: Path, head_out: Path) -> list[StackChange]:
    base_stages = {name: read_stage(path) for name, path in stage_assemblies(base_out).items()}
    head_stages = {name: read_stage(path) for name, path in stage_assemblies(head_out).items()}
    changes = []
    for stage in [*head_stages, *(s for s in base_stages if s not in head_stages)]:
        changes.extend(compare_stage(stage, base_stages.get(stage, {}), head_stages.get(stage, {})))
    return changes


def render(changes: Sequence[StackChange]) -> str:
    if not changes:
        return "no stack is affected"
    lines = []
    for change in changes:
        lines.append(f"{change.stage}: {change.stack_name} [{change.status}]")
        lines.extend(f"    {reason}" for reason in change.reasons)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", type=Path, help="cdk.out synthesized at the base ref")
    parser.add_argument("head", type=Path, help="cdk.out synthesized at the head ref")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    changes = compare(args.base, args.head)
    print(json.dumps([c.as_json() for c in changes], indent=2) if args.json else render(changes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
