"""The training layer end to end on the running stage: triggers → the run → the gate → a challenger.

Each run is the real state machine: Validate, Preprocess and Evaluate are the deployed functions,
Train is the SageMaker job (on the local stage ``model/sagemaker_train.py`` as a process under the
container contract, ``local/emulator/sagemaker_training.py``), Register and DeployChallenger go
through ``mlpipe``'s registry and the deploy function, which completes the run's task token when
the endpoint is verified.

The data sets are the breast-cancer data the versions were trained on, changed the way real data
changes: as it is (a candidate equal to the champion: not deployed), with two of the champion's
strongest features turned to noise (a broken sensor: the values keep their distribution, so
validation passes, but the champion's ROC AUC falls and a retrained candidate wins), and poisoned
(every check of Validate fails at once).
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from model import data
from shared import training
from shared.config import get_config
from shared.outputs import TrainingOutputs
from tests.integration.conftest import Target, _outputs
from tools.bench_lifecycle import run_mlpipe

RUN_TIMEOUT_SECONDS = 600  # a local run takes ~40 s; the deploy of a challenger ~10 s more
# the features the champion (v1, logistic regression) weighs most; permuted they are noise
BROKEN_SENSORS = ("radius_error", "area_error")


@pytest.fixture(scope="module")
def outputs(target: Target) -> dict[str, str]:
    return _outputs(target.session, get_config(target.name).stack_name("training"))


@pytest.fixture
def local_only(target: Target) -> Target:
    if target.local is None:
        pytest.skip("changes the endpoint and emits events: local stage only")
    return target


def training_csv(*, noise: tuple[str, ...] = (), poison: bool = False) -> bytes:
    names, features, labels = data.load_arrays()
    rows: list[list[Any]] = []
    rng = np.random.default_rng(0)
    for name in noise:
        column = names.index(name)
        features[:, column] = rng.permutation(features[:, column])
    for row, label in zip(features, labels, strict=True):
        rows.append([repr(float(v)) for v in row] + [int(label)])
    header = [*names, training.TARGET_COLUMN]
    if poison:
        header[0], header[1] = header[1], header[0]  # columns out of order
        rows = rows[:150]  # too few rows
        rows[3][4] = "nan"
        rows[5][6] = "inf"
        rows[7][-1] = 2  # a target outside {0, 1}
        for row in rows:
            row[10] = repr(float(row[10]) * 1000)  # a unit change
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def put_data(target: Target, outputs: dict[str, str], body: bytes, name: str) -> str:
    key = f"{training.TRAINING_DATA_PREFIX}it-{uuid.uuid4().hex[:8]}-{name}.csv"
    target.session.client("s3").put_object(
        Bucket=outputs[TrainingOutputs.DATA_BUCKET_NAME], Key=key, Body=body
    )
    return key


def execution_for(target: Target, outputs: dict[str, str], data_key: str, since: datetime) -> dict[str, Any]:
    """The run started for ``data_key`` (by the S3 rule and the runs function), once it has ended."""
    sfn = target.session.client("stepfunctions")
    machine = outputs[TrainingOutputs.STATE_MACHINE_ARN]
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    arn = None
    while time.monotonic() < deadline:
        if arn is None:
            for execution in sfn.list_executions(stateMachineArn=machine, maxResults=100)["executions"]:
                if execution["startDate"] < since:
                    continue
                described = sfn.describe_execution(executionArn=execution["executionArn"])
                if json.loads(described["input"]).get("data_key") == data_key:
                    arn = execution["executionArn"]
        if arn is not None:
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return dict(described)
        time.sleep(1.0)
    pytest.fail(f"no finished run for {data_key} within {RUN_TIMEOUT_SECONDS} s")


def states_entered(target: Target, execution_arn: str) -> list[str]:
    history = target.session.client("stepfunctions").get_execution_history(
        executionArn=execution_arn, maxResults=1000
    )["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]


def run_item(target: Target, outputs: dict[str, str], run_id: str) -> dict[str, Any]:
    table = target.session.resource("dynamodb").Table(outputs[TrainingOutputs.METADATA_TABLE_NAME])
    return dict(table.get_item(Key=training.run_key(run_id), ConsistentRead=True)["Item"])


@pytest.fixture
def restored(local_only: Target) -> Iterator[Target]:
    """Leave the desired state as the stage started (ModelA=v1@0.8, ModelB=v2@0.2) for other tests."""
    yield local_only
    code, status, err, _ = run_mlpipe("models", "status")
    assert code == 0, err
    if status["desired"] != {"champion": "v1", "traffic": {"challenger": "v2", "challenger_weight": 0.2}}:
        code, _, err, _ = run_mlpipe("models", "deploy", "v2", "--variant", "ModelB", "--weight", "0.2")
        assert code == 0, err


def test_a_candidate_equal_to_the_champion_is_not_deployed_and_the_run_says_why(local_only, outputs):
    since = datetime.now(UTC) - timedelta(seconds=5)
    key = put_data(local_only, outputs, training_csv(), "as-trained")
    execution = execution_for(local_only, outputs, key, since)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    entered = states_entered(local_only, execution["executionArn"])
    assert entered[-2:] == ["RecordNotPromoted", "NotPromoted"]
    assert "Register" not in entered
    result = json.loads(execution["output"])
    assert result["evaluation"]["promote"] is False
    item = run_item(local_only, outputs, result["run_id"])
    assert item[training.STATUS_ATTRIBUTE] == "NOT_PROMOTED"
    assert item["reason"] == result["evaluation"]["reason"]
    assert "champion v1" in item["reason"]
    assert item["billableSeconds"] >= 0
    assert item["jobName"] == result["job_name"]


def test_a_run_on_data_with_broken_sensors_registers_and_deploys_a_challenger(restored, outputs):
    target = restored
    weight = get_config(target.name).training.challenger_weight
    since = datetime.now(UTC) - timedelta(seconds=5)
    key = put_data(target, outputs, training_csv(noise=BROKEN_SENSORS), "broken-sensors")
    execution = execution_for(target, outputs, key, since)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    entered = states_entered(target, execution["executionArn"])
    assert entered[-4:] == ["Register", "DeployChallenger", "RecordDeployed", "Deployed"]
    result = json.loads(execution["output"])
    evaluation = result["evaluation"]
    assert evaluation["promote"] is True, evaluation["reason"]
    assert evaluation["difference"]["roc_auc"] > 0
    version = result["registration"]["version"]
    assert version == result["model_version"]
    # the deploy function verified the endpoint and completed the task token with that state
    verified = result["deployment"]["verified"]
    assert verified["request_id"] == result["deployment"]["request_id"]
    assert verified["variants"]["ModelB"]["version"] == version
    assert verified["variants"]["ModelB"]["weight"] == pytest.approx(weight)
    code, status, err, _ = run_mlpipe("models", "status")
    assert code == 0, err
    assert status["in_sync"] is True
    assert status["verified"]["variants"]["ModelB"]["version"] == version
    # lineage: run -> version, version -> run, and the A/B configuration it asked for
    item = run_item(target, outputs, result["run_id"])
    assert item[training.STATUS_ATTRIBUTE] == "SUCCEEDED"
    assert item[training.MODEL_VERSION_ATTRIBUTE] == version
    table = target.session.resource("dynamodb").Table(outputs[TrainingOutputs.METADATA_TABLE_NAME])
    model = table.get_item(Key=training.model_key(version))["Item"]
    assert model["runId"] == result["run_id"]
    records = table.query(
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": training.AB_CONFIG_PARTITION},
    )["Items"]
    assert any(
        r["challenger"] == version and r["challengerWeight"] == Decimal(str(weight)) for r in records
    ), records


def test_poisoned_data_stops_at_validation_with_every_failed_check(local_only, outputs):
    since = datetime.now(UTC) - timedelta(seconds=5)
    key = put_data(local_only, outputs, training_csv(poison=True), "poisoned")
    execution = execution_for(local_only, outputs, key, since)
    assert execution["status"] == "FAILED"
    assert execution["error"] == "DataValidationFailed"
    entered = states_entered(local_only, execution["executionArn"])
    assert entered[-3:] == ["NotifyInvalidData", "RecordInvalidData", "DataInvalid"]
    assert "Preprocess" not in entered
    run_id = json.loads(execution["input"])["run_id"]
    report = json.loads(
        local_only.session.client("s3")
        .get_object(
            Bucket=outputs[TrainingOutputs.DATA_BUCKET_NAME],
            Key=training.validation_report_key(training.run_prefix(run_id)),
        )["Body"]
        .read()
    )
    failed = {c["check"] for c in report["checks"] if not c["passed"]}
    assert failed == {"header", "finite_numbers", "target_values", "min_rows", "feature_ranges"}, report
    item = run_item(local_only, outputs, run_id)
    assert item[training.STATUS_ATTRIBUTE] == "FAILED"
    for check in failed:
        assert check in item["reason"]


def test_a_drift_alarm_starts_a_run_and_a_second_trigger_meanwhile_is_skipped(local_only, outputs):
    config = get_config(local_only.name)
    dispatcher = local_only.local.dispatcher
    # the drift run trains on the newest data set: the data as trained, so it runs for the whole
    # training (tens of seconds: the schedule tick below surely comes during it) and ends not
    # promoted, without touching the endpoint; that upload's own run ends first
    since = datetime.now(UTC) - timedelta(seconds=5)
    key = put_data(local_only, outputs, training_csv(), "newest")
    assert execution_for(local_only, outputs, key, since)["status"] == "SUCCEEDED"
    alarm = config.drift_alarm_name("ModelA")
    now = datetime.now(UTC)
    event = {
        "version": "0",
        "id": f"it-{uuid.uuid4()}",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": config.account,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": config.region,
        "resources": [f"arn:aws:cloudwatch:{config.region}:{config.account}:alarm:{alarm}"],
        "detail": {"alarmName": alarm, "state": {"value": "ALARM"}, "previousState": {"value": "OK"}},
    }
    deliveries = dispatcher.emit(event)
    assert [d.outcome for d in deliveries] == ["succeeded"], deliveries
    schedule = dispatcher.run_schedule(outputs[TrainingOutputs.SCHEDULE_RULE_NAME])
    assert [d.outcome for d in schedule] == ["succeeded"], schedule
    table = local_only.session.resource("dynamodb").Table(outputs[TrainingOutputs.METADATA_TABLE_NAME])
    runs = table.query(
        IndexName=training.BY_EXPERIMENT_INDEX,
        KeyConditionExpression="experiment = :e AND startedAt >= :t",
        ExpressionAttributeValues={
            ":e": training.DEFAULT_EXPERIMENT,
            ":t": (now - timedelta(seconds=5)).isoformat(timespec="seconds"),
        },
    )["Items"]
    by_trigger = {r["trigger"]: r for r in runs}
    assert by_trigger["drift"][training.STATUS_ATTRIBUTE] == "RUNNING"
    assert by_trigger["schedule"][training.STATUS_ATTRIBUTE] == "SKIPPED"
    assert by_trigger["schedule"]["reason"] == f"skipped: run {by_trigger['drift']['runId']} in progress"
    # the drift run goes on to its end (not promoted) and releases the lock
    sfn = local_only.session.client("stepfunctions")
    arn = training.execution_arn(outputs[TrainingOutputs.STATE_MACHINE_ARN], by_trigger["drift"]["runId"])
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while (ended := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the drift run did not end"
        time.sleep(1.0)
    assert ended["status"] == "SUCCEEDED"
    assert json.loads(ended["input"])["data_key"] == key
    assert "Item" not in table.get_item(Key=training.LOCK_KEY, ConsistentRead=True)
