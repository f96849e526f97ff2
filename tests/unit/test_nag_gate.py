"""The cdk-nag gate can fail, and an acknowledgement needs a rule and a reason."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from shared.infra.acknowledge import AcknowledgementError, acknowledge
from stacks.app import new_app


def _app_with_plain_bucket(tmp_path, *, acknowledged: bool) -> cdk.App:
    app = new_app(outdir=str(tmp_path / "cdk.out"))
    stack = cdk.Stack(app, "NagProbe", env=cdk.Environment(account="123456789012", region="us-east-1"))
    bucket = s3.Bucket(stack, "Plain")  # no TLS-only policy, no access logs
    if acknowledged:
        acknowledge(
            bucket,
            nag=["AwsSolutions-S1", "AwsSolutions-S10"],
            reason="probe bucket of a unit test that shows acknowledgements take effect",
        )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))
    return app


def test_an_unacknowledged_finding_fails_synth(tmp_path):
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        _app_with_plain_bucket(tmp_path, acknowledged=False).synth()
    report = (tmp_path / "cdk.out" / "validation-report.json").read_text()
    assert "AwsSolutions-S10" in report
    assert "AwsSolutions-S1" in report


def test_acknowledged_findings_synthesize_and_keep_their_reason(tmp_path):
    assembly = _app_with_plain_bucket(tmp_path, acknowledged=True).synth()
    template = assembly.get_stack_by_name("NagProbe").template
    bucket = next(r for r in template["Resources"].values() if r["Type"] == "AWS::S3::Bucket")
    rules = {item["id"]: item["reason"] for item in bucket["Metadata"]["cdk_nag"]["rules_to_suppress"]}
    assert set(rules) == {"AwsSolutions-S1", "AwsSolutions-S10"}
    assert all("probe bucket" in reason for reason in rules.values())


def test_acknowledgement_requires_a_rule_and_a_real_reason():
    stack = cdk.Stack(cdk.App(), "S")
    bucket = s3.Bucket(stack, "B")
    with pytest.raises(AcknowledgementError, match="names no rule"):
        acknowledge(bucket, reason="a long enough reason that names nothing at all")
    with pytest.raises(AcknowledgementError, match="must explain why"):
        acknowledge(bucket, nag=["AwsSolutions-S1"], reason="not needed")


def test_guard_acknowledgements_accumulate_in_metadata():
    stack = cdk.Stack(cdk.App(), "S")
    bucket = s3.Bucket(stack, "B")
    acknowledge(bucket, guard=["RULE_ONE"], reason="the first reason, long enough to explain")
    acknowledge(bucket, guard=["RULE_TWO"], reason="the second reason, long enough to explain")
    cfn = bucket.node.default_child
    assert isinstance(cfn, cdk.CfnResource)
    metadata = cfn.get_metadata("guard")
    assert metadata["SuppressedRules"] == ["RULE_ONE", "RULE_TWO"]
    assert metadata["Reasons"]["RULE_TWO"].startswith("the second reason")
