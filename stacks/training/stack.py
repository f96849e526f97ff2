"""Training layer: validated data → spot training or tuning → an evaluation gate → a challenger.

- **Functions**: Validate, Preprocess and Evaluate run the model's own code (scikit-learn, numpy,
  scipy: far over a zip function's 250 MB), so they share one container image
  (``stacks/training/image``) with one command each; ``training-runs`` (starts runs under the run
  lock, records outcomes) and ``training-register`` (registry and desired state, through
  ``mlpipe``) are zip functions with the locked runtime layer. All in the isolated subnets.
- **The run**: ``stacks/training/workflow.py``; SageMaker jobs with managed spot, checkpoints,
  KMS, VPC and network isolation, the AWS scikit-learn 1.4-2 image running
  ``model/sagemaker_train.py`` from a source bundle (``shared.source_bundle``) uploaded as an asset.
- **Triggers**, all to the runs function (which owns the lock and names the execution, so two
  triggers at once make one run): the schedule (config), a drift alarm's change to ALARM (by the
  alarm's configured name, so either layer may be deployed first), and new objects under the
  training data prefix (the data bucket sends its events to EventBridge).
- **Metadata table** (``stacks/training/metadata.py``): experiments, runs, model versions with
  lineage, A/B configurations; SSM stays the endpoint's desired-state pointer.

The deploy function (inference layer) completes the run's ``DeployChallenger`` task token; it is
granted ``states:SendTaskSuccess/Failure`` there (those actions have no resource-level permissions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from constructs import Construct

from shared import training
from shared.config import EnvironmentConfig, FunctionConfig
from shared.infra.acknowledge import acknowledge_wildcards
from shared.infra.container_image import stage_context
from shared.infra.python_function import (
    BUILD_DIR,
    DependenciesLayer,
    HardenedFunction,
    source_code,
    vpc_functions,
)
from shared.infra.queues import dead_letter_queue
from shared.outputs import TrainingOutputs
from shared.source_bundle import build_source_bundle
from stacks.data.references import data_references
from stacks.data.stack import DataStack
from stacks.inference.stack import InferenceStack
from stacks.network.stack import NetworkStack
from stacks.training.metadata import MetadataTable
from stacks.training.workflow import TrainingWorkflow, training_state_machine_name

DOCKERFILE = Path(__file__).with_name("image") / "Dockerfile"
# what the image's handlers import (the model's code, the registry's reads, the contracts)
IMAGE_SOURCES = (
    "shared/__init__.py",
    "shared/config.py",
    "shared/model_parameters.py",
    "shared/training.py",
    "mlpipe",
    "model/__init__.py",
    "model/data.py",
    "model/schema.py",
    "model/inference.py",
    "model/train.py",
    "stacks/__init__.py",
    "stacks/training/__init__.py",
    "stacks/training/runtime",
)
IMAGE_HANDLERS = {
    training.VALIDATE_FUNCTION: "stacks.training.runtime.handlers.validate.handler",
    training.PREPROCESS_FUNCTION: "stacks.training.runtime.handlers.preprocess.handler",
    training.EVALUATE_FUNCTION: "stacks.training.runtime.handlers.evaluate.handler",
}
ZIP_HANDLERS = {
    training.RUNS_FUNCTION: "stacks.training.runtime.runs.handler",
    training.REGISTER_FUNCTION: "stacks.training.runtime.register.handler",
}
ZIP_SOURCES = (
    "shared/__init__.py",
    "shared/config.py",
    "shared/model_parameters.py",
    "shared/outputs.py",
    "shared/training.py",
    "mlpipe",
    "model/__init__.py",
    "model/schema.py",
    "stacks/__init__.py",
    "stacks/training/__init__.py",
    "stacks/training/runtime/__init__.py",
    "stacks/training/runtime/inputs.py",
    "stacks/training/runtime/runs.py",
    "stacks/training/runtime/register.py",
)
BUNDLE_DIR = BUILD_DIR.parent / "training"


class TrainingStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        network: NetworkStack,
        data: DataStack,
        inference: InferenceStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        settings = config.training
        refs = data_references(self, config=config, data_key=data.data_key)
        self.data_bucket, self.model_bucket = refs.data_bucket, refs.model_bucket
        self.config = config
        self.state_machine_arn = self.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=training_state_machine_name(config),
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        self.topic = sns.Topic(
            self,
            "Notifications",
            topic_name=config.resource_name("training-notifications"),
            display_name=f"ml-pipeline {config.name} training runs",
            master_key=data.ops_key,
            enforce_ssl=True,
        )
        self.metadata = MetadataTable(self, "Metadata", config=config, key=data.data_key)
        table = self.metadata.table
        self.bundle = s3_assets.Asset(self, "SourceBundle", path=str(build_source_bundle(BUNDLE_DIR)))

        # ----- functions -----
        common_env = {
            "DATA_BUCKET": self.data_bucket.bucket_name,
            "MODEL_BUCKET": self.model_bucket.bucket_name,
        }
        context = stage_context(
            "training", dockerfile=DOCKERFILE, sources=IMAGE_SOURCES, groups=("runtime", "model")
        )

        def image_function(name: str, description: str, sizing: FunctionConfig) -> HardenedFunction:
            return HardenedFunction(
                self,
                "".join(part.capitalize() for part in name.split("-")) + "Function",
                config=config,
                name=name,
                description=description,
                code=lambda_.Code.from_asset_image(
                    str(context),
                    cmd=[IMAGE_HANDLERS[name]],
                    platform=cdk.aws_ecr_assets.Platform.LINUX_AMD64,
                ),
                handler=IMAGE_HANDLERS[name],
                image=True,
                sizing=sizing,
                log_key=data.ops_key,
                environment=common_env,
                vpc=network.vpc,
                security_groups=[network.compute_security_group],
            )

        runs_prefix = f"{training.RUNS_PREFIX}*"
        self.validate_function = image_function(
            training.VALIDATE_FUNCTION,
            "Validates a training run's data (every check reported)",
            settings.validate_function,
        )
        self.data_bucket.grant_read(self.validate_function.role, f"{training.TRAINING_DATA_PREFIX}*")
        self.data_bucket.grant_put(self.validate_function.role, runs_prefix)
        self._grant_champion_reads(self.validate_function.role, data, ("schema.json", "baseline.json"))

        self.preprocess_function = image_function(
            training.PREPROCESS_FUNCTION,
            "Splits a training run's data (seeded, stratified)",
            settings.preprocess_function,
        )
        self.data_bucket.grant_read(self.preprocess_function.role, f"{training.TRAINING_DATA_PREFIX}*")
        self.data_bucket.grant_put(self.preprocess_function.role, runs_prefix)
        self._grant_champion_reads(self.preprocess_function.role, data, ("schema.json",))

        self.evaluate_function = image_function(
            training.EVALUATE_FUNCTION,
            "Scores the candidate and the live champion on the run's test split (the gate)",
            settings.evaluate_function,
        )
        self.data_bucket.grant_read(self.evaluate_function.role, runs_prefix)
        self.data_bucket.grant_put(self.evaluate_function.role, runs_prefix)
        self._grant_champion_reads(self.evaluate_function.role, data, ("model.tar.gz", "schema.json"))

        layer = DependenciesLayer(
            self, "Dependencies", description=f"ml-pipeline {config.name}: locked runtime dependencies"
        ).layer
        make_function = vpc_functions(
            self,
            config=config,
            code=source_code(ZIP_SOURCES),
            layer=layer,
            log_key=data.ops_key,
            vpc=network.vpc,
            security_groups=[network.compute_security_group],
        )
        self.runs_function: HardenedFunction = make_function(
            "TrainingRunsFunction",
            name=training.RUNS_FUNCTION,
            description="Starts training runs under the run lock and records their outcomes",
            handler=ZIP_HANDLERS[training.RUNS_FUNCTION],
            sizing=settings.runs_function,
            environment={
                **common_env,
                "METADATA_TABLE": table.table_name,
                "STATE_MACHINE_ARN": self.state_machine_arn,
            },
        )
        table.grant_read_write_data(self.runs_function.role)
        self.data_bucket.grant_read(self.runs_function.role, f"{training.TRAINING_DATA_PREFIX}*")
        # the registry's versions (the candidate's version is the next free number)
        self.runs_function.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParametersByPath"],
                resources=[data.model_registry.models_path_arn, self._models_path_arn(data)],
            )
        )
        self.runs_function.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[self.state_machine_arn])
        )

        self.register_function: HardenedFunction = make_function(
            "TrainingRegisterFunction",
            name=training.REGISTER_FUNCTION,
            description="Registers a promoted candidate and requests it as challenger (mlpipe)",
            handler=ZIP_HANDLERS[training.REGISTER_FUNCTION],
            sizing=settings.runs_function,
            environment={
                **common_env,
                "METADATA_TABLE": table.table_name,
                "ENDPOINT_NAME": inference.endpoint.endpoint_name,
                "SAGEMAKER_EXECUTION_ROLE_ARN": inference.endpoint.execution_role.role_arn,
                "INFERENCE_IMAGE_URI": inference.endpoint.image_uri,
            },
        )
        table.grant_write_data(self.register_function.role)
        self._grant_register(data)

        # ----- the SageMaker job's role -----
        self.training_role = self._training_role(config, data, network)

        self.workflow = TrainingWorkflow(
            self,
            "Run",
            config=config,
            validate_function=self.validate_function.function,
            preprocess_function=self.preprocess_function.function,
            evaluate_function=self.evaluate_function.function,
            register_function=self.register_function.function,
            runs_function=self.runs_function.function,
            training_role=self.training_role,
            source_bundle_uri=self.bundle.s3_object_url,
            data_key=data.data_key,
            subnets=network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnets,
            security_group=network.compute_security_group,
            topic=self.topic,
            log_key=data.ops_key,
        )
        self._grant_sagemaker(config)
        data.ops_key.grant(self.workflow.state_machine.role, "kms:GenerateDataKey*", "kms:Decrypt")
        self._triggers(config, data)
        self._acknowledge_wildcards(config)

        outputs = {
            TrainingOutputs.STATE_MACHINE_ARN: self.workflow.state_machine.state_machine_arn,
            TrainingOutputs.METADATA_TABLE_NAME: table.table_name,
            TrainingOutputs.RUNS_FUNCTION_NAME: self.runs_function.function.function_name,
            TrainingOutputs.NOTIFICATION_TOPIC_ARN: self.topic.topic_arn,
            TrainingOutputs.SCHEDULE_RULE_NAME: self.schedule.rule_name,
            TrainingOutputs.TRAINING_ROLE_ARN: self.training_role.role_arn,
            TrainingOutputs.SOURCE_BUNDLE_URI: self.bundle.s3_object_url,
            TrainingOutputs.DATA_BUCKET_NAME: self.data_bucket.bucket_name,
            TrainingOutputs.DATA_PREFIX: training.TRAINING_DATA_PREFIX,
        }
        for key, value in outputs.items():
            cdk.CfnOutput(self, key, value=value)

    # ----- grants -----
    def _models_path_arn(self, data: DataStack) -> str:
        """The registry's path itself (GetParametersByPath authorizes on the path's ARN)."""
        return self.format_arn(
            service="ssm", resource="parameter", resource_name=data.model_registry.models_path.lstrip("/")
        )

    def _grant_register(self, data: DataStack) -> None:
        """mlpipe's registry (upload, metadata, history) and the desired state with the deploy lock."""
        role = self.register_function.role
        self.data_bucket.grant_read(role, f"{training.RUNS_PREFIX}*/output/*")
        self.model_bucket.grant_read(role, "models/*")
        self.model_bucket.grant_put(role, "models/*")
        self.model_bucket.grant_read(role, "registry/*")
        self.model_bucket.grant_put(role, "registry/*")
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "ssm:GetParameter",
                    "ssm:GetParameters",
                    "ssm:GetParametersByPath",
                    "ssm:PutParameter",
                    "ssm:DeleteParameter",  # the deploy lock, released if writing the desired state fails
                ],
                resources=[data.model_registry.models_path_arn, self._models_path_arn(data)],
            )
        )

    def _grant_champion_reads(self, role: iam.IRole, data: DataStack, files: tuple[str, ...]) -> None:
        """The champion's files (at the S3 version its registry record pins) and the registry's reads
        (the active version, the version's record; the versions listed when a record is missing)."""
        for name in files:
            self.model_bucket.grant_read(role, f"models/*/{name}")
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObjectVersion"],
                resources=[self.model_bucket.arn_for_objects(f"models/*/{name}") for name in files],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameter", "ssm:GetParametersByPath"],
                resources=[data.model_registry.models_path_arn, self._models_path_arn(data)],
            )
        )

    def _training_role(self, config: EnvironmentConfig, data: DataStack, network: NetworkStack) -> iam.Role:
        role = iam.Role(
            self,
            "TrainingJobRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"{config.resource_name('training')}: the SageMaker training jobs of the runs",
        )
        runs = f"{training.RUNS_PREFIX}*"
        self.data_bucket.grant_read(role, runs)  # channels and checkpoints
        self.data_bucket.grant_put(role, runs)  # model output and checkpoints
        self.bundle.grant_read(role)
        data.data_key.grant_encrypt_decrypt(role)
        return role

    def _grant_sagemaker(self, config: EnvironmentConfig) -> None:
        """What Step Functions' SageMaker .sync integrations need (what CDK's task would grant)."""
        role = self.workflow.state_machine.role
        prefix = training.job_name_prefix(config.name)
        jobs = self.format_arn(service="sagemaker", resource="training-job", resource_name=f"{prefix}*")
        tuning = self.format_arn(
            service="sagemaker", resource="hyper-parameter-tuning-job", resource_name=f"{prefix}*"
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=[jobs],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateHyperParameterTuningJob",
                    "sagemaker:DescribeHyperParameterTuningJob",
                    "sagemaker:StopHyperParameterTuningJob",
                    "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=[tuning],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.training_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        rules = [
            self.format_arn(service="events", resource="rule", resource_name=name)
            for name in (
                "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
                "StepFunctionsGetEventsForSageMakerTuningJobsRule",
            )
        ]
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"], resources=rules
            )
        )

    def _triggers(self, config: EnvironmentConfig, data: DataStack) -> None:
        self.dead_letters = dead_letter_queue(
            self,
            "EventsDeadLetters",
            config=config,
            key=data.ops_key,
            name="training-events-dlq",
            retention_days=14,
            holds="Training triggers (schedule ticks, drift alarms, new data objects) EventBridge could not "
            "deliver to the runs function after its retries.",
        )

        def target() -> targets.LambdaFunction:
            return targets.LambdaFunction(
                self.runs_function.function,
                dead_letter_queue=self.dead_letters,
                retry_attempts=3,
                max_event_age=cdk.Duration.hours(2),
            )

        self.schedule = events.Rule(
            self,
            "Schedule",
            rule_name=config.resource_name("training-schedule"),
            description="Scheduled retraining on the newest data under the training data prefix",
            schedule=events.Schedule.expression(config.training.schedule),
            targets=[target()],
        )
        alarms = [config.drift_alarm_name(variant.name) for variant in config.inference.variants]
        self.drift = events.Rule(
            self,
            "DriftAlarm",
            rule_name=config.resource_name("training-drift"),
            description="A drift alarm going to ALARM starts a run (the observability layer's alarm by name)",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={"alarmName": alarms, "state": {"value": ["ALARM"]}},
            ),
            targets=[target()],
        )
        self.data_created = events.Rule(
            self,
            "DataCreated",
            rule_name=config.resource_name("training-data-created"),
            description="A new object under the training data prefix starts a run on it",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [self.data_bucket.bucket_name]},
                    "object": {"key": [{"prefix": training.TRAINING_DATA_PREFIX}]},
                },
            ),
            targets=[target()],
        )

    def _acknowledge_wildcards(self, config: EnvironmentConfig) -> None:
        runs = f"Resource::arn:*:s3:::*/{training.RUNS_PREFIX}*"
        run_files = {
            runs: "The run's own folder under the runs prefix (training/runs/{run id}/: splits, reports, "
            "the job's output and checkpoints); run ids are made at run time.",
        }
        training_data = {
            f"Resource::arn:*:s3:::*/{training.TRAINING_DATA_PREFIX}*": "Training data objects under the "
            "training data prefix (named by whoever uploads a data set); read-only.",
        }
        champion = {
            "Resource::arn:*:s3:::*/models/*/*": "The champion's files (models/{version}/...) of whichever "
            "version is active; versions are registered after deployment. Read-only.",
        }
        registry = {
            f"Resource::arn:*:ssm:*:parameter{config.model_parameters_path}/*": "The model registry's "
            "parameters (one per registered version, the desired state, the deploy lock), all under the "
            "stage's registry path.",
        }
        table = {
            "Resource::<MetadataTable*.Arn>/index/*": "The metadata table's own indexes (CDK's table grant); "
            "queried by the runs of an experiment, status and model version.",
        }
        registry_reads = {
            f"Resource::arn:*:ssm:*:parameter{config.model_parameters_path}/*": "Read-only: the active "
            "version and the champion's registry record (one parameter per registered version, created "
            "after deployment), under the stage's registry path.",
        }
        for function in (self.validate_function, self.preprocess_function, self.evaluate_function):
            function.acknowledge_wildcards({**run_files, **training_data, **champion, **registry_reads})
        self.runs_function.acknowledge_wildcards({**training_data, **registry, **table})
        self.register_function.acknowledge_wildcards(
            {
                f"Resource::arn:*:s3:::*/{training.RUNS_PREFIX}*/output/*": "The trained model archive in "
                "the run's output folder (training/runs/{run id}/output/{job}/...); read-only.",
                "Resource::arn:*:s3:::*/models/*": "mlpipe's registry uploads the new version's archive, "
                "schema and baseline under models/{version}/ (the version is the run's candidate).",
                "Resource::arn:*:s3:::*/registry/*": "mlpipe's registry history entries (one object per "
                "registration, named by time).",
                **registry,
                **table,
            }
        )
        acknowledge_wildcards(
            self.training_role,
            {
                **run_files,
                "Resource::arn:*:s3:::cdk-*-assets-*/*": "The source bundle, a CDK file asset: its key is "
                "the asset's content hash, in the bootstrap assets bucket (CDK's asset grant).",
                "Action::s3:*": "Action families of CDK's S3 grants (GetObject*, GetBucket*, List*, Abort*), "
                "each in a statement limited to one bucket and key prefix.",
                "Action::kms:*": "Action families of CDK's KMS grants (GenerateDataKey*, ReEncrypt*), "
                "limited to the data key's ARN in the same statement.",
            },
        )
        prefix = training.job_name_prefix(config.name)
        sagemaker_arn = f"Resource::arn:aws:sagemaker:{self.region}:{self.account}"
        functions = ", ".join([*IMAGE_HANDLERS, *ZIP_HANDLERS])
        acknowledge_wildcards(
            self.workflow.state_machine.role,
            {
                "Resource::*": "Step Functions' log delivery (logs:CreateLogDelivery and the rest) and X-Ray "
                "tracing have no resource-level permissions (AWS service authorization reference).",
                "Resource::<Training*Function*.Arn>:*": f"Versions and aliases of this stack's own functions "
                f"({functions}), which CDK's LambdaInvoke grants beside the unqualified ARNs.",
                f"{sagemaker_arn}:training-job/{prefix}*": "The runs' "
                f"training jobs, named {prefix}{{run id}} at run time (tuning's jobs carry the tuning job's "
                "name, which has the same prefix).",
                f"{sagemaker_arn}:hyper-parameter-tuning-job/{prefix}*": (
                    f"The runs' tuning jobs, named {prefix}t{{hash of the run id}} at run time."
                ),
                "Action::kms:GenerateDataKey*": "Publishing to the notification topic, which the ops key "
                "encrypts: GenerateDataKey* is the action family SNS needs, on the ops key's ARN only.",
            },
        )
