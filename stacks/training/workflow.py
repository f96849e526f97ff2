"""The training run: a Step Functions state machine from validated data to a challenger.

Input (written by the runs function, which holds the run lock and names the execution)::

    {"run_id": "schedule-20261203t030000-1a2b3c4d", "trigger": "schedule", "experiment": "retraining",
     "bucket": "<data bucket>", "data_key": "training/data/....csv", "tune": false,
     "model_version": "v3", "job_name": "mlp-prod-schedule-...", "tuning_job_name": "mlp-prod-t...",
     "run_prefix": "training/runs/<run id>", "checkpoint_uri": "s3://.../checkpoints/",
     "output_uri": "s3://.../output/"}

::

    Validate ─ DataValid? ─ no ─ NotifyInvalidData ─ RecordInvalidData ─ DataInvalid (Fail)
                  │ yes
               Preprocess ─ TuneOrTrain? ─ tune ─ Tune (.sync) ─ DescribeBestJob ─┐
                                         └ train ─ Train (.sync) ───────────────────┤
               Evaluate ─ Promote? ─ no ─ RecordNotPromoted ─ NotPromoted (Succeed, with the reason)
                              │ yes
                           Register ─ DeployChallenger (.waitForTaskToken: the deploy function
                                      completes the token on verification or failure)
                           ─ RecordDeployed ─ Deployed (Succeed)
    any step's error ─ NotifyRunFailed ─ RecordRunFailed ─ RunFailed (Fail)

CDK's ``SageMakerCreateTrainingJob`` task has no managed spot, ``MaxWaitTimeInSeconds`` or
``CheckpointConfig`` and there is no CDK task for tuning, so Train and Tune are custom states
(``arn:aws:states:::sagemaker:createTrainingJob.sync`` and ``createHyperParameterTuningJob.sync``)
and the stack writes their IAM out (``TrainingStack._grant_sagemaker``). Only SageMaker's
API errors (throttling among them) are retried; a job that ran and failed fails the run.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from shared import training
from shared.config import EnvironmentConfig, sklearn_image_uri
from shared.infra.logs import EncryptedLogGroup
from shared.infra.states import lambda_task, notice

# Step Functions names every SageMaker API error of these integrations
# "SageMaker.AmazonSageMakerException" (throttling and ResourceLimitExceeded among them; the
# state language cannot match on the cause), so that name is retried, a few times with backoff:
# a request SageMaker refuses for good fails after ~3 minutes instead of at once. A job that ran
# and failed is "States.TaskFailed" and is not retried; spot capacity is waited for by SageMaker
# itself, within MaxWaitTimeInSeconds.
RETRIED_SAGEMAKER_ERRORS = ("SageMaker.AmazonSageMakerException",)
TRAINING_JOB_SYNC = "arn:aws:states:::sagemaker:createTrainingJob.sync"
TUNING_JOB_SYNC = "arn:aws:states:::sagemaker:createHyperParameterTuningJob.sync"


class TrainingWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        validate_function: lambda_.IFunction,
        preprocess_function: lambda_.IFunction,
        evaluate_function: lambda_.IFunction,
        register_function: lambda_.IFunction,
        runs_function: lambda_.IFunction,
        training_role: iam.IRole,
        source_bundle_uri: str,
        data_key: kms.IKey,
        subnets: list[ec2.ISubnet],
        security_group: ec2.ISecurityGroup,
        topic: sns.ITopic,
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.training
        env = config.name

        def invoke(
            construct_id: str, function: lambda_.IFunction, comment: str, **kwargs: Any
        ) -> tasks.LambdaInvoke:
            return lambda_task(self, construct_id, function, comment, **kwargs)

        def record(construct_id: str, status: str, reason: dict[str, Any]) -> tasks.LambdaInvoke:
            """The run's outcome into the metadata table, and the run lock released."""
            return invoke(
                construct_id,
                runs_function,
                f"Record the run as {status} and release the run lock",
                payload=sfn.TaskInput.from_object(
                    {
                        "action": "finish",
                        "run_id": sfn.JsonPath.string_at("$.run_id"),
                        "status": status,
                        **reason,
                    }
                ),
                result_path=sfn.JsonPath.DISCARD,
            )

        def notify(construct_id: str, subject: str, message: dict[str, Any]) -> tasks.SnsPublish:
            return notice(
                self,
                construct_id,
                topic=topic,
                subject=f"ml-pipeline {env}: {subject}",
                names={"run": "$.run_id"},
                message=message,
            )

        # ----- failure path: notify, record (even if recording fails, the run fails) -----
        run_failed = sfn.Fail(
            self,
            "RunFailed",
            error="TrainingRunFailed",
            cause="A step of the run failed; see NotifyRunFailed",
        )
        record_failed = record(
            "RecordRunFailed",
            "FAILED",
            {
                "error": sfn.JsonPath.string_at("$.error.Error"),
                "reason": sfn.JsonPath.string_at("$.error.Cause"),
            },
        )
        record_failed.add_catch(run_failed, errors=[sfn.Errors.ALL], result_path="$.recordError")
        failed = notify(
            "NotifyRunFailed",
            "training run FAILED",
            {
                "error": sfn.JsonPath.string_at("$.error.Error"),
                "cause": sfn.JsonPath.string_at("$.error.Cause"),
            },
        )
        failed.add_catch(record_failed, errors=[sfn.Errors.ALL], result_path="$.notifyError")
        failed.next(record_failed).next(run_failed)

        def catch(state: sfn.TaskStateBase | sfn.CustomState) -> None:
            state.add_catch(failed, errors=[sfn.Errors.ALL], result_path="$.error")

        run_event = {
            "run_id": sfn.JsonPath.string_at("$.run_id"),
            "bucket": sfn.JsonPath.string_at("$.bucket"),
            "data_key": sfn.JsonPath.string_at("$.data_key"),
        }

        # ----- 1. validate -----
        validate = invoke(
            "Validate",
            validate_function,
            "Every check of the data against the champion's schema and profile (all failures listed)",
            payload=sfn.TaskInput.from_object(run_event),
            result_selector={
                "valid": sfn.JsonPath.string_at("$.Payload.valid"),
                "rows": sfn.JsonPath.number_at("$.Payload.rows"),
                "failed": sfn.JsonPath.list_at("$.Payload.failed"),
                "report_key": sfn.JsonPath.string_at("$.Payload.report_key"),
                "data_sha256": sfn.JsonPath.string_at("$.Payload.data_sha256"),
            },
            result_path="$.validation",
        )
        catch(validate)
        invalid = notify(
            "NotifyInvalidData",
            "training run stopped: the data failed validation",
            {
                "failed_checks": sfn.JsonPath.list_at("$.validation.failed"),
                "report": sfn.JsonPath.format(
                    "s3://{}/{}",
                    sfn.JsonPath.string_at("$.bucket"),
                    sfn.JsonPath.string_at("$.validation.report_key"),
                ),
            },
        )
        catch(invalid)
        record_invalid = record(
            "RecordInvalidData",
            "FAILED",
            {
                "error": "DataValidationFailed",
                "reason": sfn.JsonPath.format(
                    "the data failed validation: {}",
                    sfn.JsonPath.json_to_string(sfn.JsonPath.list_at("$.validation.failed")),
                ),
                "details": {"validation": sfn.JsonPath.object_at("$.validation")},
            },
        )
        catch(record_invalid)
        invalid.next(record_invalid).next(
            sfn.Fail(
                self,
                "DataInvalid",
                error="DataValidationFailed",
                cause="The training data failed validation; the report lists every failed check",
            )
        )

        # ----- 2. preprocess -----
        preprocess = invoke(
            "Preprocess",
            preprocess_function,
            "Seeded, stratified train/validation/test split; CSVs and a manifest with checksums",
            payload=sfn.TaskInput.from_object(run_event),
            result_selector={
                "train_uri": sfn.JsonPath.string_at("$.Payload.train_uri"),
                "validation_uri": sfn.JsonPath.string_at("$.Payload.validation_uri"),
                "test_key": sfn.JsonPath.string_at("$.Payload.test_key"),
                "manifest_key": sfn.JsonPath.string_at("$.Payload.manifest_key"),
                "rows": sfn.JsonPath.object_at("$.Payload.rows"),
                "data_sha256": sfn.JsonPath.string_at("$.Payload.data_sha256"),
            },
            result_path="$.data",
        )
        catch(preprocess)

        # ----- 3. train or tune -----
        describe_best = self._sagemaker_states(
            config,
            training_role=training_role,
            source_bundle_uri=source_bundle_uri,
            data_key=data_key,
            subnets=subnets,
            security_group=security_group,
        )
        for state in (self.train, self.tune, describe_best):
            catch(state)

        # ----- 4. evaluate -----
        evaluate = invoke(
            "Evaluate",
            evaluate_function,
            "Floors, then the live champion re-scored on the same test split (paired bootstrap)",
            payload=sfn.TaskInput.from_object(
                {
                    **run_event,
                    "model_artifact": sfn.JsonPath.string_at("$.training.model_artifact"),
                    "job_name": sfn.JsonPath.string_at("$.training.job_name"),
                }
            ),
            result_selector={
                "promote": sfn.JsonPath.string_at("$.Payload.promote"),
                "reason": sfn.JsonPath.string_at("$.Payload.reason"),
                "evaluation_key": sfn.JsonPath.string_at("$.Payload.evaluation_key"),
                "candidate": sfn.JsonPath.object_at("$.Payload.candidate"),
                "champion": sfn.JsonPath.object_at("$.Payload.champion"),
                "difference": sfn.JsonPath.object_at("$.Payload.difference"),
            },
            result_path="$.evaluation",
        )
        catch(evaluate)

        # ----- 5. register and deploy, or record the decision -----
        outcome = {
            "reason": sfn.JsonPath.string_at("$.evaluation.reason"),
            "details": {
                "training": sfn.JsonPath.object_at("$.training"),
                "evaluation": sfn.JsonPath.object_at("$.evaluation"),
                "data": sfn.JsonPath.object_at("$.data"),
            },
        }
        not_promoted = record("RecordNotPromoted", "NOT_PROMOTED", outcome)
        catch(not_promoted)
        not_promoted.next(
            sfn.Succeed(self, "NotPromoted", comment="The candidate was not better; the reason is recorded")
        )
        register = invoke(
            "Register",
            register_function,
            "Register the candidate (artifact pinned, SSM metadata, lineage to this run)",
            payload=sfn.TaskInput.from_object(
                {
                    "action": "register",
                    **run_event,
                    "model_version": sfn.JsonPath.string_at("$.model_version"),
                    "model_artifact": sfn.JsonPath.string_at("$.training.model_artifact"),
                    "job_name": sfn.JsonPath.string_at("$.training.job_name"),
                    "evaluation_key": sfn.JsonPath.string_at("$.evaluation.evaluation_key"),
                }
            ),
            result_selector={
                "version": sfn.JsonPath.string_at("$.Payload.version"),
                "sha256": sfn.JsonPath.string_at("$.Payload.sha256"),
            },
            result_path="$.registration",
        )
        catch(register)
        deploy = invoke(
            "DeployChallenger",
            register_function,
            "Desired state: the candidate as challenger at the configured weight; the deploy function "
            "owns the rollout and completes this task on verification or failure",
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object(
                {
                    "action": "deploy",
                    "run_id": sfn.JsonPath.string_at("$.run_id"),
                    "model_version": sfn.JsonPath.string_at("$.registration.version"),
                    "weight": settings.challenger_weight,
                    "task_token": sfn.JsonPath.task_token,
                }
            ),
            task_timeout=sfn.Timeout.duration(cdk.Duration.minutes(settings.deploy_timeout_minutes)),
            result_path="$.deployment",
        )
        catch(deploy)
        deployed = record(
            "RecordDeployed",
            "SUCCEEDED",
            {
                "reason": sfn.JsonPath.string_at("$.evaluation.reason"),
                "model_version": sfn.JsonPath.string_at("$.registration.version"),
                "details": {
                    "training": sfn.JsonPath.object_at("$.training"),
                    "evaluation": sfn.JsonPath.object_at("$.evaluation"),
                    "data": sfn.JsonPath.object_at("$.data"),
                    "deployment": sfn.JsonPath.object_at("$.deployment"),
                },
            },
        )
        catch(deployed)
        register.next(deploy).next(deployed).next(
            sfn.Succeed(self, "Deployed", comment="The candidate serves as challenger (verified)")
        )

        definition = validate.next(
            sfn.Choice(self, "DataValid", comment="Invalid data stops the run with the full report")
            .when(sfn.Condition.boolean_equals("$.validation.valid", False), invalid)
            .otherwise(
                preprocess.next(
                    sfn.Choice(self, "TuneOrTrain", comment="The run's input chooses tuning")
                    .when(sfn.Condition.boolean_equals("$.tune", True), self.tune.next(describe_best))
                    .otherwise(self.train)
                    .afterwards()
                    .next(evaluate)
                    .next(
                        sfn.Choice(self, "Promote", comment="The gate's decision")
                        .when(sfn.Condition.boolean_equals("$.evaluation.promote", True), register)
                        .otherwise(not_promoted)
                    )
                )
            )
        )

        self.log_group = EncryptedLogGroup(
            self,
            "Logs",
            config=config,
            log_group_name=f"/aws/vendedlogs/states/{config.resource_name('training')}",
            key=log_key,
        ).log_group
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=training_state_machine_name(config),
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=cdk.Duration.minutes(settings.run_timeout_minutes),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            comment=f"ml-pipeline {env}: validate, preprocess, train or tune, evaluate, register and deploy",
        )

    def _sagemaker_states(
        self,
        config: EnvironmentConfig,
        *,
        training_role: iam.IRole,
        source_bundle_uri: str,
        data_key: kms.IKey,
        subnets: list[ec2.ISubnet],
        security_group: ec2.ISecurityGroup,
    ) -> tasks.CallAwsService:
        """Train and Tune (custom states: CDK's task has no spot) and DescribeBestJob after Tune."""
        settings = config.training
        env = config.name
        algorithm_spec: dict[str, Any] = {
            "TrainingImage": sklearn_image_uri(config.region),
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in training.METRIC_DEFINITIONS],
        }
        channels = [
            {
                "ChannelName": channel,
                "ContentType": training.CONTENT_TYPE,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri.$": f"$.data.{channel}_uri",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel in training.CHANNELS
        ]
        job_common: dict[str, Any] = {
            "RoleArn": training_role.role_arn,
            "InputDataConfig": channels,
            "OutputDataConfig": {"S3OutputPath.$": "$.output_uri", "KmsKeyId": data_key.key_arn},
            "ResourceConfig": {
                "InstanceType": settings.instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": settings.volume_size_gb,
                "VolumeKmsKeyId": data_key.key_arn,
            },
            "StoppingCondition": self.stopping_condition(config),
            "EnableManagedSpotTraining": settings.use_spot,
            "CheckpointConfig": {
                "S3Uri.$": "$.checkpoint_uri",
                "LocalPath": training.CHECKPOINT_LOCAL_PATH,
            },
            "VpcConfig": {
                "SecurityGroupIds": [security_group.security_group_id],
                "Subnets": [subnet.subnet_id for subnet in subnets],
            },
            # the script needs nothing from the network: its inputs are staged by SageMaker
            "EnableNetworkIsolation": True,
            "EnableInterContainerTrafficEncryption": True,
        }
        static_hyperparameters = {
            "sagemaker_program": training.ENTRY_POINT,
            "sagemaker_submit_directory": source_bundle_uri,
            "sagemaker_region": config.region,
        }
        train_state: dict[str, Any] = {
            "Type": "Task",
            "Comment": "SageMaker training (managed spot, checkpoints, KMS, VPC, network isolation), "
            "awaited with .sync",
            "Resource": TRAINING_JOB_SYNC,
            "Parameters": {
                "TrainingJobName.$": "$.job_name",
                "AlgorithmSpecification": algorithm_spec,
                "HyperParameters": {
                    **static_hyperparameters,
                    training.HP_ALGORITHM: settings.algorithm,
                    training.HP_SEED: str(settings.gate.seed),
                    f"{training.HP_MODEL_VERSION}.$": "$.model_version",
                },
                **job_common,
                "Tags": [{"Key": "TrainingRun", "Value.$": "$.run_id"}],
            },
            "ResultSelector": _job_result("$"),
            "ResultPath": "$.training",
        }
        self.train = sfn.CustomState(self, "Train", state_json=train_state)
        tune_state: dict[str, Any] = {
            "Type": "Task",
            "Comment": "SageMaker hyper-parameter tuning (the same job definition), awaited with .sync",
            "Resource": TUNING_JOB_SYNC,
            "Parameters": {
                "HyperParameterTuningJobName.$": "$.tuning_job_name",
                "HyperParameterTuningJobConfig": {
                    "Strategy": "Bayesian",
                    "HyperParameterTuningJobObjective": {
                        "Type": training.TUNING_OBJECTIVE_TYPE,
                        "MetricName": training.TUNING_OBJECTIVE,
                    },
                    "ResourceLimits": {
                        "MaxNumberOfTrainingJobs": settings.tuning_max_jobs,
                        "MaxParallelTrainingJobs": settings.tuning_max_parallel,
                    },
                    "ParameterRanges": tuning_ranges(settings.algorithm),
                    "TrainingJobEarlyStoppingType": "Off",
                },
                "TrainingJobDefinition": {
                    "StaticHyperParameters": {
                        **static_hyperparameters,
                        training.HP_ALGORITHM: settings.algorithm,
                        training.HP_SEED: str(settings.gate.seed),
                        f"{training.HP_MODEL_VERSION}.$": "$.model_version",
                    },
                    "AlgorithmSpecification": algorithm_spec,
                    **job_common,
                },
                "Tags": [{"Key": "TrainingRun", "Value.$": "$.run_id"}],
            },
            "ResultSelector": {
                "TrainingJobName.$": "$.BestTrainingJob.TrainingJobName",
                "TunedHyperParameters.$": "$.BestTrainingJob.TunedHyperParameters",
                "Objective.$": "$.BestTrainingJob.FinalHyperParameterTuningJobObjectiveMetric",
                "Counters.$": "$.TrainingJobStatusCounters",
            },
            "ResultPath": "$.tuning",
        }
        self.tune = sfn.CustomState(self, "Tune", state_json=tune_state)
        describe_best = tasks.CallAwsService(
            self,
            "DescribeBestJob",
            comment="The tuning job has no model artifact of its own: describe its best training job",
            service="sagemaker",
            action="describeTrainingJob",
            parameters={"TrainingJobName": sfn.JsonPath.string_at("$.tuning.TrainingJobName")},
            iam_resources=[
                cdk.Stack.of(self).format_arn(
                    service="sagemaker",
                    resource="training-job",
                    resource_name=f"{training.job_name_prefix(env)}*",
                )
            ],
            result_selector=_job_result("$"),
            result_path="$.training",
        )
        for state in (self.train, self.tune):
            state.add_retry(
                errors=list(RETRIED_SAGEMAKER_ERRORS),
                interval=cdk.Duration.seconds(30),
                max_attempts=3,
                backoff_rate=2.0,
                jitter_strategy=sfn.JitterType.FULL,
            )
        return describe_best

    @staticmethod
    def stopping_condition(config: EnvironmentConfig) -> dict[str, int]:
        """``MaxRuntimeInSeconds`` and, with spot, ``MaxWaitTimeInSeconds`` (checked: wait >= runtime)."""
        settings = config.training
        condition = {"MaxRuntimeInSeconds": settings.max_runtime_seconds}
        if settings.use_spot:
            if settings.max_wait_seconds < settings.max_runtime_seconds:
                raise ValueError("MaxWaitTimeInSeconds must be >= MaxRuntimeInSeconds with managed spot")
            condition["MaxWaitTimeInSeconds"] = settings.max_wait_seconds
        return condition


def training_state_machine_name(config: EnvironmentConfig) -> str:
    return config.resource_name("training")


def tuning_ranges(algorithm: str) -> dict[str, list[dict[str, str]]]:
    """The searched hyper-parameters of ``algorithm`` (names from ``shared.training``)."""
    if algorithm == "logistic_regression":
        return {
            "ContinuousParameterRanges": [
                {"Name": training.HP_C, "MinValue": "0.01", "MaxValue": "100", "ScalingType": "Logarithmic"}
            ],
            "IntegerParameterRanges": [],
            "CategoricalParameterRanges": [],
        }
    return {
        "ContinuousParameterRanges": [
            {
                "Name": training.HP_LEARNING_RATE,
                "MinValue": "0.01",
                "MaxValue": "0.3",
                "ScalingType": "Logarithmic",
            }
        ],
        "IntegerParameterRanges": [
            {"Name": training.HP_MAX_DEPTH, "MinValue": "2", "MaxValue": "4", "ScalingType": "Linear"},
            {"Name": training.HP_N_ESTIMATORS, "MinValue": "50", "MaxValue": "300", "ScalingType": "Linear"},
        ],
        "CategoricalParameterRanges": [],
    }


def _job_result(root: str) -> dict[str, str]:
    """What the run keeps of DescribeTrainingJob's answer."""
    return {
        "job_name.$": f"{root}.TrainingJobName",
        "model_artifact.$": f"{root}.ModelArtifacts.S3ModelArtifacts",
        "billable_seconds.$": f"{root}.BillableTimeInSeconds",
        "training_seconds.$": f"{root}.TrainingTimeInSeconds",
        "metrics.$": f"{root}.FinalMetricDataList",
        "hyperparameters.$": f"{root}.HyperParameters",
    }
