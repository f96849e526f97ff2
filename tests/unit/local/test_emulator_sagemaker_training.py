"""moto's Step Functions interpreter running SageMaker training and tuning jobs as local processes.

(local.emulator.sagemaker_training, with model/sagemaker_train.py as the job's entry point)
"""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.emulator import sagemaker_training as emulator
from local.emulator import stepfunctions
from model import data, inference
from shared import training
from shared.source_bundle import build_source_bundle

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "data"
RUN = "training/runs/r1"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"


def _csv(split: data.Split, names: tuple[str, ...]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*names, training.TARGET_COLUMN])
    for row, label in zip(split.features.tolist(), split.labels.tolist(), strict=True):
        writer.writerow([*(repr(value) for value in row), label])
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_source_bundle(tmp_path_factory.mktemp("bundle")).read_bytes()


@pytest.fixture
def account(bundle: bytes) -> Iterator[dict[str, Any]]:
    stepfunctions.install()
    emulator.install()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        session = boto3.session.Session(region_name=REGION)
        s3 = session.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        dataset = data.load_dataset()
        for split in (training.TRAIN_CHANNEL, training.VALIDATION_CHANNEL):
            s3.put_object(
                Bucket=BUCKET,
                Key=training.split_key(RUN, split),
                Body=_csv(getattr(dataset, split), dataset.feature_names),
            )
        s3.put_object(Bucket=BUCKET, Key=f"assets/{training.SOURCE_BUNDLE_NAME}", Body=bundle)
        role = session.client("iam").create_role(RoleName="job", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        yield {"session": session, "s3": s3, "role": role}
    emulator.reset()


def job_parameters(account: dict[str, Any], hyper: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": list(training.METRIC_DEFINITIONS),
        },
        "RoleArn": account["role"],
        "HyperParameters": {
            "sagemaker_program": training.ENTRY_POINT,
            "sagemaker_submit_directory": f"s3://{BUCKET}/assets/{training.SOURCE_BUNDLE_NAME}",
            "sagemaker_region": REGION,
            **hyper,
        },
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "ContentType": training.CONTENT_TYPE,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/{training.channel_prefix(RUN, channel)}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel in training.CHANNELS
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/{training.output_prefix(RUN)}"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        **extra,
    }


def run(account: dict[str, Any], definition: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    sfn = account["session"].client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"m{time.monotonic_ns()}", definition=json.dumps(definition), roleArn=account["role"]
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="run", input="{}")["executionArn"]
    deadline = time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.1)
    return dict(described)


def task(resource: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "StartAt": "Job",
        "States": {
            "Job": {
                "Type": "Task",
                "Resource": f"arn:aws:states:::sagemaker:{resource}.sync",
                "Parameters": parameters,
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }


def test_a_training_job_runs_the_entry_point_and_sync_returns_its_description(account, tmp_path):
    parameters = job_parameters(account, {"model_version": "v3", "C": "1.0"}, TrainingJobName="train-1")
    result = run(account, task("createTrainingJob", parameters))
    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert "error" not in output, output
    assert output["TrainingJobStatus"] == "Completed"
    assert output["SecondaryStatus"] == "Completed"
    uri = output["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri == f"s3://{BUCKET}/{training.model_artifact_key(RUN, 'train-1')}"
    metrics = {m["MetricName"]: m["Value"] for m in output["FinalMetricDataList"]}
    assert set(metrics) == set(training.METRIC_NAMES)
    assert metrics[training.METRIC_VALIDATION_ROC_AUC] > 0.98
    assert output["TrainingTimeInSeconds"] >= 1
    assert output["BillableTimeInSeconds"] == output["TrainingTimeInSeconds"]  # on demand
    assert isinstance(output["TrainingStartTime"], int)  # epoch milliseconds, as Step Functions gives them
    assert [t["Status"] for t in output["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]

    described = account["session"].client("sagemaker").describe_training_job(TrainingJobName="train-1")
    assert described["TrainingJobStatus"] == "Completed"
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == uri
    assert described["AlgorithmSpecification"]["MetricDefinitions"] == list(training.METRIC_DEFINITIONS)
    assert {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]} == metrics

    body = account["s3"].get_object(Bucket=BUCKET, Key=training.model_artifact_key(RUN, "train-1"))["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read())) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    loaded = inference.model_fn(str(tmp_path / "model"))
    assert loaded.model_version == "v3"
    rows = inference.input_fn(
        json.dumps(
            {"instances": [dict(zip(loaded.schema.names, data.load_dataset().test.features[0], strict=True))]}
        ),
        "application/json",
    )
    assert inference.predict_fn(rows, loaded)["predictions"][0]["label"] in (0, 1)
    log = emulator.training_job_output("train-1", account_id=ACCOUNT, region=REGION)
    assert (
        training.metric_line(training.METRIC_VALIDATION_ROC_AUC, metrics[training.METRIC_VALIDATION_ROC_AUC])
        in log
    )


def test_a_failing_job_fails_the_task_with_states_task_failed_and_its_reason(account):
    parameters = job_parameters(account, {"model_version": "v3", "C": "-1"}, TrainingJobName="train-bad")
    result = run(account, task("createTrainingJob", parameters))
    error = json.loads(result["output"])["error"]
    assert error["Error"] == "States.TaskFailed"
    cause = json.loads(error["Cause"])
    assert cause["TrainingJobStatus"] == "Failed"
    assert cause["FailureReason"].startswith(
        "AlgorithmError: hyper-parameter 'C' must be a finite number > 0"
    )
    assert cause["FailureReason"].endswith("exit code: 1")
    assert "ModelArtifacts" not in cause
    described = account["session"].client("sagemaker").describe_training_job(TrainingJobName="train-bad")
    assert described["FailureReason"] == cause["FailureReason"]


def test_a_rejected_request_fails_with_the_sagemaker_exception(account):
    parameters = job_parameters(
        account,
        {"model_version": "v3"},
        TrainingJobName="train-nospot",
        StoppingCondition={"MaxRuntimeInSeconds": 300, "MaxWaitTimeInSeconds": 600},
    )
    result = run(account, task("createTrainingJob", parameters))
    error = json.loads(result["output"])["error"]
    assert error["Error"] == "SageMaker.AmazonSageMakerException"
    assert "MaxWaitTimeInSeconds is only supported with managed spot training" in error["Cause"]
    assert "Error Code: ValidationException" in error["Cause"]
    numbers = job_parameters(account, {"model_version": "v3"}, TrainingJobName="train-numbers")
    numbers["HyperParameters"]["C"] = 1.0  # SageMaker takes strings only
    error = json.loads(run(account, task("createTrainingJob", numbers))["output"])["error"]
    assert error["Error"] == "SageMaker.AmazonSageMakerException"
    assert "HyperParameters values must be strings; C is not" in error["Cause"]
    sagemaker = account["session"].client("sagemaker")
    with pytest.raises(sagemaker.exceptions.ClientError):
        sagemaker.describe_training_job(TrainingJobName="train-numbers")  # never created


def test_a_spot_interruption_restarts_the_job_and_it_resumes_from_its_checkpoint(account):
    emulator.interrupt_next_training_job()
    checkpoints = f"s3://{BUCKET}/{training.checkpoint_prefix(RUN)}"
    parameters = job_parameters(
        account,
        {"model_version": "v3", "algorithm": "gradient_boosting"},
        TrainingJobName="train-spot",
        EnableManagedSpotTraining=True,
        StoppingCondition={"MaxRuntimeInSeconds": 300, "MaxWaitTimeInSeconds": 600},
        CheckpointConfig={"S3Uri": checkpoints, "LocalPath": training.CHECKPOINT_LOCAL_PATH},
    )
    result = run(account, task("createTrainingJob", parameters))
    output = json.loads(result["output"])
    assert output["TrainingJobStatus"] == "Completed", output
    statuses = [t["Status"] for t in output["SecondaryStatusTransitions"]]
    assert statuses[:6] == ["Starting", "Downloading", "Training", "Interrupted", "Starting", "Downloading"]
    assert (
        output["BillableTimeInSeconds"] < output["TrainingTimeInSeconds"]
        or output["TrainingTimeInSeconds"] == 1
    )
    log = emulator.training_job_output("train-spot", account_id=ACCOUNT, region=REGION)
    # candidate 0 was fitted in the first attempt; after the restart it comes from its checkpoint
    first, restarted = log.split("restored from candidate-0.joblib", 1)
    assert "candidate 0 {" in first
    assert "fitted, saved to candidate-0.joblib" in first
    assert "fitted, saved to candidate-0.joblib" not in restarted
    body = account["s3"].get_object(Bucket=BUCKET, Key=training.model_artifact_key(RUN, "train-spot"))["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read())) as tar:
        member = tar.extractfile("metrics.json")
        assert member is not None
        recorded = json.loads(member.read())["checkpoints"]
    assert 0 in recorded["restored_candidates"]
    assert 0 not in recorded["fitted_candidates"]
    metrics_lines = [line for line in log.splitlines() if line.startswith(training.METRIC_VALIDATION_ROC_AUC)]
    assert len(metrics_lines) == 1  # the first attempt was stopped before it finished
    keys = {
        o["Key"]
        for o in account["s3"].list_objects_v2(Bucket=BUCKET, Prefix=training.checkpoint_prefix(RUN))[
            "Contents"
        ]
    }
    assert f"{training.checkpoint_prefix(RUN)}candidate-0.joblib" in keys


def test_a_tuning_job_runs_seeded_jobs_and_picks_the_best_by_the_objective(account):
    definition = job_parameters(account, {})
    static = dict(definition.pop("HyperParameters"))
    parameters: dict[str, Any] = {
        "HyperParameterTuningJobName": "tune-1",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {
                "Type": training.TUNING_OBJECTIVE_TYPE,
                "MetricName": training.TUNING_OBJECTIVE,
            },
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {"Name": "C", "MinValue": "0.001", "MaxValue": "10", "ScalingType": "Logarithmic"}
                ]
            },
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {**static, "model_version": "v3"},
            **definition,
        },
    }
    result = run(account, task("createHyperParameterTuningJob", parameters), timeout=90)
    output = json.loads(result["output"])
    assert output["HyperParameterTuningJobStatus"] == "Completed", output
    assert output["TrainingJobStatusCounters"]["Completed"] == 3
    best = output["BestTrainingJob"]
    sagemaker = account["session"].client("sagemaker")
    names = [emulator.tuning_training_job_name("tune-1", index) for index in (1, 2, 3)]
    scores = {}
    for name in names:
        assert re.fullmatch(r"tune-1-00[123]-[0-9a-f]{8}", name)
        described = sagemaker.describe_training_job(TrainingJobName=name)
        values = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
        scores[name] = values[training.TUNING_OBJECTIVE]
    assert best["TrainingJobName"] == max(scores, key=lambda name: scores[name])
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == scores[best["TrainingJobName"]]
    assert set(best["TunedHyperParameters"]) == {"C"}
    again = emulator.sample_hyperparameters("tune-1", parameters["HyperParameterTuningJobConfig"], 3)
    assert [s["C"] for s in again] == [
        sagemaker.describe_training_job(TrainingJobName=name)["HyperParameters"]["C"] for name in names
    ]
    assert (
        sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-1")[
            "BestTrainingJob"
        ]["TrainingJobName"]
        == best["TrainingJobName"]
    )


def test_a_job_past_its_max_runtime_is_stopped_and_fails_the_task(account):
    parameters = job_parameters(
        account,
        {"model_version": "v3", "algorithm": "gradient_boosting"},
        TrainingJobName="train-slow",
        StoppingCondition={"MaxRuntimeInSeconds": 1},
    )
    result = run(account, task("createTrainingJob", parameters))
    error = json.loads(result["output"])["error"]
    assert error["Error"] == "States.TaskFailed"
    cause = json.loads(error["Cause"])
    assert (cause["TrainingJobStatus"], cause["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert "ModelArtifacts" not in cause


def test_install_lists_its_gaps_and_routes_other_sagemaker_actions_to_moto():
    gaps = emulator.install()
    assert gaps == emulator.GAPS
    assert all("local.emulator.sagemaker_training" in gap for gap in gaps)
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import state_task_factory  # noqa: PLC0415

    service_for = getattr(state_task_factory, "state_task_service_for")  # noqa: B009
    assert isinstance(service_for("sagemaker"), emulator.StateTaskServiceSageMakerJobs)
    assert not isinstance(service_for("batch"), emulator.StateTaskServiceSageMakerJobs)
    assert emulator.install() == gaps  # idempotent: installed once
    assert getattr(state_task_factory, "state_task_service_for") is service_for  # noqa: B009
