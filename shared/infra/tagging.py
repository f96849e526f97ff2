"""The tagging aspect: every taggable resource of a stage carries the project's required tags."""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
import jsii
from constructs import IConstruct

REQUIRED_TAG_KEYS = ("Project", "Environment", "CostCenter", "Owner", "DataClassification")
# Resource types with a list-of-Key/Value ``Tags`` property that CDK may emit as plain CfnResources.
UNMANAGED_TAGGABLE_TYPES = frozenset({"AWS::IAM::Role", "AWS::Lambda::Function"})


@jsii.implements(cdk.IAspect)
class RequiredTags:
    """Sets the required tags on every taggable resource below the scope it is added to.

    Tags set explicitly on a resource with the same key win over the aspect's value
    (``priority`` below CDK's default of 100), so a construct can specialise e.g.
    ``DataClassification`` for a bucket of public data.
    """

    PRIORITY = 50

    def __init__(self, tags: Mapping[str, str]) -> None:
        missing = [key for key in REQUIRED_TAG_KEYS if not tags.get(key)]
        if missing:
            raise ValueError(f"required tags missing or empty: {', '.join(missing)}")
        # CDK's own Tag aspect knows every flavour of taggable resource (TagManager v1 and v2).
        self._values = dict(tags)
        self._tags = [cdk.Tag(key, value, priority=self.PRIORITY) for key, value in tags.items()]

    def visit(self, node: IConstruct) -> None:
        if cdk.TagManager.is_taggable(node) or cdk.TagManager.is_taggable_v2(node):
            for tag in self._tags:
                tag.visit(node)
        elif isinstance(node, cdk.CfnResource) and node.cfn_resource_type in UNMANAGED_TAGGABLE_TYPES:
            # CDK's own helper resources (e.g. the provider of the restrict-default-security-group
            # custom resource) are plain CfnResources without a tag manager; tag them directly.
            node.add_property_override(
                "Tags", [{"Key": key, "Value": value} for key, value in sorted(self._values.items())]
            )
