"""The policy gate can fail: non-compliant templates are rejected, acknowledgements need reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.policy_gate import (
    Acknowledgement,
    Finding,
    check_templates,
    guard_toolchain,
    run_guard,
    split_findings,
)
from tools.policy_gate import main as gate_main

NON_COMPLIANT = {
    "Resources": {
        "RawBucket": {"Type": "AWS::S3::Bucket", "Properties": {}},
        "PredictionsTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": "ml-pipeline-predictions-dev-us-east-1",
                "KeySchema": [{"AttributeName": "predictionId", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "predictionId", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
            },
        },
        "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Statement": []}}},
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {}},
        "Policy": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyName": "p",
                "Roles": ["r"],
                "PolicyDocument": {
                    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]
                },
            },
        },
    }
}


@pytest.fixture(scope="module")
def toolchain():
    return guard_toolchain()


def _write(tmp_path: Path, name: str, template: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(template))
    return path


def test_toolchain_comes_from_the_pinned_package(toolchain):
    assert toolchain.binary.exists()
    assert toolchain.version.startswith("cfn-guard 3.")
    assert len(list(toolchain.control_tower_rules.rglob("*.guard"))) > 200


def test_a_non_compliant_template_is_rejected_by_every_project_rule(tmp_path, toolchain):
    template = _write(tmp_path, "bad.template.json", NON_COMPLIANT)
    result = check_templates([template], toolchain)
    failed = {(f["rule"], f["resource"]) for f in result["findings"]}
    for expected in [
        ("S3_BUCKET_VERSIONING_ENABLED", "RawBucket"),
        ("S3_BUCKET_KMS_ENCRYPTION", "RawBucket"),
        ("DYNAMODB_PITR_ENABLED", "PredictionsTable"),
        ("DYNAMODB_PREDICTIONS_TTL", "PredictionsTable"),
        ("KMS_KEY_ROTATION_ENABLED", "Key"),
        ("LOG_GROUP_RETENTION_SET", "Logs"),
        ("LOG_GROUP_KMS_ENCRYPTED", "Logs"),
        ("IAM_NO_WILDCARD_RESOURCE", "Policy"),
    ]:
        assert expected in failed, expected
    # with no bucket policy at all, the TLS rule fails on the template as a whole
    assert "S3_BUCKET_TLS_ONLY_POLICY" in {rule for rule, _ in failed}
    # and the Control Tower controls run too
    assert any(f["message"].startswith("[CT.") for f in result["findings"])


def test_the_gate_command_exits_non_zero_on_a_violation(tmp_path, toolchain):
    assembly = tmp_path / "cdk.out"
    assembly.mkdir()
    _write(assembly, "Bad.template.json", NON_COMPLIANT)
    manifest = {
        "artifacts": {
            "Bad": {"type": "aws:cloudformation:stack", "properties": {"templateFile": "Bad.template.json"}}
        }
    }
    (assembly / "manifest.json").write_text(json.dumps(manifest))
    assert gate_main([str(assembly), "--report", str(tmp_path / "report")]) == 1
    report = json.loads((tmp_path / "report" / "policy-gate.json").read_text())
    assert report["findings"]
    assert "Open findings" in (tmp_path / "report" / "policy-gate.md").read_text()


def test_a_reasoned_suppression_acknowledges_only_its_rule_on_its_resource(tmp_path, toolchain):
    template = json.loads(json.dumps(NON_COMPLIANT))
    template["Resources"]["Key"]["Metadata"] = {
        "guard": {
            "SuppressedRules": ["KMS_KEY_ROTATION_ENABLED"],
            "Reasons": {
                "KMS_KEY_ROTATION_ENABLED": "an imported key material key cannot rotate automatically"
            },
        }
    }
    result = check_templates([_write(tmp_path, "t.template.json", template)], toolchain)
    open_rules = {(f["rule"], f["resource"]) for f in result["findings"]}
    assert ("KMS_KEY_ROTATION_ENABLED", "Key") not in open_rules
    assert ("LOG_GROUP_RETENTION_SET", "Logs") in open_rules
    assert [a["rule"] for a in result["acknowledgements"]] == ["KMS_KEY_ROTATION_ENABLED"]


def test_an_acknowledgement_without_a_reason_does_not_count():
    finding = Finding("t.json", "CT_RULE", "Res", "msg")
    silent = Acknowledgement("t.json", "Res", "cfn-guard", "CT_RULE", "  ")
    reasoned = Acknowledgement("t.json", "Res", "cfn-guard", "CT_RULE", "a reason a reviewer accepts")
    assert split_findings([finding], [silent]) == ([finding], [])
    assert split_findings([finding], [reasoned]) == ([], [finding])
    other_resource = Acknowledgement("t.json", "Other", "cfn-guard", "CT_RULE", "a reason a reviewer accepts")
    assert split_findings([finding], [other_resource]) == ([finding], [])


def test_control_tower_finding_names_the_resource(tmp_path, toolchain):
    template = _write(
        tmp_path, "ct.template.json", {"Resources": {"RawBucket": NON_COMPLIANT["Resources"]["RawBucket"]}}
    )
    findings = run_guard(toolchain, [toolchain.control_tower_rules], template)
    assert {f.resource for f in findings} == {"RawBucket"}
    assert any(f.rule == "s3_bucket_versioning_enabled_check" for f in findings)
