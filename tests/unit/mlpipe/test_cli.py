"""The mlpipe command line: output, --json, exit codes."""

from __future__ import annotations

import json

import pytest

from local.emulator import apigateway as apigateway_ext
from mlpipe.cli import main
from tests.unit.conftest import PATH


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
    code = main(["--json", "--poll-seconds", "0", *argv], session=aws)
    captured = capsys.readouterr()
    return code, json.loads(captured.out or captured.err)


def test_deploy_weights_promote_rollback_status_through_the_cli(aws, inference_stack, rest_api, capsys):
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
    assert promoted["variants"]["ModelA"]["version"] == "v2"
    assert main(["models", "status"], session=aws) == 0
    assert "desired:  ModelA=v2@1, ModelB=v2@0" in capsys.readouterr().out
    # every verified change flushed the API cache: deploy, weights, rollback, promote
    assert apigateway_ext.flushes[rest_api] == 4


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
    assert main(["models", "unlock"], session=aws) == 0
    assert "lock released" in capsys.readouterr().out
