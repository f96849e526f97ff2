"""Stages, stack names, deployment order and the tagging aspect across every template."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest

from shared.config import ENVIRONMENTS
from shared.infra.tagging import REQUIRED_TAG_KEYS
from tools.deploy import commands
from tools.synth import cdk_annotations
from tools.synth import main as synth_main

ENVS = sorted(ENVIRONMENTS)

# Types whose CloudFormation schema has Tags; each must carry the required set.
MUST_BE_TAGGED = {
    "AWS::EC2::VPC",
    "AWS::EC2::Subnet",
    "AWS::EC2::RouteTable",
    "AWS::EC2::SecurityGroup",
    "AWS::EC2::NetworkAcl",
    "AWS::EC2::FlowLog",
    "AWS::KMS::Key",
    "AWS::Logs::LogGroup",
    "AWS::IAM::Role",
    "AWS::Lambda::Function",
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::SSM::Parameter",
}


def test_one_stage_per_environment_with_stacks_in_dependency_order(plan):
    assert sorted(plan) == ENVS
    for env, stacks in plan.items():
        assert [s.stack_name for s in stacks] == [
            f"ml-pipeline-network-{env}",
            f"ml-pipeline-data-{env}",
            f"ml-pipeline-inference-{env}",
            f"ml-pipeline-batch-{env}",
            f"ml-pipeline-training-{env}",
            f"ml-pipeline-analytics-{env}",
            f"ml-pipeline-observability-{env}",
        ]
        assert {(s.account, s.region) for s in stacks} == {
            (ENVIRONMENTS[env].account, ENVIRONMENTS[env].region)
        }


def test_synth_command_writes_the_deploy_plan_ci_reads(tmp_path, capsys):
    out = tmp_path / "cdk.out"
    assert synth_main([str(out), "--environments=local"]) == 0
    plan = json.loads((out / "deploy-plan.json").read_text())
    assert [s["stackName"] for s in plan["local"]] == [
        "ml-pipeline-network-local",
        "ml-pipeline-data-local",
        "ml-pipeline-inference-local",
        "ml-pipeline-batch-local",
        "ml-pipeline-training-local",
        "ml-pipeline-analytics-local",
        "ml-pipeline-observability-local",
    ]
    assert all(Path(s["templateFile"]).exists() for s in plan["local"])
    printed = capsys.readouterr().out
    assert "1. ml-pipeline-network-local" in printed
    assert "2. ml-pipeline-data-local" in printed


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize(
    "layer", ["network", "data", "inference", "batch", "analytics", "training", "observability"]
)
def test_every_taggable_resource_carries_the_required_tags(env, layer, template_json):
    resources = template_json(env, layer)["Resources"]
    expected = ENVIRONMENTS[env].tag_map
    checked = 0
    for logical_id, resource in resources.items():
        tags = resource.get("Properties", {}).get("Tags")
        if tags is None:
            assert resource["Type"] not in MUST_BE_TAGGED, f"{logical_id} ({resource['Type']}) has no tags"
            continue
        as_map = tags if isinstance(tags, dict) else {t["Key"]: t["Value"] for t in tags}
        for key in REQUIRED_TAG_KEYS:
            assert as_map.get(key) == expected[key], f"{logical_id}: tag {key}"
        checked += 1
    assert checked >= 5


def test_ci_deploys_each_stack_alone_in_plan_order(cdk_out):
    deploys = commands(cdk_out, "prod")
    assert [c[-1] for c in deploys] == [
        "prod/Network",
        "prod/Data",
        "prod/Inference",
        "prod/Batch",
        "prod/Training",
        "prod/Analytics",
        "prod/Observability",
    ]
    assert all("--exclusively" in c and str(cdk_out) in c for c in deploys)
    with pytest.raises(SystemExit, match="stage 'qa' is not in"):
        commands(cdk_out, "qa")


def test_synth_fails_on_an_unreviewed_cdk_warning(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Probe")
    cdk.Annotations.of(stack).add_warning_v2("probe:warning", "a deprecated API was used")
    app.synth()
    assert any("a deprecated API was used" in line for line in cdk_annotations(tmp_path))


def test_the_real_app_has_no_cdk_warnings(cdk_out):
    assert cdk_annotations(cdk_out) == []
