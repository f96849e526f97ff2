"""One way to acknowledge a policy finding: cdk-nag (v3 validation plugin) and cfn-guard.

Every acknowledgement names the rule and carries a reason a reviewer would accept. The
reasons are written into the template (cdk-nag's ``cdk_nag`` metadata and the
``guard.SuppressedRules``/``guard.Reasons`` metadata that the Control Tower rules honour), so
``nox -s guard`` can list every acknowledgement of every environment in one report.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import IConstruct

MIN_REASON_LENGTH = 25
# the findings of a bare wildcard: a reason for one of them explains that finding alone
BARE_WILDCARDS = frozenset({"Resource::*", "Action::*"})


class AcknowledgementError(ValueError):
    """An acknowledgement without a rule or without a real reason."""


def _cfn_resource(construct: IConstruct) -> cdk.CfnResource:
    if isinstance(construct, cdk.CfnResource):
        return construct
    child = construct.node.default_child
    if isinstance(child, cdk.CfnResource):
        return child
    raise AcknowledgementError(
        f"{construct.node.path}: guard rules are suppressed on a CloudFormation resource; "
        "pass the resource (or an L2 construct whose default child is one)"
    )


def acknowledge(
    construct: IConstruct,
    *,
    reason: str,
    nag: Iterable[str] = (),
    guard: Iterable[str] = (),
) -> None:
    """Acknowledge cdk-nag findings ``nag`` and cfn-guard rules ``guard`` on ``construct``.

    ``nag`` ids are cdk-nag finding ids, e.g. ``AwsSolutions-S1`` or
    ``AwsSolutions-IAM5[Resource::*]``. ``guard`` names are cfn-guard rule names (Control
    Tower's ``CT_S3_...`` or the project's ``policies/*.guard`` rules).
    """
    nag_ids = list(nag)
    guard_rules = list(guard)
    if not nag_ids and not guard_rules:
        raise AcknowledgementError(f"{construct.node.path}: acknowledge names no rule")
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise AcknowledgementError(
            f"{construct.node.path}: the reason for {nag_ids + guard_rules} must explain why "
            f"(at least {MIN_REASON_LENGTH} characters), got {reason!r}"
        )
    # Acknowledge on the CloudFormation resource(s) themselves, so cdk-nag writes each
    # acknowledgement and its reason into the template metadata the policy gate reports.
    if isinstance(construct, cdk.CfnResource):
        resources: list[IConstruct] = [construct]
    elif isinstance(construct.node.default_child, cdk.CfnResource):
        resources = [construct.node.default_child]  # an L2: its main resource, not its helpers
    else:
        resources = [c for c in construct.node.find_all() if isinstance(c, cdk.CfnResource)] or [construct]
    for resource in resources:
        validations = cdk.Validations.of(resource)
        for rule_id in nag_ids:
            validations.acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))
    if guard_rules:
        resource = _cfn_resource(construct)
        metadata = resource.get_metadata("guard") or {}
        suppressed: list[str] = list(metadata.get("SuppressedRules", []))
        reasons: dict[str, str] = dict(metadata.get("Reasons", {}))
        for rule in guard_rules:
            if rule not in suppressed:
                suppressed.append(rule)
            reasons[rule] = reason
        resource.add_metadata("guard", {"SuppressedRules": suppressed, "Reasons": reasons})


def _flatten(node: object) -> str:  # noqa: PLR0911 (one return per intrinsic, as cdk-nag's)
    """A CloudFormation value as cdk-nag names it in a finding (its ``flattenCfnReference``)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict):
        if "Fn::Join" in node:
            delimiter, items = node["Fn::Join"]
            return str(delimiter).join(_flatten(item) for item in items)
        if "Fn::Sub" in node:
            return _flatten(node["Fn::Sub"])
        if "Fn::GetAtt" in node:
            resource, attribute = node["Fn::GetAtt"]
            return f"<{_flatten(resource)}.{_flatten(attribute)}>"
        if "Fn::ImportValue" in node:
            return _flatten(node["Fn::ImportValue"])
        if "Ref" in node:
            return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))


def wildcard_findings(document: Mapping[str, Any]) -> list[str]:
    """cdk-nag IAM5 findings (``Action::...``/``Resource::...``) of a resolved policy document."""
    findings: list[str] = []
    for statement in document.get("Statement", []):
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        for action in [actions] if isinstance(actions, str) else actions:
            if "*" in action:
                findings.append(f"Action::{action}")
        for resource in [resources] if isinstance(resources, (str, dict)) else resources:
            flat = _flatten(resource)
            if "*" in flat:
                findings.append(f"Resource::{flat}")
    return sorted(set(findings))


def acknowledge_wildcards(role: IConstruct, reasons: Mapping[str, str]) -> list[str]:
    """Acknowledge each IAM5 (wildcard) finding of ``role``'s inline policy with its own reason.

    ``reasons`` maps a pattern (``fnmatch`` syntax, matched against the finding such as
    ``Resource::arn:aws:s3:::bucket/models/*``) to why IAM cannot scope that wildcard further.
    ``Resource::*`` and ``Action::*`` are the findings of the bare wildcard and match only
    themselves (as globs they would explain every other wildcard too). Call it after the role's
    last statement; a wildcard no pattern explains fails the synth, so a new wildcard always
    comes with a reason. Returns the acknowledged findings.
    """
    policy = role.node.try_find_child("DefaultPolicy")
    resource = policy.node.default_child if policy is not None else None
    if not isinstance(resource, iam.CfnPolicy):
        raise AcknowledgementError(f"{role.node.path}: has no inline policy to acknowledge")
    document = cdk.Stack.of(role).resolve(resource.policy_document)
    findings = wildcard_findings(document)
    unexplained = []
    for finding in findings:
        reason = reasons.get(finding) or next(
            (
                r
                for pattern, r in reasons.items()
                if pattern not in BARE_WILDCARDS and fnmatch.fnmatchcase(finding, pattern)
            ),
            None,
        )
        if reason is None:
            unexplained.append(finding)
            continue
        acknowledge(resource, nag=[f"AwsSolutions-IAM5[{finding}]"], reason=reason)
    if unexplained:
        raise AcknowledgementError(
            f"{role.node.path}: wildcard permissions without a reason: {unexplained}; scope them or add a "
            f"reason"
        )
    return findings
