"""``mlpipe train`` and ``mlpipe experiments``: runs started through the runs function, read back.

The runs function is the real one (``stacks.training.runtime.runs.handler``), reached through a
real Lambda ``Invoke`` of moto's account: ``local.emulator.stepfunctions`` answers Invoke of an
attached function in this process, as the local stage does. Its executions run in moto's Step
Functions interpreter, on a state machine shaped like the run's (a hold in ``Train``, a Fail named
as the run's).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from local.emulator import stepfunctions as emulator
from mlpipe import training as training_commands
from mlpipe.artifact import read_artifact
from mlpipe.cli import _parser, main
from mlpipe.errors import MlpipeError
from mlpipe.registry import ModelRegistry
from shared import training
from shared.outputs import TrainingOutputs
from stacks.training.runtime.runs import FinishRequest, Runs, Settings, StartRequest, handler
from tests.unit.conftest import BUCKET
from tests.unit.training.test_runs import create_metadata_table

STACK = "ml-pipeline-training-local"
DATA_BUCKET = "ml-pipeline-training-data-local"
TABLE = "ml-pipeline-training-local-us-east-1"
RUNS_FUNCTION = "ml-pipeline-training-runs-local-us-east-1"
MACHINE = "ml-pipeline-training-local-us-east-1"
CALLER = "arn:aws:sts::123456789012:user/moto"
NOW = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)
# the run's shape, routed on the input's "trigger" (every run input has one; moto's interpreter
# fails IsPresent on a missing path): "hold" waits in Train for "seconds", "fail" fails as the run's
# catch-all does, anything else (the runs function's "manual") goes straight through
DEFINITION = {
    "StartAt": "Validate",
    "States": {
        "Validate": {"Type": "Pass", "Next": "Route"},
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.trigger", "StringEquals": "fail", "Next": "RunFailed"},
                {"Variable": "$.trigger", "StringEquals": "hold", "Next": "Train"},
            ],
            "Default": "Deployed",
        },
        "Train": {"Type": "Wait", "SecondsPath": "$.seconds", "Next": "Evaluate"},
        "Evaluate": {"Type": "Pass", "Next": "Deployed"},
        "RunFailed": {
            "Type": "Fail",
            "Error": "TrainingRunFailed",
            "Cause": "A step of the run failed; see NotifyRunFailed",
        },
        "Deployed": {"Type": "Succeed"},
    },
}


@pytest.fixture
def registry(aws, data_stack, make_artifact) -> None:
    """v1 and v2 registered: the runs function's candidate is v3."""
    registry = ModelRegistry(location=data_stack, s3=aws.client("s3"), ssm=aws.client("ssm"))
    for version, name in (("v1", "logreg"), ("v2", "boosting")):
        registry.register(read_artifact(make_artifact(name)), version, actor="ci")


@pytest.fixture
def account(aws, registry, lambda_context, monkeypatch) -> Iterator[dict[str, Any]]:
    """The training stack as the CLI sees it: outputs, table, bucket, state machine, runs function."""
    emulator.install()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=DATA_BUCKET)
    s3.put_object(Bucket=DATA_BUCKET, Key=f"{training.TRAINING_DATA_PREFIX}2026-11.csv", Body=b"a,b\n")
    s3.put_object(Bucket=DATA_BUCKET, Key=f"{training.TRAINING_DATA_PREFIX}2026-12.csv", Body=b"a,b\n")
    s3.put_object(Bucket=DATA_BUCKET, Key="batch/input/2026-12.csv", Body=b"a,b\n")
    table = create_metadata_table(aws, TABLE)
    role = aws.client("iam").create_role(RoleName="training", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    states = aws.client("stepfunctions")
    machine = states.create_state_machine(name=MACHINE, definition=json.dumps(DEFINITION), roleArn=role)[
        "stateMachineArn"
    ]
    aws.client("lambda").create_function(
        FunctionName=RUNS_FUNCTION,
        Runtime="python3.11",
        Role=role,
        Handler="stacks.training.runtime.runs.handler",
        Code={"ZipFile": b"run in this process"},
    )
    environment = {
        "STAGE": "local",
        "DATA_BUCKET": DATA_BUCKET,
        "MODEL_BUCKET": BUCKET,
        "METADATA_TABLE": TABLE,
        "STATE_MACHINE_ARN": machine,
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("stacks.training.runtime.runs.boto3.session.Session", lambda: aws)
    emulator.attach(
        functions={RUNS_FUNCTION: lambda _name, event: handler(event, lambda_context)}, job_runner=None
    )
    deploy_stack(aws, machine)
    yield {
        "table": table,
        "machine": machine,
        "states": states,
        "runs": Runs(Settings.from_environment(environment), aws, clock=lambda: NOW),
    }
    emulator.detach()
    for execution in states.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"]:
        states.stop_execution(executionArn=execution["executionArn"])


def deploy_stack(aws, machine: str, *, without: str | None = None) -> None:
    values = {
        TrainingOutputs.STATE_MACHINE_ARN: machine,
        TrainingOutputs.METADATA_TABLE_NAME: TABLE,
        TrainingOutputs.RUNS_FUNCTION_NAME: RUNS_FUNCTION,
        TrainingOutputs.DATA_BUCKET_NAME: DATA_BUCKET,
        TrainingOutputs.DATA_PREFIX: training.TRAINING_DATA_PREFIX,
    }
    template = {
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic", "Properties": {}}},
        "Outputs": {key: {"Value": value} for key, value in values.items() if key != without},
    }
    aws.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))


def cli(aws, capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--stage", "local", *argv], session=aws)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def executions(account: dict[str, Any]) -> list[dict[str, Any]]:
    return cast(
        list[dict[str, Any]],
        account["states"].list_executions(stateMachineArn=account["machine"])["executions"],
    )


def run_items(account: dict[str, Any]) -> list[dict[str, Any]]:
    items = account["table"].scan()["Items"]
    return [item for item in items if item[training.SORT_KEY] == training.RUN_ITEM_SORT]


START_KEYS = {
    "started",
    "run_id",
    "execution_arn",
    "model_version",
    "reason",
    "requested_by",
    "data_key",
    "tune",
    "experiment",
}
STATUS_KEYS = {
    "run_id",
    "status",
    "experiment",
    "trigger",
    "requested_by",
    "started_at",
    "finished_at",
    "data_key",
    "tune",
    "decision",
    "reason",
    "run_error",
    "candidate_version",
    "model_version",
    "job_name",
    "tuning_job_name",
    "billable_seconds",
    "metrics",
    "evaluation",
    "execution",
}
EXECUTION_KEYS = {"arn", "status", "started_at", "stopped_at", "current_state", "error", "cause"}


# ----- train start -----
def test_start_asks_the_runs_function_which_starts_the_run_on_the_newest_data(aws, account, capsys):
    code, out, _ = cli(aws, capsys, "train", "start", "--json")
    assert code == 0
    started = json.loads(out)
    assert set(started) == START_KEYS
    assert started["started"] is True
    assert started["run_id"].startswith("manual-")
    assert started["model_version"] == "v3", "v1 and v2 are registered"
    assert started["requested_by"] == CALLER
    assert started["experiment"] == training.DEFAULT_EXPERIMENT
    assert started["data_key"] is None, "the function chose the data"
    (execution,) = executions(account)
    assert execution["executionArn"] == started["execution_arn"]
    assert execution["name"] == started["run_id"]
    (item,) = run_items(account)
    assert item["requestedBy"] == CALLER
    assert item["dataKey"] in {
        f"{training.TRAINING_DATA_PREFIX}{name}.csv" for name in ("2026-11", "2026-12")
    }
    assert account["table"].get_item(Key=training.LOCK_KEY)["Item"]["runId"] == started["run_id"]


def test_start_passes_the_data_the_experiment_and_tuning(aws, account, capsys):
    key = f"{training.TRAINING_DATA_PREFIX}2026-11.csv"
    code, out, _ = cli(
        aws,
        capsys,
        "train",
        "start",
        "--tune",
        "--data",
        f"s3://{DATA_BUCKET}/{key}",
        "--experiment",
        "deeper-trees",
    )
    assert code == 0
    (item,) = run_items(account)
    assert (item["dataKey"], item["tune"], item[training.EXPERIMENT_ATTRIBUTE]) == (key, True, "deeper-trees")
    assert f"started run {item['runId']} (experiment deeper-trees, candidate v3, tuning)" in out
    assert f"execution {training.execution_arn(account['machine'], item['runId'])}" in out
    assert f"mlpipe --stage local train status {item['runId']} --wait" in out


def test_a_key_alone_names_the_data_in_the_stages_bucket(aws, account, capsys):
    key = f"{training.TRAINING_DATA_PREFIX}2026-11.csv"
    code, out, _ = cli(aws, capsys, "--json", "train", "start", "--data", key)
    assert code == 0
    assert json.loads(out)["data_key"] == key
    (item,) = run_items(account)
    assert item["dataKey"] == key


def test_a_start_during_a_run_is_skipped_exit_2_naming_the_run(aws, account, capsys):
    _, first, _ = cli(aws, capsys, "--json", "train", "start")
    holder = json.loads(first)["run_id"]
    code, _, err = cli(aws, capsys, "train", "start", "--json")
    assert code == 2
    answer = json.loads(err)
    assert answer["started"] is False
    assert answer["reason"] == f"skipped: run {holder} in progress"
    assert answer["error"] == f"run {answer['run_id']} not started: skipped: run {holder} in progress"
    assert set(answer) == START_KEYS | {"error"}
    assert len(executions(account)) == 1
    code, _, err = cli(aws, capsys, "train", "start")
    assert code == 2
    assert f"skipped: run {holder} in progress" in err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            f"s3://other-bucket/{training.TRAINING_DATA_PREFIX}x.csv",
            "not in the stage's training data bucket",
        ),
        (f"s3://{DATA_BUCKET}/batch/input/2026-12.csv", f"is not under {training.TRAINING_DATA_PREFIX}"),
        ("batch/input/2026-12.csv", f"is not under {training.TRAINING_DATA_PREFIX}"),
        (training.TRAINING_DATA_PREFIX, f"is not under {training.TRAINING_DATA_PREFIX}"),
        (f"{training.TRAINING_DATA_PREFIX}notes.txt", "is not a CSV file name"),
        (f"https://{DATA_BUCKET}/{training.TRAINING_DATA_PREFIX}x.csv", "neither s3://"),
        (f"{training.TRAINING_DATA_PREFIX}missing.csv", "there is no object s3://"),
    ],
)
def test_bad_data_exits_2_and_starts_nothing(aws, account, capsys, data, message):
    code, _, err = cli(aws, capsys, "train", "start", "--data", data, "--json")
    assert code == 2
    error = json.loads(err)["error"]
    assert error.startswith("--data: ")
    assert message in error
    assert executions(account) == []
    assert run_items(account) == []


def test_a_bad_experiment_name_exits_2_and_starts_nothing(aws, account, capsys):
    code, _, err = cli(aws, capsys, "train", "start", "--experiment", "Deeper Trees")
    assert code == 2
    assert "--experiment: 'Deeper Trees' must be" in err
    assert executions(account) == []


def test_a_function_error_exits_1_with_its_type_and_message(aws, account, capsys):
    aws.client("dynamodb").delete_table(TableName=TABLE)
    code, _, err = cli(aws, capsys, "train", "start", "--json")
    assert code == 1
    answer = json.loads(err)
    assert answer["error_type"] == "ResourceNotFoundException"
    assert answer["error"].startswith(
        f"the runs function {RUNS_FUNCTION} failed: ResourceNotFoundException: "
    )
    assert executions(account) == []


def test_the_caller_is_unknown_when_sts_does_not_answer():
    class NoIdentity:
        def client(self, name: str) -> Any:
            class Sts:
                def get_caller_identity(self) -> Any:
                    from botocore.exceptions import NoCredentialsError  # noqa: PLC0415

                    raise NoCredentialsError

            return Sts()

    assert training_commands.caller(NoIdentity()) == "unknown"


# ----- train status -----
def record(account: dict[str, Any], run_id: str, outcome: str, seconds: int = 0) -> None:
    """A run as the runs function records a start (the item runs.py writes), and its execution."""
    run_input = {
        "run_id": run_id,
        "tune": False,
        "model_version": "v3",
        "job_name": training.training_job_name("local", run_id),
        "tuning_job_name": training.tuning_job_name("local", run_id),
    }
    account["table"].put_item(
        Item={
            **training.run_key(run_id),
            "runId": run_id,
            "trigger": "manual",
            training.EXPERIMENT_ATTRIBUTE: "exp",
            training.STARTED_AT_ATTRIBUTE: NOW.isoformat(timespec="seconds"),
            "requestedBy": "alice",
            "tune": False,
            "dataKey": f"{training.TRAINING_DATA_PREFIX}2026-12.csv",
            training.STATUS_ATTRIBUTE: "RUNNING",
            "candidateVersion": "v3",
            "input": run_input,
        }
    )
    account["states"].start_execution(
        stateMachineArn=account["machine"],
        name=run_id,
        input=json.dumps({**run_input, "trigger": outcome, "seconds": seconds}),
    )


def in_state(account: dict[str, Any], run_id: str, state: str) -> None:
    arn = training.execution_arn(account["machine"], run_id)
    deadline = time.monotonic() + 10
    while training_commands.current_state(account["states"], arn) != state:
        assert time.monotonic() < deadline, f"{run_id} never reached {state}"
        time.sleep(0.02)


def finish(account: dict[str, Any], run_id: str, status: str, **fields: Any) -> None:
    account["runs"].finish(
        FinishRequest.model_validate({"action": "finish", "run_id": run_id, "status": status, **fields})
    )


TRAINED = {
    "job_name": "mlp-local-run-ok",
    "billable_seconds": 41,
    "metrics": [
        {"MetricName": "validation:roc_auc", "Value": 0.991, "Timestamp": "2026-12-03T03:05:00Z"},
        {"MetricName": "train:log_loss", "Value": 0.12, "Timestamp": "2026-12-03T03:05:00Z"},
    ],
}
EVALUATION = {
    "promote": True,
    "reason": "candidate ROC AUC 0.9931 vs champion v2 0.9901: higher and within the 0.01 margin",
    "candidate": {"job_name": "mlp-local-run-ok", "model_version": "v3", "roc_auc": 0.9931},
    "champion": {"version": "v2", "roc_auc": 0.9901},
    "difference": {"roc_auc": 0.003, "interval": [-0.004, 0.0085]},
    "evaluation_key": "training/runs/run-ok/evaluation.json",
}


def test_status_of_a_running_run_names_the_state_it_is_in(aws, account, capsys):
    record(account, "run-holding", "hold", seconds=30)
    code, out, _ = cli(aws, capsys, "--json", "train", "status", "run-holding")
    assert code == 0
    run = json.loads(out)
    assert set(run) == STATUS_KEYS
    assert set(run["execution"]) == EXECUTION_KEYS
    assert (run["status"], run["execution"]["status"], run["execution"]["current_state"]) == (
        "RUNNING",
        "RUNNING",
        "Train",
    )
    assert run["candidate_version"] == "v3"
    assert run["execution"]["arn"] == training.execution_arn(account["machine"], "run-holding")
    code, out, _ = cli(aws, capsys, "train", "status", "run-holding")
    assert code == 0
    assert out.splitlines()[:2] == [
        "run run-holding: RUNNING (execution RUNNING, in state Train)",
        "  experiment exp, trigger manual, by alice",
    ]


def test_status_of_a_deployed_run_shows_decision_metrics_jobs_and_versions(aws, account, capsys):
    record(account, "run-ok", "done")
    finish(
        account,
        "run-ok",
        "SUCCEEDED",
        reason=EVALUATION["reason"],
        model_version="v3",
        details={"training": TRAINED, "evaluation": EVALUATION},
    )
    code, out, _ = cli(aws, capsys, "train", "status", "run-ok", "--wait", "--poll-seconds", "0.05", "--json")
    assert code == 0
    run = json.loads(out)
    assert run["execution"]["status"] == "SUCCEEDED"
    assert run["execution"]["current_state"] is None
    assert (run["status"], run["decision"], run["model_version"]) == ("SUCCEEDED", "deployed", "v3")
    assert run["metrics"] == {"validation:roc_auc": 0.991, "train:log_loss": 0.12}
    assert (run["job_name"], run["billable_seconds"]) == ("mlp-local-run-ok", 41)
    assert run["evaluation"]["candidate"]["roc_auc"] == 0.9931
    code, out, _ = cli(aws, capsys, "train", "status", "run-ok")
    assert code == 0
    assert out.splitlines()[0] == "run run-ok: SUCCEEDED (execution SUCCEEDED)"
    assert out.splitlines()[4:9] == [
        "  candidate v3, registered v3",
        f"  decision deployed: {EVALUATION['reason']}",
        "  jobs training mlp-local-run-ok; billable 41 s",
        "  metrics train:log_loss=0.1200  validation:roc_auc=0.9910",
        "  evaluation: candidate ROC AUC 0.9931 vs champion v2 0.9901 (Δ +0.0030)",
    ]


def test_status_of_a_run_not_promoted_is_a_success_with_its_reason(aws, account, capsys):
    record(account, "run-worse", "done")
    finish(
        account, "run-worse", "NOT_PROMOTED", reason="lower than the champion", details={"training": TRAINED}
    )
    code, out, _ = cli(aws, capsys, "train", "status", "run-worse", "--wait", "--poll-seconds", "0.05")
    assert code == 0
    assert "decision not promoted: lower than the champion" in out
    assert "registered -" in out


def test_status_of_a_failed_run_exits_1_with_the_error(aws, account, capsys):
    record(account, "run-bad", "fail")
    finish(
        account, "run-bad", "FAILED", error="DataValidationFailed", reason="the data failed validation: [...]"
    )
    code, _, err = cli(
        aws, capsys, "--json", "train", "status", "run-bad", "--wait", "--poll-seconds", "0.05"
    )
    assert code == 1
    answer = json.loads(err)
    assert set(answer) == STATUS_KEYS | {"error"}
    assert answer["error"].startswith("run run-bad: execution FAILED\n")
    assert (answer["execution"]["error"], answer["decision"]) == ("TrainingRunFailed", "failed")
    assert answer["run_error"] == "DataValidationFailed"
    assert answer["reason"] == "the data failed validation: [...]"
    code, _, err = cli(aws, capsys, "train", "status", "run-bad")
    assert code == 1
    assert "TrainingRunFailed: A step of the run failed" in err


def test_status_of_an_aborted_run_exits_1(aws, account, capsys):
    record(account, "run-stopped", "hold", seconds=30)
    in_state(account, "run-stopped", "Train")  # moto cannot stop an execution its worker has not begun
    account["states"].stop_execution(executionArn=training.execution_arn(account["machine"], "run-stopped"))
    code, _, err = cli(aws, capsys, "train", "status", "run-stopped")
    assert code == 1
    assert "error: run run-stopped: execution ABORTED" in err
    assert "run run-stopped: RUNNING (execution ABORTED)" in err, "the item was never finished"


def test_status_waits_until_the_execution_ends(aws, account, capsys):
    record(account, "run-short", "hold", seconds=1)
    code, out, _ = cli(
        aws, capsys, "--json", "train", "status", "run-short", "--wait", "--poll-seconds", "0.05"
    )
    assert code == 0
    assert json.loads(out)["execution"]["status"] == "SUCCEEDED"


def test_a_wait_that_times_out_exits_1_and_says_where_the_run_is(aws, account, capsys):
    record(account, "run-long", "hold", seconds=30)
    code, _, err = cli(
        aws,
        capsys,
        "train",
        "status",
        "run-long",
        "--wait",
        "--poll-seconds",
        "0.05",
        "--timeout-seconds",
        "0.3",
    )
    assert code == 1
    assert "run run-long has not ended after 0 s (execution RUNNING in state Train)" in err


def test_status_backs_off_while_it_waits(aws, account):
    record(account, "run-poll", "hold", seconds=30)
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    args = main_args(
        "train", "status", "run-poll", "--wait", "--poll-seconds", "2", "--timeout-seconds", "100"
    )
    with pytest.raises(MlpipeError, match="has not ended after 100 s"):
        training_commands.status(args, aws, sleep=sleep, clock=lambda: now[0])
    assert slept[:4] == [2.0, 3.0, 4.5, 6.75]
    assert max(slept) == training_commands.MAX_POLL_SECONDS


def main_args(*argv: str) -> Any:
    return _parser().parse_args(["--stage", "local", *argv])


def test_a_skipped_run_has_no_execution_and_is_not_a_failure(aws, account, capsys):
    _, first, _ = cli(aws, capsys, "--json", "train", "start")
    _, _, err = cli(aws, capsys, "--json", "train", "start")
    skipped = json.loads(err)["run_id"]
    code, out, _ = cli(aws, capsys, "--json", "train", "status", skipped, "--wait")
    assert code == 0
    run = json.loads(out)
    assert (run["status"], run["execution"]) == ("SKIPPED", None)
    assert run["reason"] == f"skipped: run {json.loads(first)['run_id']} in progress"


@pytest.mark.parametrize(
    ("run_id", "message"), [("run-nobody", "no run 'run-nobody'"), ("Run 1", "is not a run id")]
)
def test_an_unknown_run_exits_2(aws, account, capsys, run_id, message):
    code, _, err = cli(aws, capsys, "train", "status", run_id)
    assert code == 2
    assert message in err


# ----- experiments -----
def started_run(aws, account: dict[str, Any], experiment: str, hours: int, status: str, **fields: Any) -> str:
    """A run of ``experiment`` started ``hours`` after NOW by the runs function, then finished."""
    runs = Runs(account["runs"].settings, aws, clock=lambda: NOW + timedelta(hours=hours))
    started = runs.start(
        StartRequest(
            trigger="manual",
            experiment=experiment,
            request_id=f"{experiment}-{hours}",
            requested_at=NOW + timedelta(hours=hours),
        )
    )
    runs.finish(
        FinishRequest.model_validate(
            {"action": "finish", "run_id": started["run_id"], "status": status, **fields}
        )
    )
    return str(started["run_id"])


@pytest.fixture
def history(aws, account) -> dict[str, list[str]]:
    deep = [
        started_run(
            aws,
            account,
            "deeper-trees",
            1,
            "NOT_PROMOTED",
            reason="lower",
            details={"evaluation": {**EVALUATION, "candidate": {"roc_auc": 0.98}}},
        ),
        started_run(
            aws,
            account,
            "deeper-trees",
            2,
            "SUCCEEDED",
            model_version="v3",
            details={"evaluation": EVALUATION},
        ),
        started_run(aws, account, "deeper-trees", 3, "FAILED", error="DataValidationFailed"),
    ]
    base = [started_run(aws, account, training.DEFAULT_EXPERIMENT, 4, "NOT_PROMOTED", reason="equal")]
    return {"deeper-trees": deep, training.DEFAULT_EXPERIMENT: base}


def test_experiments_list_counts_runs_and_names_the_last(aws, account, history, capsys):
    code, out, _ = cli(aws, capsys, "--json", "experiments", "list")
    assert code == 0
    listed = json.loads(out)["experiments"]
    assert [e["name"] for e in listed] == ["deeper-trees", training.DEFAULT_EXPERIMENT]
    deep = listed[0]
    assert set(deep) == {"name", "created_at", "runs", "by_status", "last_run"}
    assert deep["runs"] == 3
    assert deep["by_status"] == {"FAILED": 1, "NOT_PROMOTED": 1, "SUCCEEDED": 1}
    assert deep["last_run"]["run_id"] == history["deeper-trees"][-1]
    assert deep["created_at"] == (NOW + timedelta(hours=1)).isoformat(timespec="seconds")
    code, out, _ = cli(aws, capsys, "experiments", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["EXPERIMENT", "RUNS", "BY", "STATUS", "LAST", "RUN", "STARTED", "STATUS"]
    assert lines[2].startswith("deeper-trees")
    assert "FAILED 1, NOT_PROMOTED 1, SUCCEEDED 1" in lines[2]
    assert history["deeper-trees"][-1] in lines[2]


def test_an_experiment_whose_only_run_was_skipped_is_listed_too(aws, account, capsys):
    cli(aws, capsys, "train", "start")  # holds the lock
    code, _, _ = cli(aws, capsys, "train", "start", "--experiment", "wider-trees")
    assert code == 2
    assert "Item" not in account["table"].get_item(Key=training.experiment_key("wider-trees"))
    code, out, _ = cli(aws, capsys, "--json", "experiments", "list")
    assert code == 0
    listed = {e["name"]: e for e in json.loads(out)["experiments"]}
    assert set(listed) == {training.DEFAULT_EXPERIMENT, "wider-trees"}
    assert (listed["wider-trees"]["created_at"], listed["wider-trees"]["by_status"]) == (None, {"SKIPPED": 1})
    code, out, _ = cli(aws, capsys, "experiments", "show", "wider-trees")
    assert code == 0
    assert "experiment wider-trees: created -; 1 run(s)" in out


def test_experiments_show_lists_runs_newest_first_with_auc_and_version(aws, account, history, capsys):
    code, out, _ = cli(aws, capsys, "--json", "experiments", "show", "deeper-trees")
    assert code == 0
    shown = json.loads(out)
    assert set(shown) == {"name", "created_at", "runs"}
    runs = shown["runs"]
    assert [r["run_id"] for r in runs] == history["deeper-trees"][::-1]
    assert set(runs[0]) == {
        "run_id",
        "started_at",
        "status",
        "decision",
        "candidate_version",
        "model_version",
        "roc_auc",
        "trigger",
        "reason",
    }
    assert [(r["status"], r["decision"], r["model_version"], r["roc_auc"]) for r in runs] == [
        ("FAILED", "failed", None, None),
        ("SUCCEEDED", "deployed", "v3", 0.9931),
        ("NOT_PROMOTED", "not promoted", None, 0.98),
    ]
    code, out, _ = cli(aws, capsys, "experiments", "show", "deeper-trees", "--limit", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("experiment deeper-trees: created ")
    assert "2 run(s), newest first" in lines[0]
    assert lines[3].split()[2:] == ["FAILED", "failed", "(v3)", "-"]
    assert lines[4].split()[2:] == ["SUCCEEDED", "deployed", "v3", "0.9931"]
    assert len(lines) == 5, "the title, the header, its rule and two runs"


def test_an_unknown_experiment_exits_2_naming_the_known_ones(aws, account, history, capsys):
    code, _, err = cli(aws, capsys, "experiments", "show", "wider-trees")
    assert code == 2
    assert (
        f"no experiment 'wider-trees' in {TABLE}; experiments: deeper-trees, {training.DEFAULT_EXPERIMENT}"
        in err
    )


def test_no_experiments_yet(aws, account, capsys):
    code, out, _ = cli(aws, capsys, "--json", "experiments", "list")
    assert (code, json.loads(out)) == (0, {"experiments": []})


@pytest.mark.parametrize("limit", ["0", "-1", "many"])
def test_the_limit_is_a_positive_number(aws, capsys, limit):
    with pytest.raises(SystemExit) as exited:
        main(["experiments", "show", "x", "--limit", limit], session=aws)
    assert exited.value.code == 2


# ----- the stage -----
@pytest.mark.parametrize(
    "argv",
    [["train", "start"], ["train", "status", "run-1"], ["experiments", "list"], ["experiments", "show", "x"]],
)
def test_a_stage_without_the_training_stack_exits_2_naming_it(aws, capsys, argv):
    code, _, err = cli(aws, capsys, "--json", *argv)
    assert code == 2
    assert f"stack {STACK} does not exist" in json.loads(err)["error"]


def test_a_training_stack_without_an_output_exits_2_naming_it(aws, capsys):
    deploy_stack(
        aws,
        "arn:aws:states:us-east-1:123456789012:stateMachine:m",
        without=TrainingOutputs.RUNS_FUNCTION_NAME,
    )
    code, _, err = cli(aws, capsys, "train", "start")
    assert code == 2
    assert f"stack {STACK} has no output {TrainingOutputs.RUNS_FUNCTION_NAME}" in err


def test_a_runs_execution_is_named_by_its_run_id():
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:ml-pipeline-training-local-us-east-1"
    assert training.execution_arn(machine, "run-1") == (
        "arn:aws:states:us-east-1:123456789012:execution:ml-pipeline-training-local-us-east-1:run-1"
    )
    with pytest.raises(ValueError, match="is not a state machine ARN"):
        training.execution_arn("arn:aws:lambda:us-east-1:123456789012:function:f", "run-1")
