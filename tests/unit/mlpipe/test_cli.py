"""The mlpipe command line: output, --json, exit codes."""

from __future__ import annotations

import json
import re

import pytest

from mlpipe.cli import build_lifecycle, main, session_for
from mlpipe.registry import ModelRegistry
from mlpipe.stage import DEPLOY_FUNCTION, DIRECT, reconciler, registry_location
from shared.outputs import InferenceOutputs
from tests.unit.conftest import PATH, cache_generation


def test_register_list_show_history_through_the_cli(aws, data_stack, make_artifact, capsys):
    path = make_artifact("logreg", accuracy=0.96)
    assert main(["--stage", "local", "models", "register", str(path), "--version", "v1"], session=aws) == 0
    assert "registered v1 -> s3://" in capsys.readouterr().out
    assert main(["--stage", "local", "--json", "models", "list"], session=aws) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["metrics"]["accuracy"]) for r in listed] == [("v1", 0.96)]
    assert main(["--json", "models", "show", "v1"], session=aws) == 0
    assert json.loads(capsys.readouterr().out)["registered_by"].startswith("arn:aws:")
    assert main(["models", "history"], session=aws) == 0
    assert "registered   v1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stage", "qa", "models", "list"], "unknown stage 'qa'"),
        (["--stage", "dev", "models", "list"], "stack ml-pipeline-data-dev does not exist"),
        (["models", "show", "v9"], "v9 is not registered"),
        (["models", "show", "latest"], "must look like v1"),
    ],
)
def test_wrong_requests_exit_2_with_a_clear_message(aws, data_stack, capsys, argv, message):
    assert main(argv, session=aws) == 2
    assert message in capsys.readouterr().err


def test_json_errors_are_json(aws, data_stack, capsys):
    assert main(["--json", "models", "show", "v9"], session=aws) == 2
    assert "v9 is not registered" in json.loads(capsys.readouterr().err)["error"]


def test_invalid_artifact_exits_2(aws, data_stack, tmp_path, capsys):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"nope")
    assert main(["models", "register", str(bad), "--version", "v1"], session=aws) == 2
    assert "not a readable .tar.gz archive" in capsys.readouterr().err


def _run(aws, capsys, *argv):
    code = main([*argv, "--json", "--poll-seconds", "0"], session=aws)  # global options anywhere
    captured = capsys.readouterr()
    return code, json.loads(captured.out or captured.err)


def test_deploy_weights_promote_rollback_status_through_the_cli(
    aws, inference_stack, answer_cache_table, capsys
):
    code, deployed = _run(aws, capsys, "models", "deploy", "v2", "--variant", "ModelB", "--weight", "0.2")
    assert code == 0
    assert deployed["variants"]["ModelB"]["version"] == "v2"
    code, _ = _run(aws, capsys, "models", "weights", "A=0.6", "B=0.4")
    assert code == 0
    code, status = _run(aws, capsys, "models", "status")
    assert code == 0
    assert status["in_sync"] is True
    assert status["verified"]["variants"]["ModelB"]["weight"] == 0.4
    assert status["last_request"]["status"] == "succeeded"
    code, rolled = _run(aws, capsys, "models", "rollback")
    assert code == 0
    assert rolled["to"]["variants"]["ModelB"]["weight"] == 0.2
    code, promoted = _run(aws, capsys, "models", "promote")
    assert code == 0
    # inside the local stage's rollback grace period: all traffic to v2 where it runs, v1 kept at 0
    assert (promoted["variants"]["ModelB"]["version"], promoted["variants"]["ModelB"]["weight"]) == ("v2", 1)
    assert (promoted["variants"]["ModelA"]["version"], promoted["variants"]["ModelA"]["weight"]) == ("v1", 0)
    assert promoted["endpoint_config"] == rolled["to"]["endpoint_config"], "a weights update, no new config"
    assert main(["models", "status"], session=aws) == 0
    out = capsys.readouterr().out
    assert "desired:  ModelA=v1@0, ModelB=v2@1" in out
    assert "standby: v1 on ModelA at weight 0 until" in out
    assert "reconciled by: direct" in out  # this stack has no deploy function output
    code, retired = _run(aws, capsys, "models", "retire")
    assert code == 0
    assert {v["version"] for v in retired["variants"].values()} == {"v2"}
    assert retired["endpoint_config"] != promoted["endpoint_config"]
    # every verified change invalidated the answer cache: the generation is the latest request's
    assert cache_generation(answer_cache_table) == retired["request_id"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "weights", "A=0.7", "B=0.2"], "weights must sum to 1"),
        (["models", "deploy", "v9", "--weight", "0.1"], "v9 is not registered"),
        (["models", "promote"], "no challenger to promote"),
    ],
)
def test_lifecycle_refusals_exit_2(aws, inference_stack, capsys, argv, message):
    assert main(argv, session=aws) == 2
    assert message in capsys.readouterr().err


def test_lifecycle_commands_need_the_inference_stack(aws, data_stack, capsys):
    assert main(["models", "status"], session=aws) == 2
    assert "stack ml-pipeline-inference-local does not exist" in capsys.readouterr().err


def test_a_held_lock_refuses_the_deploy_and_unlock_releases_it(aws, inference_stack, capsys):
    aws.client("ssm").put_parameter(
        Name=f"{PATH}/deploy-lock",
        Value='{"request_id": "x", "actor": "bob", "started_at": "2026-11-24T11:59:00+00:00"}',
        Type="String",
    )
    assert main(["models", "deploy", "v2", "--weight", "0.1"], session=aws) == 2
    assert "another deployment holds the lock" in capsys.readouterr().err
    assert main(["models", "unlock"], session=aws) == 2, "not confirmed (stdin is not a terminal)"
    assert "held by request x by bob, started 2026-11-24T11:59:00+00:00" in capsys.readouterr().err
    assert main(["models", "unlock", "--yes"], session=aws) == 0
    assert "lock released (request x by bob" in capsys.readouterr().out


# ----- issue 12: one owner, options anywhere, region from config -----
def test_the_reconciler_is_the_deploy_function_where_the_stack_outputs_it_else_mlpipe():

    base = {InferenceOutputs.ENDPOINT_NAME: "e", InferenceOutputs.SAGEMAKER_EXECUTION_ROLE_ARN: "r"}
    assert reconciler(base) == DIRECT
    assert (
        reconciler({**base, InferenceOutputs.DEPLOY_FUNCTION_NAME: "ml-pipeline-deploy-dev"})
        == DEPLOY_FUNCTION
    )


def test_a_stage_with_the_deploy_function_is_reconciled_by_it_only(aws, inference_stack, capsys):
    """The CLI reads the owner from the outputs: with the function it writes and waits, never deploys."""

    cloudformation = aws.client("cloudformation")
    template = cloudformation.get_template(StackName="ml-pipeline-inference-local")["TemplateBody"]
    template["Outputs"]["DeployFunctionName"] = {"Value": "ml-pipeline-deploy-local"}
    cloudformation.update_stack(StackName="ml-pipeline-inference-local", TemplateBody=json.dumps(template))
    location = registry_location(cloudformation, "local")
    registry = ModelRegistry(location=location, s3=aws.client("s3"), ssm=aws.client("ssm"))
    lifecycle = build_lifecycle(aws, registry, stage="local", actor="alice")
    assert lifecycle.reconciler == "deploy-function"
    assert lifecycle.on_verified == [], "the function invalidates the answer cache, not mlpipe"
    # nobody answers here: mlpipe waits for its request, then gives up with the request named
    code = main(["models", "deploy", "v2", "--weight", "0.1", "--timeout-seconds", "0"], session=aws)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "desired state written; the stage's deploy function reconciles it" in err
    assert "has no verified outcome after 0s" in err
    sagemaker = aws.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName="ml-pipeline-endpoint-local-us-east-1")
    assert len(sagemaker.list_endpoint_configs()["EndpointConfigs"]) == 1, "mlpipe deployed nothing itself"
    assert endpoint["EndpointStatus"] == "InService"
    # its lock is still held for the function (it expires); a second request is refused, naming it
    assert main(["models", "deploy", "v2", "--weight", "0.5"], session=aws) == 2
    refused = capsys.readouterr().err
    assert re.search(r"another deployment holds the lock: request \w{12} by .+, started 20\d\d-", refused)
    assert main(["models", "finish"], session=aws) == 2, "only the function finishes deployments here"
    assert "this stage's deploy function finishes its deployments" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--stage", "local", "models", "list"],
        ["models", "list", "--json", "--stage", "local"],
        ["models", "--json", "list"],
    ],
)
def test_global_options_are_accepted_anywhere_on_the_line(aws, data_stack, capsys, argv):
    assert main(argv, session=aws) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_an_option_after_the_subcommand_overrides_the_one_before(aws, data_stack, capsys):
    assert main(["--stage", "local", "models", "list", "--stage", "qa"], session=aws) == 2
    assert "unknown stage 'qa'" in capsys.readouterr().err


def test_the_region_comes_from_the_stage_config_unless_the_environment_names_one(monkeypatch, tmp_path):

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert session_for("dev").region_name == "us-east-1"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert session_for("dev").region_name == "eu-west-1"
    monkeypatch.delenv("AWS_REGION")
    (tmp_path / "config").write_text("[profile ops]\nregion = ap-southeast-2\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "ops")
    assert session_for("dev").region_name == "ap-southeast-2"


def test_an_unknown_stage_is_refused_before_any_aws_setting_is_needed(monkeypatch, capsys):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["models", "list", "--stage", "qa"]) == 2
    assert "unknown stage 'qa'; known stages: dev, local, prod" in capsys.readouterr().err
