"""One way to acknowledge a policy finding: cdk-nag (v3 validation plugin) and cfn-guard.

Every acknowledgement names the rule and carries a reason a reviewer would accept. The
reasons are written into the template (cdk-nag's ``cdk_nag`` metadata and the
``guard.SuppressedRules``/``guard.Reasons`` metadata that the Control Tower rules honour), so
``nox -s guard`` can list every acknowledgement of every environment in one report.
"""

from __future__ import annotations

from collections.abc import Iterable

import aws_cdk as cdk
from constructs import IConstruct

MIN_REASON_LENGTH = 25


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
