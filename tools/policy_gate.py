"""The policy gate: cfn-guard (AWS Control Tower proactive controls + ``policies/*.guard``) on
every synthesized template, with per-resource acknowledgements read from the templates.

The cfn-guard binary and the Control Tower rules come from the pinned
``cdklabs-cdk-validator-cfnguard`` package (they ship inside its jsii tarball); nothing is
downloaded. A finding on a resource is acknowledged only when that resource's
``Metadata.guard.SuppressedRules`` names the rule *and* ``Metadata.guard.Reasons`` gives the
reason (``shared.infra.acknowledge`` writes both). The Control Tower rules do not read that
metadata themselves, so the gate filters their findings; the project's own rules read it too.

Usage (``nox -s guard`` runs it): ``python -m tools.policy_gate cdk.out --report reports/policy``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROJECT_RULES = ROOT / "policies"
CACHE = ROOT / ".cache" / "cfn-guard"
GUARD_FAIL_EXIT = 19  # cfn-guard's exit code for "not compliant"
_RESOURCE_PATH = re.compile(r"^/Resources/([A-Za-z0-9]+)")


@dataclass(frozen=True)
class Finding:
    template: str
    rule: str
    resource: str
    message: str


@dataclass(frozen=True)
class Acknowledgement:
    template: str
    resource: str
    tool: str
    rule: str
    reason: str


@dataclass(frozen=True)
class GuardToolchain:
    binary: Path
    control_tower_rules: Path
    version: str


def guard_toolchain(cache: Path = CACHE) -> GuardToolchain:
    """Unpack cfn-guard and the Control Tower rules from the installed validator package."""
    spec = importlib.util.find_spec("cdklabs.cdk_validator_cfnguard")
    if spec is None or spec.origin is None:
        raise SystemExit("cdklabs-cdk-validator-cfnguard is not installed; run this through `nox -s guard`")
    tarballs = sorted((Path(spec.origin).parent / "_jsii").glob("*.tgz"))
    if len(tarballs) != 1:
        raise SystemExit(f"expected one jsii tarball in the validator package, found {tarballs}")
    tarball = tarballs[0]
    target = cache / tarball.stem
    system = {"Linux": "ubuntu", "Darwin": "macos"}[platform.system()]
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[
        platform.machine().lower()
    ]
    binary = target / "package" / "bin" / system / machine / "cfn-guard"
    if not binary.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as archive:
            members = [
                m for m in archive.getmembers() if m.name.startswith(("package/bin/", "package/rules/"))
            ]
            archive.extractall(target, members=members, filter="data")
        binary.chmod(0o755)
    version = subprocess.run([str(binary), "--version"], check=True, capture_output=True, text=True).stdout
    return GuardToolchain(
        binary=binary,
        control_tower_rules=target / "package" / "rules" / "control-tower" / "cfn-guard",
        version=version.strip(),
    )


def stack_templates(cdk_out: Path) -> Iterator[Path]:
    """Every stack template of the cloud assembly, nested stage assemblies included, in manifest order."""
    manifest = json.loads((cdk_out / "manifest.json").read_text())
    for artifact in manifest.get("artifacts", {}).values():
        props = artifact.get("properties", {})
        if artifact.get("type") == "aws:cloudformation:stack":
            yield cdk_out / props["templateFile"]
        elif artifact.get("type") == "cdk:cloud-assembly":
            yield from stack_templates(cdk_out / props["directoryName"])


def _resource_ids(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        path = node.get("path")
        if isinstance(path, str) and (match := _RESOURCE_PATH.match(path)):
            found.add(match.group(1))
        for value in node.values():
            found |= _resource_ids(value)
    elif isinstance(node, list):
        for value in node:
            found |= _resource_ids(value)
    return found


def _messages(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        custom = (
            node.get("messages", {}).get("custom_message") if isinstance(node.get("messages"), dict) else None
        )
        if custom and custom.strip():
            yield " ".join(custom.split())
        for value in node.values():
            yield from _messages(value)
    elif isinstance(node, list):
        for value in node:
            yield from _messages(value)


def run_guard(toolchain: GuardToolchain, rules: Iterable[Path], template: Path) -> list[Finding]:
    """Findings of ``rules`` (files or folders) on one template, before acknowledgements."""
    command = [str(toolchain.binary), "validate", "-d", str(template), "-o", "json", "--structured"]
    command += ["--show-summary", "none"]
    for rule in rules:
        command += ["-r", str(rule)]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode not in (0, GUARD_FAIL_EXIT):
        raise RuntimeError(f"cfn-guard failed on {template} ({result.returncode}): {result.stderr.strip()}")
    findings: list[Finding] = []
    for report in json.loads(result.stdout or "[]"):
        for entry in report.get("not_compliant", []):
            rule = entry.get("Rule", {}).get("name", "unknown")
            message = next(_messages(entry), "")
            resources = sorted(_resource_ids(entry)) or ["(template)"]
            findings.extend(Finding(template.name, rule, resource, message) for resource in resources)
    return findings


def acknowledgements(template: Path) -> list[Acknowledgement]:
    """Every acknowledgement written into a template: cfn-guard's and cdk-nag's."""
    resources: dict[str, Any] = json.loads(template.read_text()).get("Resources", {})
    found: list[Acknowledgement] = []
    for logical_id, resource in resources.items():
        metadata = resource.get("Metadata", {})
        guard = metadata.get("guard", {})
        reasons = guard.get("Reasons", {})
        for rule in guard.get("SuppressedRules", []):
            found.append(Acknowledgement(template.name, logical_id, "cfn-guard", rule, reasons.get(rule, "")))
        for item in metadata.get("cdk_nag", {}).get("rules_to_suppress", []):
            found.append(
                Acknowledgement(template.name, logical_id, "cdk-nag", item["id"], item.get("reason", ""))
            )
    return found


def split_findings(
    findings: list[Finding], acks: list[Acknowledgement]
) -> tuple[list[Finding], list[Finding]]:
    """(open findings, acknowledged findings). An acknowledgement without a reason does not count."""
    acknowledged = {
        (a.template, a.resource, a.rule) for a in acks if a.tool == "cfn-guard" and a.reason.strip()
    }
    open_findings = [f for f in findings if (f.template, f.resource, f.rule) not in acknowledged]
    closed = [f for f in findings if (f.template, f.resource, f.rule) in acknowledged]
    return open_findings, closed


def exported_values(templates: Iterable[Path]) -> dict[str, str]:
    """Export name -> what it exports, for exports of a resource of one of ``templates``.

    cfn-guard evaluates one template at a time, so a cross-stack ``Fn::ImportValue`` (CDK's
    strong references between the layer stacks) is not a "local reference" to the Control Tower
    rules and fails checks such as "KmsKeyId is a key". The gate resolves each import whose
    export it finds in the same assembly to a string naming the exporting resource and its type;
    CloudFormation refuses to deploy an import without its export, and the exporting resource is
    checked in its own template. Imports of anything else stay as they are.
    """
    resolved: dict[str, str] = {}
    for template in templates:
        document = json.loads(template.read_text())
        resources = document.get("Resources", {})
        for output in document.get("Outputs", {}).values():
            name = output.get("Export", {}).get("Name")
            value = output.get("Value")
            if not isinstance(name, str) or not isinstance(value, dict):
                continue
            if "Fn::GetAtt" in value:
                logical_id, attribute = value["Fn::GetAtt"]
            elif "Ref" in value:
                logical_id, attribute = value["Ref"], "Ref"
            else:
                continue
            if logical_id in resources:
                kind = resources[logical_id].get("Type", "?")
                resolved[name] = f"import:{template.stem}/{logical_id}.{attribute} ({kind})"
    return resolved


def resolve_imports(node: Any, exports: dict[str, str]) -> Any:
    """``node`` with every ``{"Fn::ImportValue": name}`` of a known export replaced by its description."""
    if isinstance(node, dict):
        if set(node) == {"Fn::ImportValue"} and isinstance(node["Fn::ImportValue"], str):
            return exports.get(node["Fn::ImportValue"], node)
        return {key: resolve_imports(value, exports) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_imports(item, exports) for item in node]
    return node


def project_rule_files() -> list[Path]:
    return sorted(PROJECT_RULES.glob("*.guard"))


def check_templates(templates: list[Path], toolchain: GuardToolchain) -> dict[str, Any]:
    rules = [toolchain.control_tower_rules, *project_rule_files()]
    open_findings: list[Finding] = []
    closed: list[Finding] = []
    acks: list[Acknowledgement] = []
    exports = exported_values(templates)
    with tempfile.TemporaryDirectory() as work:
        for template in templates:
            template_acks = acknowledgements(template)
            resolved = Path(work) / template.name
            resolved.write_text(json.dumps(resolve_imports(json.loads(template.read_text()), exports)))
            still_open, acknowledged = split_findings(run_guard(toolchain, rules, resolved), template_acks)
            open_findings += still_open
            closed += acknowledged
            acks += template_acks
    return {
        "cfn_guard": toolchain.version,
        "templates": [str(t) for t in templates],
        "rule_sources": [str(r.relative_to(ROOT)) if r.is_relative_to(ROOT) else str(r) for r in rules],
        "findings": [asdict(f) for f in open_findings],
        "acknowledged_findings": [asdict(f) for f in closed],
        "acknowledgements": [asdict(a) for a in acks],
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Policy gate report",
        "",
        f"{result['cfn_guard']}; {len(result['templates'])} templates; "
        f"{len(result['findings'])} open findings; {len(result['acknowledgements'])} acknowledgements.",
        "",
    ]
    if result["findings"]:
        lines += ["## Open findings", "", "| template | resource | rule | message |", "|---|---|---|---|"]
        lines += [
            f"| {f['template']} | {f['resource']} | {f['rule']} | {f['message']} |"
            for f in result["findings"]
        ]
        lines.append("")
    lines += [
        "## Acknowledgements",
        "",
        "| tool | rule | resource | template | reason |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {a['tool']} | {a['rule']} | {a['resource']} | {a['template']} | {a['reason']} |"
        for a in result["acknowledgements"]
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("cdk_out", type=Path, help="cloud assembly directory (cdk.out)")
    parser.add_argument("--report", type=Path, help="folder for policy-gate.json and policy-gate.md")
    args = parser.parse_args(argv)

    toolchain = guard_toolchain()
    templates = list(stack_templates(args.cdk_out))
    if not templates:
        print(f"no stack templates in {args.cdk_out}; synthesize first", file=sys.stderr)
        return 2
    result = check_templates(templates, toolchain)
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "policy-gate.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.report / "policy-gate.md").write_text(markdown(result))
    unexplained = [a for a in result["acknowledgements"] if not a["reason"].strip()]
    for finding in result["findings"]:
        print(f"FAIL {finding['template']} {finding['resource']}: {finding['rule']}: {finding['message']}")
    for ack in unexplained:
        print(f"FAIL {ack['template']} {ack['resource']}: acknowledgement of {ack['rule']} has no reason")
    print(
        f"cfn-guard: {len(templates)} templates, {len(result['findings'])} open findings, "
        f"{len(result['acknowledged_findings'])} acknowledged findings, "
        f"{len(result['acknowledgements'])} acknowledgements"
    )
    return 1 if result["findings"] or unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
