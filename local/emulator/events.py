"""EventBridge rule patterns that moto's CloudFormation leaves unresolved.

moto's CloudFormation stores a rule's ``EventPattern`` as it is written: an ``Fn::ImportValue`` inside
it (the observability layer's Batch job-failed rule names the batch layer's queue that way) stays a
``{"Fn::ImportValue": ...}`` object, and moto's ``PutEvents`` then fails on every event with
``NotImplementedError`` while matching it. CloudFormation on AWS resolves the import, so the local
deployer does the same before it creates the stack: each import in a rule's pattern becomes the
export's value, read from the emulated account.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

GAP = "EventBridge: imports inside rule patterns resolved before the stack is created (moto keeps them)"


def resolve_pattern_imports(template: dict[str, Any], exports: Mapping[str, str]) -> int:
    """Replace each known export's ``Fn::ImportValue`` in the rules' ``EventPattern``; returns the count."""
    replaced = 0

    def walk(node: Any) -> Any:
        nonlocal replaced
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        name = node.get("Fn::ImportValue")
        if len(node) == 1 and isinstance(name, str) and name in exports:
            replaced += 1
            return exports[name]
        return {key: walk(value) for key, value in node.items()}

    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Events::Rule" and "EventPattern" in properties:
            properties["EventPattern"] = walk(properties["EventPattern"])
    return replaced


SUPPORTED_BY_MOTO = {"logs", "events", "sqs"}
DELIVERY_GAP = (
    "EventBridge: PutEvents delivers to SNS topic targets (moto raises NotImplementedError for them); "
    "Lambda and state-machine targets of put events are skipped (the local dispatcher drives the rules)"
)


def install() -> tuple[str, ...]:
    """Make moto's ``PutEvents`` deliver to SNS targets and skip the targets it cannot deliver to."""
    from moto.events.models import Rule  # noqa: PLC0415 - the emulator is only loaded by the local stage
    from moto.sns.models import sns_backends  # noqa: PLC0415
    from moto.utilities.arns import parse_arn  # noqa: PLC0415

    original = Rule.send_to_targets
    if getattr(original, "_local_stage", False):
        return (DELIVERY_GAP,)

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if not self.event_pattern.matches_event(original_event):
            return
        targets = list(self.targets)
        for target in targets:
            arn = parse_arn(target["Arn"])
            if arn.service == "sns":
                message = target.get("Input") or json.dumps(original_event)
                sns_backends[arn.account][arn.region].publish(message=message, arn=target["Arn"])
        self.targets = [t for t in targets if parse_arn(t["Arn"]).service in SUPPORTED_BY_MOTO]
        try:
            original(self, original_event, transform_input)
        finally:
            self.targets = targets

    send_to_targets._local_stage = True  # type: ignore[attr-defined]
    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
    return (DELIVERY_GAP,)
