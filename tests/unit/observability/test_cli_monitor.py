"""``mlpipe monitor drift`` runs the monitor with the deployed function's settings."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime

import numpy as np

from mlpipe.cli import main
from shared.outputs import ObservabilityOutputs
from tests.unit.observability import test_monitor as helpers
from tests.unit.observability.baselines import draw
from tests.unit.observability.test_monitor import account, settings, store

__all__ = ["account"]  # the fixture


def deploy_function(aws, environment: dict[str, str]) -> None:
    iam = aws.client("iam")
    role = iam.create_role(RoleName="drift", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    aws.client("lambda").create_function(
        FunctionName="ml-pipeline-drift-monitor-local-us-east-1",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
        Environment={"Variables": environment},
    )
    template = {
        "Resources": {"Nothing": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            ObservabilityOutputs.DRIFT_FUNCTION_NAME: {"Value": "ml-pipeline-drift-monitor-local-us-east-1"}
        },
    }
    aws.client("cloudformation").create_stack(
        StackName="ml-pipeline-observability-local", TemplateBody=json.dumps(template)
    )


def test_monitor_drift_runs_the_monitor_on_demand(aws, account, capsys, monkeypatch):
    _, table, sqs, queue_url = account
    deploy_function(aws, {k: str(v) for k, v in settings().model_dump(by_alias=True).items()})
    # the command runs now: the stored window is relative to the real clock
    monkeypatch.setattr(helpers, "NOW", datetime.now(UTC))
    store(table, "ModelA", "v1", draw(np.random.default_rng(1), 600, shift={2: 1.0, 5: 1.0, 8: 1.0}))
    assert main(["--stage", "local", "--json", "monitor", "drift"], session=aws) == 0
    (model_a, model_b) = json.loads(capsys.readouterr().out)
    assert model_a["variant"] == "ModelA"
    assert model_a["samples"] == 600
    assert {"f02", "f05", "f08"} <= set(model_a["drifted"])
    assert model_b["scored"] is False
    assert "Messages" in sqs.receive_message(QueueUrl=queue_url)


def test_monitor_drift_without_the_stack_is_a_clear_error(aws, capsys):
    assert main(["--stage", "local", "monitor", "drift"], session=aws) != 0
    assert "ml-pipeline-observability-local does not exist" in capsys.readouterr().err
