"""The tagging aspect: required tags everywhere, CDK's plain helper resources included."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from shared.infra.tagging import RequiredTags

TAGS = {"Project": "p", "Environment": "e", "CostCenter": "c", "Owner": "o", "DataClassification": "internal"}


def test_missing_required_tags_are_refused():
    with pytest.raises(ValueError, match="required tags missing or empty: Owner"):
        RequiredTags({**TAGS, "Owner": ""})


def test_tags_reach_l2_resources_and_plain_cfn_resources_and_explicit_tags_win():
    stack = cdk.Stack(cdk.App(), "S")
    bucket = s3.Bucket(stack, "B")
    cdk.Tags.of(bucket).add("DataClassification", "public")
    cdk.CfnResource(
        stack,
        "HelperRole",
        type="AWS::IAM::Role",
        properties={"AssumeRolePolicyDocument": {"Statement": []}},
    )
    cdk.Aspects.of(stack).add(RequiredTags(TAGS))
    template = Template.from_stack(stack).to_json()["Resources"]
    bucket_tags = {
        t["Key"]: t["Value"]
        for t in template[next(k for k in template if k.startswith("B"))]["Properties"]["Tags"]
    }
    assert bucket_tags == {**TAGS, "DataClassification": "public"}
    role_tags = {t["Key"]: t["Value"] for t in template["HelperRole"]["Properties"]["Tags"]}
    assert role_tags == TAGS
