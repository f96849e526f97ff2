"""Template assertions for the training layer (every environment).

The state machine's graph and its SageMaker states (spot, MaxWait >= MaxRuntime, checkpoints, KMS,
VPC, network isolation, metric definitions from ``shared.training``), the retries (SageMaker's
throttling and capacity errors only), the IAM of the .sync integrations (PassRole scoped with
``iam:PassedToService``, the job-name prefix, the managed events rules), the triggers, the
metadata table's keys and indexes, the image functions and the deploy function's task-token grant.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from shared import training
from shared.config import ENVIRONMENTS, sklearn_image_uri
from shared.infra.acknowledge import MIN_REASON_LENGTH
from stacks.training.stack import IMAGE_HANDLERS
from stacks.training.workflow import RETRIED_SAGEMAKER_ERRORS, TrainingWorkflow
from tests.infra import asl
from tests.infra.conftest import resources_of

ENVS = sorted(ENVIRONMENTS)
LAYER = "training"
TemplateJson = Callable[[str, str], dict[str, Any]]


def _definition(template: dict[str, Any]) -> dict[str, Any]:
    (machine,) = resources_of(template, "AWS::StepFunctions::StateMachine").values()
    return asl.render(machine["Properties"]["DefinitionString"])


def _states(template_json: TemplateJson, env: str) -> dict[str, dict[str, Any]]:
    return asl.all_states(_definition(template_json(env, LAYER)))


def _policy_statements(template: dict[str, Any], role_id_part: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in resources_of(template, "AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"].get("Roles", []))
        if role_id_part in roles:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


@pytest.mark.parametrize("env", ENVS)
def test_the_run_validates_preprocesses_trains_or_tunes_evaluates_and_deploys(template_json, env):
    definition = _definition(template_json(env, LAYER))
    states = asl.all_states(definition)
    assert definition["StartAt"] == "Validate"
    assert states["Validate"]["Next"] == "DataValid"
    assert states["DataValid"]["Choices"][0]["Variable"] == "$.validation.valid"
    assert states["DataValid"]["Choices"][0]["Next"] == "NotifyInvalidData"
    assert states["DataValid"]["Default"] == "Preprocess"
    assert states["NotifyInvalidData"]["Next"] == "RecordInvalidData"
    assert states["RecordInvalidData"]["Next"] == "DataInvalid"
    assert states["DataInvalid"]["Type"] == "Fail"
    assert states["Preprocess"]["Next"] == "TuneOrTrain"
    choice = states["TuneOrTrain"]
    assert choice["Choices"][0] == {"Variable": "$.tune", "BooleanEquals": True, "Next": "Tune"}
    assert choice["Default"] == "Train"
    assert states["Tune"]["Next"] == "DescribeBestJob"
    assert states["DescribeBestJob"]["Next"] == "Evaluate"
    assert states["Train"]["Next"] == "Evaluate"
    assert states["Evaluate"]["Next"] == "Promote"
    promote = states["Promote"]
    assert promote["Choices"][0]["Variable"] == "$.evaluation.promote"
    assert promote["Choices"][0]["Next"] == "Register"
    assert promote["Default"] == "RecordNotPromoted"
    assert states["RecordNotPromoted"]["Next"] == "NotPromoted"
    assert states["NotPromoted"]["Type"] == "Succeed"
    assert states["Register"]["Next"] == "DeployChallenger"
    assert states["DeployChallenger"]["Next"] == "RecordDeployed"
    assert states["RecordDeployed"]["Next"] == "Deployed"
    assert states["Deployed"]["Type"] == "Succeed"
    # nothing that failed ends as a success: every task catches into the failure path, which ends in Fail
    for name, state in states.items():
        if state["Type"] == "Task" and name not in {"RecordRunFailed", "NotifyRunFailed"}:
            catchers = state.get("Catch", [])
            assert any(
                c["ErrorEquals"] == ["States.ALL"] and c["Next"] == "NotifyRunFailed" for c in catchers
            ), name
    assert states["NotifyRunFailed"]["Next"] == "RecordRunFailed"
    assert states["RecordRunFailed"]["Next"] == "RunFailed"
    assert states["RecordRunFailed"]["Catch"][0]["Next"] == "RunFailed"
    assert states["RunFailed"]["Type"] == "Fail"


@pytest.mark.parametrize("env", ENVS)
def test_training_uses_managed_spot_checkpoints_kms_vpc_and_network_isolation(template_json, env):
    config = ENVIRONMENTS[env]
    settings = config.training
    train = _states(template_json, env)["Train"]
    assert train["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    params = train["Parameters"]
    assert params["TrainingJobName.$"] == "$.job_name"
    assert params["EnableManagedSpotTraining"] is settings.use_spot
    stopping = params["StoppingCondition"]
    assert stopping["MaxRuntimeInSeconds"] == settings.max_runtime_seconds
    assert stopping["MaxWaitTimeInSeconds"] == settings.max_wait_seconds
    assert stopping["MaxWaitTimeInSeconds"] >= stopping["MaxRuntimeInSeconds"]
    assert params["CheckpointConfig"] == {
        "S3Uri.$": "$.checkpoint_uri",
        "LocalPath": training.CHECKPOINT_LOCAL_PATH,
    }
    assert params["OutputDataConfig"]["KmsKeyId"].startswith(("<ImportValue:", "arn:aws:kms:"))
    assert params["ResourceConfig"]["VolumeKmsKeyId"] == params["OutputDataConfig"]["KmsKeyId"]
    assert params["ResourceConfig"]["InstanceType"] == settings.instance_type
    assert params["EnableNetworkIsolation"] is True
    vpc = params["VpcConfig"]
    assert len(vpc["Subnets"]) >= 2
    assert len(vpc["SecurityGroupIds"]) == 1
    spec = params["AlgorithmSpecification"]
    assert spec["TrainingImage"] == sklearn_image_uri(config.region)
    assert spec["MetricDefinitions"] == [dict(d) for d in training.METRIC_DEFINITIONS]
    hyperparameters = params["HyperParameters"]
    assert hyperparameters["sagemaker_program"] == training.ENTRY_POINT
    assert hyperparameters["sagemaker_submit_directory"].startswith("s3://")
    assert hyperparameters["sagemaker_submit_directory"].endswith(".gz")
    assert hyperparameters[training.HP_ALGORITHM] == settings.algorithm
    assert [c["ChannelName"] for c in params["InputDataConfig"]] == list(training.CHANNELS)


def test_max_wait_shorter_than_max_runtime_is_refused_at_synth():
    config = ENVIRONMENTS["dev"]
    settings = config.training.model_copy(update={"max_wait_seconds": 60, "max_runtime_seconds": 120})
    with pytest.raises(ValueError, match="MaxWaitTimeInSeconds"):
        TrainingWorkflow.stopping_condition(config.model_copy(update={"training": settings}))


@pytest.mark.parametrize("env", ENVS)
def test_tuning_runs_the_same_job_definition_and_the_best_job_is_described(template_json, env):
    settings = ENVIRONMENTS[env].training
    states = _states(template_json, env)
    tune, train = states["Tune"], states["Train"]
    assert tune["Resource"] == "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync"
    config = tune["Parameters"]["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": training.TUNING_OBJECTIVE_TYPE,
        "MetricName": training.TUNING_OBJECTIVE,
    }
    assert config["ResourceLimits"] == {
        "MaxNumberOfTrainingJobs": settings.tuning_max_jobs,
        "MaxParallelTrainingJobs": settings.tuning_max_parallel,
    }
    definition = tune["Parameters"]["TrainingJobDefinition"]
    for key in (
        "EnableManagedSpotTraining",
        "StoppingCondition",
        "CheckpointConfig",
        "VpcConfig",
        "ResourceConfig",
    ):
        assert definition[key] == train["Parameters"][key], key
    ranges = config["ParameterRanges"]
    searched = {r["Name"] for kind in ranges.values() for r in kind}
    assert searched
    assert searched <= set(training.HYPERPARAMETERS)
    assert not searched & set(definition["StaticHyperParameters"])
    describe = states["DescribeBestJob"]
    assert describe["Resource"] == "arn:<Ref:AWS::Partition>:states:::aws-sdk:sagemaker:describeTrainingJob"
    assert describe["Parameters"] == {"TrainingJobName.$": "$.tuning.TrainingJobName"}
    assert describe["ResultSelector"] == train["ResultSelector"]


@pytest.mark.parametrize("env", ENVS)
def test_only_sagemaker_throttling_and_capacity_errors_are_retried(template_json, env):
    states = _states(template_json, env)
    for name in ("Train", "Tune"):
        (retry,) = states[name]["Retry"]
        assert set(retry["ErrorEquals"]) == set(RETRIED_SAGEMAKER_ERRORS)
        assert "States.ALL" not in retry["ErrorEquals"]
        assert "States.TaskFailed" not in retry["ErrorEquals"]


@pytest.mark.parametrize("env", ENVS)
def test_the_challenger_deploy_waits_for_the_deploy_functions_token_with_a_timeout(template_json, env):
    settings = ENVIRONMENTS[env].training
    deploy = _states(template_json, env)["DeployChallenger"]
    assert deploy["Resource"] == "arn:<Ref:AWS::Partition>:states:::lambda:invoke.waitForTaskToken"
    payload = deploy["Parameters"]["Payload"]
    assert payload["task_token.$"] == "$$.Task.Token"
    assert payload["action"] == "deploy"
    assert payload["weight"] == settings.challenger_weight
    assert deploy["TimeoutSeconds"] == settings.deploy_timeout_minutes * 60


@pytest.mark.parametrize("env", ENVS)
def test_the_state_machine_logs_all_traces_and_times_out(template_json, env):
    template = template_json(env, LAYER)
    (machine,) = resources_of(template, "AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["StateMachineName"] == ENVIRONMENTS[env].resource_name("training")
    assert _definition(template)["TimeoutSeconds"] == ENVIRONMENTS[env].training.run_timeout_minutes * 60


@pytest.mark.parametrize("env", ENVS)
def test_the_sync_integrations_iam_is_written_out_and_scoped(template_json, env):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    (machine,) = resources_of(template, "AWS::StepFunctions::StateMachine").values()
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = _policy_statements(template, role_id)
    prefix = training.job_name_prefix(config.name)
    by_action = {action: s for s in statements for action in _actions(s)}
    jobs = by_action["sagemaker:CreateTrainingJob"]
    assert jobs["Resource"] == f"arn:aws:sagemaker:{config.region}:{config.account}:training-job/{prefix}*"
    assert {"sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"} <= set(_actions(jobs))
    tuning = by_action["sagemaker:CreateHyperParameterTuningJob"]
    assert tuning["Resource"].endswith(f":hyper-parameter-tuning-job/{prefix}*")
    pass_role = by_action["iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    roles = resources_of(template, "AWS::IAM::Role")
    (training_role,) = [
        lid for lid, r in roles.items() if "sagemaker.amazonaws.com" in json.dumps(r["Properties"])
    ]
    assert pass_role["Resource"] == {"Fn::GetAtt": [training_role, "Arn"]}
    rules = by_action["events:PutRule"]["Resource"]
    assert sorted(r.rsplit("/", 1)[1] for r in rules) == [
        "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
        "StepFunctionsGetEventsForSageMakerTuningJobsRule",
    ]
    # no bare wildcard beyond what has no resource-level permissions (logs delivery, X-Ray)
    for statement in statements:
        if statement["Resource"] == "*":
            assert all(a.startswith(("logs:", "xray:")) for a in _actions(statement)), statement


@pytest.mark.parametrize("env", ENVS)
def test_three_triggers_go_to_the_runs_function_which_owns_the_lock(template_json, env):
    config = ENVIRONMENTS[env]
    template = template_json(env, LAYER)
    rules = {
        r["Properties"]["Name"]: r["Properties"] for r in resources_of(template, "AWS::Events::Rule").values()
    }
    schedule = rules[config.resource_name("training-schedule")]
    assert schedule["ScheduleExpression"] == config.training.schedule
    drift = rules[config.resource_name("training-drift")]["EventPattern"]
    assert drift["detail"]["alarmName"] == [
        config.drift_alarm_name(v.name) for v in config.inference.variants
    ]
    assert drift["detail"]["state"] == {"value": ["ALARM"]}
    data = rules[config.resource_name("training-data-created")]["EventPattern"]
    assert data["detail"]["object"] == {"key": [{"prefix": training.TRAINING_DATA_PREFIX}]}
    assert data["detail"]["bucket"] == {"name": [config.bucket_name("data")]}
    functions = resources_of(template, "AWS::Lambda::Function")
    (runs_id,) = [
        lid
        for lid, f in functions.items()
        if f["Properties"]["FunctionName"] == config.resource_name("training-runs")
    ]
    for rule in rules.values():
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [runs_id, "Arn"]}
        assert "DeadLetterConfig" in target
        assert target["RetryPolicy"]["MaximumRetryAttempts"] == 3


@pytest.mark.parametrize("env", ENVS)
def test_the_metadata_table_has_its_keys_sparse_indexes_pitr_and_the_data_key(template_json, env):
    template = template_json(env, LAYER)
    (table,) = resources_of(template, "AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert props["TableName"] == ENVIRONMENTS[env].resource_name("training-metadata")
    assert props["KeySchema"] == [
        {"AttributeName": training.PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": training.SORT_KEY, "KeyType": "RANGE"},
    ]
    indexes = {i["IndexName"]: i["KeySchema"] for i in props["GlobalSecondaryIndexes"]}
    assert indexes == {
        training.BY_EXPERIMENT_INDEX: [
            {"AttributeName": training.EXPERIMENT_ATTRIBUTE, "KeyType": "HASH"},
            {"AttributeName": training.STARTED_AT_ATTRIBUTE, "KeyType": "RANGE"},
        ],
        training.BY_STATUS_INDEX: [
            {"AttributeName": training.STATUS_ATTRIBUTE, "KeyType": "HASH"},
            {"AttributeName": training.STARTED_AT_ATTRIBUTE, "KeyType": "RANGE"},
        ],
        training.BY_MODEL_VERSION_INDEX: [
            {"AttributeName": training.MODEL_VERSION_ATTRIBUTE, "KeyType": "HASH"}
        ],
    }
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert "KMSMasterKeyId" in props["SSESpecification"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": training.TTL_ATTRIBUTE, "Enabled": True}


@pytest.mark.parametrize("env", ENVS)
def test_validate_preprocess_and_evaluate_are_image_functions_in_the_vpc(template_json, env):
    config = ENVIRONMENTS[env]
    functions = {
        f["Properties"]["FunctionName"]: f["Properties"]
        for f in resources_of(template_json(env, LAYER), "AWS::Lambda::Function").values()
    }
    for name, handler in IMAGE_HANDLERS.items():
        props = functions[config.resource_name(name)]
        assert props["PackageType"] == "Image"
        assert props["ImageConfig"]["Command"] == [handler]
        assert "Layers" not in props
        assert "Runtime" not in props
        assert props["VpcConfig"]["SubnetIds"]
        assert props["TracingConfig"] == {"Mode": "Active"}


@pytest.mark.parametrize("env", ENVS)
def test_the_deploy_function_may_complete_task_tokens(template_json, env):
    template = template_json(env, "inference")
    functions = resources_of(template, "AWS::Lambda::Function")
    (deploy,) = [
        f
        for f in functions.values()
        if f["Properties"]["FunctionName"] == ENVIRONMENTS[env].resource_name("deploy")
    ]
    role_id = deploy["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = _policy_statements(template, role_id)
    (send,) = [s for s in statements if "states:SendTaskSuccess" in _actions(s)]
    # no resource-level permissions: CDK merges them with X-Ray's, the other Resource "*" actions
    assert send["Resource"] == "*"
    assert "states:SendTaskFailure" in _actions(send)
    assert {a for a in _actions(send) if not a.startswith("states:SendTask")} <= {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }


@pytest.mark.parametrize("env", ENVS)
def test_every_wildcard_acknowledgement_has_a_reason(template_json, env):
    for resource in template_json(env, LAYER)["Resources"].values():
        for entry in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            assert len(entry["reason"]) >= MIN_REASON_LENGTH
