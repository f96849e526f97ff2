"""The mlpipe command line: output, --json, exit codes."""

from __future__ import annotations

import json

import pytest

from mlpipe.cli import main


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
