"""The runs function: triggers → one run at a time (the lock), deterministic run ids, outcomes recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlpipe.errors import ConflictError
from shared import training
from shared.config import get_config
from stacks.training.runtime.register import DeployRequest, RegisterRequest, Registrar
from stacks.training.runtime.register import Settings as RegisterSettings
from stacks.training.runtime.runs import (
    FinishRequest,
    InvalidRunInputError,
    Runs,
    Settings,
    StartRequest,
    handler,
    run_id_for,
    start_request,
)
from tests.unit.conftest import BUCKET, ENDPOINT, IMAGE, PATH, ROLE

CONFIG = get_config("local")
DATA_BUCKET = "training-data-bucket"
TABLE = "training-metadata"
MACHINE = "ml-pipeline-training-local-us-east-1"
DRIFT_ALARMS = frozenset(CONFIG.drift_alarm_name(v.name) for v in CONFIG.inference.variants)
NOW = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)


def create_metadata_table(session: Any, name: str = TABLE) -> Any:
    """The table as stacks/training/metadata.py declares it (keys and indexes from shared.training)."""
    attributes = [
        training.PARTITION_KEY,
        training.SORT_KEY,
        training.EXPERIMENT_ATTRIBUTE,
        training.STARTED_AT_ATTRIBUTE,
        training.STATUS_ATTRIBUTE,
        training.MODEL_VERSION_ATTRIBUTE,
    ]

    def index(name: str, hash_key: str, range_key: str | None = None) -> dict[str, Any]:
        keys = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            keys.append({"AttributeName": range_key, "KeyType": "RANGE"})
        return {"IndexName": name, "KeySchema": keys, "Projection": {"ProjectionType": "ALL"}}

    client = session.client("dynamodb")
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        KeySchema=[
            {"AttributeName": training.PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": training.SORT_KEY, "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            index(training.BY_EXPERIMENT_INDEX, training.EXPERIMENT_ATTRIBUTE, training.STARTED_AT_ATTRIBUTE),
            index(training.BY_STATUS_INDEX, training.STATUS_ATTRIBUTE, training.STARTED_AT_ATTRIBUTE),
            index(training.BY_MODEL_VERSION_INDEX, training.MODEL_VERSION_ATTRIBUTE),
        ],
    )
    return session.resource("dynamodb").Table(name)


@pytest.fixture
def account(aws, stage):
    """v1 and v2 registered (the stage fixture), a data bucket with training data, the table, a machine."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=DATA_BUCKET)
    s3.put_object(Bucket=DATA_BUCKET, Key=f"{training.TRAINING_DATA_PREFIX}old.csv", Body=b"a,b\n")
    s3.put_object(Bucket=DATA_BUCKET, Key=f"{training.TRAINING_DATA_PREFIX}notes.txt", Body=b"not data")
    s3.put_object(Bucket=DATA_BUCKET, Key=f"{training.TRAINING_DATA_PREFIX}new.csv", Body=b"a,b\n")
    table = create_metadata_table(aws)
    iam = aws.client("iam")
    role = iam.create_role(RoleName="machine", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    machine = aws.client("stepfunctions").create_state_machine(
        name=MACHINE,
        roleArn=role,
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    settings = Settings.from_environment(
        {
            "STAGE": "local",
            "DATA_BUCKET": DATA_BUCKET,
            "MODEL_BUCKET": BUCKET,
            "METADATA_TABLE": TABLE,
            "STATE_MACHINE_ARN": machine,
        }
    )
    return settings, table


def scheduled(event_id: str = "event-1", time: str = "2026-12-03T03:00:00Z") -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": time,
        "detail": {},
    }


def alarm(name: str, state: str) -> dict[str, Any]:
    return {
        "id": f"alarm-{state}",
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "time": "2026-12-03T05:00:00Z",
        "detail": {"alarmName": name, "state": {"value": state}},
    }


def created(key: str) -> dict[str, Any]:
    return {
        "id": "s3-1",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2026-12-03T06:00:00Z",
        "detail": {"bucket": {"name": DATA_BUCKET}, "object": {"key": key, "size": 4}},
    }


def test_a_schedule_starts_a_run_on_the_newest_csv_with_the_next_version(aws, account):
    settings, table = account
    runs = Runs(settings, aws, clock=lambda: NOW)
    request = start_request(scheduled(), DRIFT_ALARMS)
    assert request is not None
    started = runs.start(request)
    assert started["started"] is True
    assert started["model_version"] == "v3", "v1 and v2 are registered"
    run_id = started["run_id"]
    assert run_id == run_id_for(request)
    assert run_id.startswith("schedule-20261203t030000-")
    assert training.RUN_ID_PATTERN.match(run_id)
    execution = aws.client("stepfunctions").describe_execution(executionArn=started["execution_arn"])
    run_input = json.loads(execution["input"])
    assert run_input["data_key"] == f"{training.TRAINING_DATA_PREFIX}new.csv"
    assert run_input["job_name"] == training.training_job_name("local", run_id)
    assert len(run_input["tuning_job_name"]) <= 32
    assert (
        run_input["output_uri"] == f"s3://{DATA_BUCKET}/{training.output_prefix(training.run_prefix(run_id))}"
    )
    item = table.get_item(Key=training.run_key(run_id))["Item"]
    assert item[training.STATUS_ATTRIBUTE] == "RUNNING"
    assert item[training.EXPERIMENT_ATTRIBUTE] == training.DEFAULT_EXPERIMENT
    assert table.get_item(Key=training.LOCK_KEY)["Item"]["runId"] == run_id
    assert "Item" in table.get_item(Key=training.experiment_key(training.DEFAULT_EXPERIMENT))


def test_a_trigger_during_a_run_is_recorded_as_skipped_and_starts_nothing(aws, account):
    settings, table = account
    runs = Runs(settings, aws, clock=lambda: NOW)
    first = runs.start(start_request(scheduled("event-1"), DRIFT_ALARMS))  # type: ignore[arg-type]
    second = runs.start(start_request(alarm(sorted(DRIFT_ALARMS)[0], "ALARM"), DRIFT_ALARMS))  # type: ignore[arg-type]
    assert second["started"] is False
    assert second["reason"] == f"skipped: run {first['run_id']} in progress"
    skipped = table.get_item(Key=training.run_key(second["run_id"]))["Item"]
    assert skipped[training.STATUS_ATTRIBUTE] == "SKIPPED"
    executions = aws.client("stepfunctions").list_executions(stateMachineArn=settings.state_machine_arn)
    assert len(executions["executions"]) == 1


def test_a_redelivered_event_starts_no_second_run(aws, account):
    settings, _ = account
    runs = Runs(settings, aws, clock=lambda: NOW)
    first = runs.start(start_request(scheduled("event-1"), DRIFT_ALARMS))  # type: ignore[arg-type]
    again = runs.start(start_request(scheduled("event-1"), DRIFT_ALARMS))  # type: ignore[arg-type]
    assert again["run_id"] == first["run_id"]
    executions = aws.client("stepfunctions").list_executions(stateMachineArn=settings.state_machine_arn)
    assert len(executions["executions"]) == 1


def test_an_expired_lock_is_taken_over(aws, account):
    settings, table = account
    hours = CONFIG.training.run_timeout_minutes / 60 + 1
    Runs(settings, aws, clock=lambda: NOW).start(start_request(scheduled("event-1"), DRIFT_ALARMS))  # type: ignore[arg-type]
    later = Runs(settings, aws, clock=lambda: NOW + timedelta(hours=hours))
    started = later.start(start_request(scheduled("event-2", "2026-12-10T03:00:00Z"), DRIFT_ALARMS))  # type: ignore[arg-type]
    assert started["started"] is True
    assert table.get_item(Key=training.LOCK_KEY)["Item"]["runId"] == started["run_id"]


def test_finish_records_the_outcome_and_releases_the_lock(aws, account):
    settings, table = account
    runs = Runs(settings, aws, clock=lambda: NOW)
    run_id = runs.start(start_request(scheduled(), DRIFT_ALARMS))["run_id"]  # type: ignore[arg-type]
    finished = runs.finish(
        FinishRequest.model_validate(
            {
                "action": "finish",
                "run_id": run_id,
                "status": "NOT_PROMOTED",
                "reason": "candidate ROC AUC 0.9900 vs champion v2 0.9950: not higher",
                "details": {
                    "training": {
                        "job_name": "mlp-local-x",
                        "billable_seconds": 41,
                        "metrics": [{"MetricName": "validation:roc_auc", "Value": 0.99}],
                    },
                    "evaluation": {"promote": False, "difference": {"roc_auc": -0.005}},
                },
            }
        )
    )
    assert finished["lock_released"] is True
    item = table.get_item(Key=training.run_key(run_id))["Item"]
    assert item[training.STATUS_ATTRIBUTE] == "NOT_PROMOTED"
    assert item["decision"] == "not promoted"
    assert item["billableSeconds"] == 41
    assert item["reason"].startswith("candidate ROC AUC")
    assert "Item" not in table.get_item(Key=training.LOCK_KEY)
    # a finish of a run that does not hold the lock releases nothing
    assert (
        runs.finish(FinishRequest(action="finish", run_id="other-run", status="FAILED"))["lock_released"]
        is False
    )


def test_a_drift_alarm_back_to_ok_and_other_objects_start_nothing():
    name = sorted(DRIFT_ALARMS)[0]
    assert start_request(alarm(name, "OK"), DRIFT_ALARMS) is None
    request = start_request(alarm(name, "ALARM"), DRIFT_ALARMS)
    assert request is not None
    assert request.trigger == "drift"
    assert start_request(created(f"{training.TRAINING_DATA_PREFIX}folder/"), DRIFT_ALARMS) is None
    data = start_request(created(f"{training.TRAINING_DATA_PREFIX}2026-12.csv"), DRIFT_ALARMS)
    assert data is not None
    assert data.data_key == f"{training.TRAINING_DATA_PREFIX}2026-12.csv"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"nothing": 1}, "expected an EventBridge event"),
        (alarm("someone-elses-alarm", "ALARM"), "detail.alarmName"),
        (created("batch/input/x.csv"), "detail.object.key"),
        (
            {"detail-type": "AWS API Call via CloudTrail", "id": "1", "time": "2026-12-03T00:00:00Z"},
            "detail-type",
        ),
    ],
)
def test_events_of_no_known_shape_are_refused_with_the_field_named(event, message):
    with pytest.raises(InvalidRunInputError, match=message):
        start_request(event, DRIFT_ALARMS)


def test_the_entry_point_names_the_bad_field_of_a_manual_start(aws, account, monkeypatch, lambda_context):
    settings, _ = account
    for key, value in {
        "STAGE": "local",
        "DATA_BUCKET": DATA_BUCKET,
        "MODEL_BUCKET": BUCKET,
        "METADATA_TABLE": TABLE,
        "STATE_MACHINE_ARN": settings.state_machine_arn,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("stacks.training.runtime.runs.boto3.session.Session", lambda: aws)
    with pytest.raises(InvalidRunInputError, match="tune"):
        handler({"action": "start", "tune": "sometimes"}, lambda_context)
    with pytest.raises(InvalidRunInputError, match="status"):
        handler({"action": "finish", "run_id": "r-1", "status": "MAYBE"}, lambda_context)
    started = handler({"action": "start", "tune": True, "requested_by": "alice"}, lambda_context)
    assert started["started"] is True
    assert started["run_id"].startswith("manual-")


def test_a_manual_start_names_its_data_and_experiment(aws, account):
    settings, table = account
    request = StartRequest(
        trigger="manual",
        tune=True,
        data_key=f"{training.TRAINING_DATA_PREFIX}old.csv",
        experiment="deeper-trees",
        requested_by="alice",
        request_id="cli-1",
        requested_at=NOW,
    )
    started = Runs(settings, aws, clock=lambda: NOW).start(request)
    item = table.get_item(Key=training.run_key(started["run_id"]))["Item"]
    assert item["dataKey"] == f"{training.TRAINING_DATA_PREFIX}old.csv"
    assert item["tune"] is True
    assert item[training.EXPERIMENT_ATTRIBUTE] == "deeper-trees"
    assert item["requestedBy"] == "alice"


def test_deploy_as_challenger_writes_the_desired_state_with_the_token_and_the_ab_record(aws, account):
    _, table = account
    settings = RegisterSettings.from_environment(
        {
            "STAGE": "local",
            "MODEL_BUCKET": BUCKET,
            "METADATA_TABLE": TABLE,
            "ENDPOINT_NAME": ENDPOINT,
            "SAGEMAKER_EXECUTION_ROLE_ARN": ROLE,
            "INFERENCE_IMAGE_URI": IMAGE,
        }
    )
    registrar = Registrar(settings, aws, clock=lambda: NOW)
    answer = registrar.deploy(
        DeployRequest(action="deploy", run_id="schedule-1", model_version="v2", weight=0.1, task_token="tok")
    )
    pending = registrar.lifecycle.pending()
    assert pending is not None
    assert (pending.request_id, pending.callback_token) == (answer["request_id"], "tok")
    assert pending.actor == "training-run:schedule-1"
    traffic = json.loads(aws.client("ssm").get_parameter(Name=f"{PATH}/traffic")["Parameter"]["Value"])
    assert traffic["challenger"] == "v2"
    assert traffic["challenger_weight"] == 0.1
    (record,) = table.query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": training.AB_CONFIG_PARTITION}
    )["Items"]
    assert (record["challenger"], float(record["challengerWeight"]), record["actor"]) == (
        "v2",
        0.1,
        "training-run:schedule-1",
    )
    # a second request while the first deploys is refused, naming the holder; nothing is overwritten
    with pytest.raises(ConflictError, match=answer["request_id"]):
        registrar.deploy(
            DeployRequest(
                action="deploy", run_id="schedule-2", model_version="v1", weight=0.2, task_token="t2"
            )
        )


@pytest.fixture
def registrar(aws, account) -> Registrar:
    settings = RegisterSettings.from_environment(
        {
            "STAGE": "local",
            "MODEL_BUCKET": BUCKET,
            "METADATA_TABLE": TABLE,
            "ENDPOINT_NAME": ENDPOINT,
            "SAGEMAKER_EXECUTION_ROLE_ARN": ROLE,
            "INFERENCE_IMAGE_URI": IMAGE,
        }
    )
    return Registrar(settings, aws, clock=lambda: NOW)


def test_register_pins_the_trained_archive_as_the_next_version_with_lineage(
    aws, account, registrar, make_artifact
):
    _, table = account
    key = (
        f"{training.output_prefix(training.run_prefix('schedule-1'))}mlp-local-schedule-1/output/model.tar.gz"
    )
    aws.client("s3").upload_file(str(make_artifact("candidate")), DATA_BUCKET, key)
    request = RegisterRequest(
        action="register",
        run_id="schedule-1",
        bucket=DATA_BUCKET,
        model_version="v3",
        model_artifact=f"s3://{DATA_BUCKET}/{key}",
        job_name="mlp-local-schedule-1",
        evaluation_key=training.evaluation_key(training.run_prefix("schedule-1")),
    )
    answer = registrar.register(request)
    assert (answer["version"], answer["created"]) == ("v3", True)
    record = registrar.registry.get("v3")
    assert record.sha256 == answer["sha256"]
    model = table.get_item(Key=training.model_key("v3"))["Item"]
    assert (model["runId"], model["jobName"]) == ("schedule-1", "mlp-local-schedule-1")
    assert model["evaluation"].endswith("/evaluation.json")
    # a retried Register state is a no-op; other bytes under the same version are refused
    assert registrar.register(request)["created"] is False
    aws.client("s3").upload_file(str(make_artifact("other", accuracy=0.5)), DATA_BUCKET, key)
    with pytest.raises(ConflictError, match="immutable"):
        registrar.register(request)
