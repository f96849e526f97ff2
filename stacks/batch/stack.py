"""Batch layer: AWS Batch on Fargate, the Step Functions run, its schedule and its S3 trigger.

Three functions share one code asset (the batch runtime) and one dependencies layer; all run in
the VPC's isolated subnets:

- ``batch-list``: lists a prefix's inputs that have no manifest for their current ETag yet;
- ``batch-inline``: the batch job's own code for one small input;
- ``batch-report``: sums the inputs' manifests into the run manifest.

Large inputs run as the batch job on Fargate (``stacks/batch/compute.py``); the state machine is
in ``stacks/batch/workflow.py``. A run starts on the schedule (cron from config) for the whole
input prefix, or when an object is created under the prefix, for that object; either way inputs
already processed are skipped, so the two never do the same work twice.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge_wildcards
from shared.infra.python_function import DependenciesLayer, HardenedFunction, source_code, vpc_functions
from shared.infra.queues import dead_letter_queue
from shared.outputs import BatchOutputs
from stacks.batch.compute import JOB_SOURCES, BatchCompute
from stacks.batch.workflow import BatchWorkflow
from stacks.data.references import data_references
from stacks.data.stack import DataStack
from stacks.inference.stack import InferenceStack
from stacks.network.stack import NetworkStack

HANDLERS = {
    "batch-list": "stacks.batch.runtime.handlers.list_inputs.handler",
    "batch-inline": "stacks.batch.runtime.handlers.predict_inline.handler",
    "batch-report": "stacks.batch.runtime.handlers.report.handler",
}
# the handlers import the job's modules and the metric names (shared/telemetry.py)
RUNTIME_SOURCES = (*JOB_SOURCES, "shared/telemetry.py")


class BatchStack(cdk.Stack):
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
        settings = config.batch
        # the data layer's resources by their configured names (literal ARNs in every grant)
        refs = data_references(self, config=config, data_key=data.data_key)
        self.model_bucket, self.data_bucket = refs.model_bucket, refs.data_bucket
        self.results_bucket, self.predictions_table = refs.results_bucket, refs.predictions_table
        self.endpoint_arn = inference.endpoint.endpoint_arn
        output_uri = f"s3://{self.results_bucket.bucket_name}/{settings.output_prefix}"
        runs_uri = f"s3://{self.results_bucket.bucket_name}/{settings.runs_prefix}"
        job_environment = {
            "MODEL_BUCKET": self.model_bucket.bucket_name,
            "MODEL_PARAMETERS_PATH": config.model_parameters_path,
            "PREDICTIONS_TABLE": self.predictions_table.table_name,
            "ENDPOINT_NAME": inference.endpoint.endpoint_name,
            "OUTPUT_PREFIX": output_uri,
            "PREDICTION_TTL_DAYS": str(config.data.prediction_ttl_days),
        }

        # Run notifications (finished, failed); subscribe the team's channel. Ops key, whose
        # policy admits EventBridge and CloudWatch; Step Functions publishes with its role.
        self.topic = sns.Topic(
            self,
            "Notifications",
            topic_name=config.resource_name("batch-notifications"),
            display_name=f"ml-pipeline {config.name} batch runs",
            master_key=data.ops_key,
            enforce_ssl=True,
        )

        self.compute = BatchCompute(
            self,
            "Compute",
            config=config,
            vpc=network.vpc,
            security_group=network.compute_security_group,
            log_key=data.ops_key,
            environment=job_environment,
        )
        self._grant_job(self.compute.job_role, config, data)

        layer = DependenciesLayer(
            self, "Dependencies", description=f"ml-pipeline {config.name}: locked runtime dependencies"
        ).layer
        code = source_code(RUNTIME_SOURCES)

        make_function = vpc_functions(
            self,
            config=config,
            code=code,
            layer=layer,
            log_key=data.ops_key,
            vpc=network.vpc,
            security_groups=[network.compute_security_group],
        )

        def function(
            name: str, description: str, sizing: Any, environment: dict[str, str]
        ) -> HardenedFunction:
            made: HardenedFunction = make_function(
                "".join(part.capitalize() for part in name.split("-")) + "Function",
                name=name,
                description=description,
                handler=HANDLERS[name],
                sizing=sizing,
                environment=environment,
            )
            return made

        self.list_function = function(
            "batch-list",
            "Lists a batch run's inputs that are not processed yet",
            settings.list_function,
            {"OUTPUT_PREFIX": output_uri, "MAX_INPUTS": str(settings.max_inputs_per_run)},
        )
        self.data_bucket.grant_read(self.list_function.role, f"{settings.input_prefix}*")
        self.results_bucket.grant_read(self.list_function.role, f"{settings.output_prefix}/*")

        self.inline_function = function(
            "batch-inline",
            "Runs the batch job for one small input",
            settings.inline_function,
            {
                **job_environment,
                "CHUNK_ROWS": str(settings.job.chunk_rows),
                "REQUEST_ROWS": str(settings.job.request_rows),
                "CONCURRENCY": str(settings.job.concurrency),
            },
        )
        self._grant_job(self.inline_function.role, config, data)

        self.report_function = function(
            "batch-report",
            "Writes a batch run's manifest from its inputs' manifests",
            settings.report_function,
            {"OUTPUT_PREFIX": output_uri, "RUNS_PREFIX": runs_uri},
        )
        self.results_bucket.grant_read(self.report_function.role, f"{settings.output_prefix}/*")
        self.results_bucket.grant_put(self.report_function.role, f"{settings.runs_prefix}/*")

        self.workflow = BatchWorkflow(
            self,
            "Run",
            config=config,
            list_function=self.list_function.function,
            inline_function=self.inline_function.function,
            report_function=self.report_function.function,
            compute=self.compute,
            topic=self.topic,
            log_key=data.ops_key,
        )
        # The .sync integration's other calls, which CDK's BatchSubmitJob does not grant (Step
        # Functions' documented policy for "Run a Job"): DescribeJobs (no resource-level
        # permissions) and TerminateJob, which stops the job when the run is stopped or times out.
        machine_role = self.workflow.state_machine.role
        machine_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["batch:DescribeJobs"], resources=["*"])
        )
        machine_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["batch:TerminateJob"],
                resources=[self.format_arn(service="batch", resource="job", resource_name="*")],
            )
        )
        # publishing to the KMS-encrypted topic: SNS encrypts with the publisher's credentials
        data.ops_key.grant(self.workflow.state_machine.role, "kms:GenerateDataKey*", "kms:Decrypt")
        self._triggers(config, data)
        self._acknowledge_wildcards(config)

        outputs = {
            BatchOutputs.STATE_MACHINE_ARN: self.workflow.state_machine.state_machine_arn,
            BatchOutputs.JOB_QUEUE_ARN: self.compute.job_queue_arn,
            BatchOutputs.JOB_DEFINITION_ARN: self.compute.job_definition.job_definition_arn,
            BatchOutputs.NOTIFICATION_TOPIC_ARN: self.topic.topic_arn,
            BatchOutputs.SCHEDULE_RULE_NAME: self.schedule.rule_name,
            BatchOutputs.EVENTS_DEAD_LETTER_QUEUE_URL: self.dead_letters.queue_url,
            BatchOutputs.LIST_FUNCTION_NAME: self.list_function.function.function_name,
            BatchOutputs.INLINE_FUNCTION_NAME: self.inline_function.function.function_name,
            BatchOutputs.REPORT_FUNCTION_NAME: self.report_function.function.function_name,
            BatchOutputs.INPUT_BUCKET_NAME: self.data_bucket.bucket_name,
            BatchOutputs.INPUT_PREFIX: settings.input_prefix,
            BatchOutputs.OUTPUT_PREFIX: output_uri,
            BatchOutputs.RUNS_PREFIX: runs_uri,
        }
        for key, value in outputs.items():
            cdk.CfnOutput(self, key, value=value)

    def _grant_job(self, role: iam.IRole, config: EnvironmentConfig, data: DataStack) -> None:
        """The batch job's calls: read inputs and the champion's schema, invoke, write results."""
        settings = config.batch
        self.data_bucket.grant_read(role, f"{settings.input_prefix}*")
        # the job writes its results; a re-run with other chunk sizes lists and deletes the part
        # files the earlier run left beyond its own
        self.results_bucket.grant_put(role, f"{settings.output_prefix}/*")
        self.results_bucket.grant_read(role, f"{settings.output_prefix}/*")
        # DeleteObject only: the results bucket is versioned, and no run may remove a version
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:DeleteObject"],
                resources=[self.results_bucket.arn_for_objects(f"{settings.output_prefix}/*")],
            )
        )
        self.model_bucket.grant_read(role, "models/*/schema.json")
        data.model_registry.active_version.grant_read(role)
        self.predictions_table.grant_write_data(role)
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint"], resources=[self.endpoint_arn])
        )

    def _triggers(self, config: EnvironmentConfig, data: DataStack) -> None:
        """The schedule (the whole prefix) and object-created events (one object) start runs."""
        settings = config.batch
        self.dead_letters = dead_letter_queue(
            self,
            "EventsDeadLetters",
            config=config,
            key=data.ops_key,
            name="batch-events-dlq",
            retention_days=14,
            holds="Run requests (schedule ticks, new input objects) EventBridge could not deliver to "
            "the state "
            "machine after its retries.",
        )

        def target(run_input: events.RuleTargetInput) -> targets.SfnStateMachine:
            return targets.SfnStateMachine(
                self.workflow.state_machine,
                input=run_input,
                dead_letter_queue=self.dead_letters,
                retry_attempts=3,
                max_event_age=cdk.Duration.hours(2),
            )

        self.schedule = events.Rule(
            self,
            "Schedule",
            rule_name=config.resource_name("batch-schedule"),
            description="The daily batch run over every unprocessed input under the input prefix",
            schedule=events.Schedule.expression(settings.schedule),
            targets=[
                target(
                    events.RuleTargetInput.from_object(
                        {"bucket": self.data_bucket.bucket_name, "prefix": settings.input_prefix}
                    )
                )
            ],
        )
        self.object_created = events.Rule(
            self,
            "InputCreated",
            rule_name=config.resource_name("batch-input-created"),
            description="A new input object under the input prefix starts a run for that object",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [self.data_bucket.bucket_name]},
                    "object": {"key": [{"prefix": settings.input_prefix}]},
                },
            ),
            targets=[
                target(
                    events.RuleTargetInput.from_object(
                        {
                            "bucket": events.EventField.from_path("$.detail.bucket.name"),
                            "prefix": events.EventField.from_path("$.detail.object.key"),
                        }
                    )
                )
            ],
        )

    def _acknowledge_wildcards(self, config: EnvironmentConfig) -> None:
        settings = config.batch
        acknowledge_wildcards(
            self.compute.execution_role,
            {
                "Resource::*": "ecr:GetAuthorizationToken has no resource-level permissions (AWS service "
                "authorization reference); image pulls themselves are limited to the assets repository.",
            },
        )
        functions = ", ".join(HANDLERS)
        acknowledge_wildcards(
            self.workflow.state_machine.role,
            {
                "Resource::*": "Step Functions' log delivery (logs:CreateLogDelivery and the rest), "
                "X-Ray tracing "
                "and batch:DescribeJobs have no resource-level permissions (AWS service authorization "
                "reference).",
                "Resource::<*Function*.Arn>:*": f"Versions and aliases of this stack's own functions "
                f"({functions}), "
                "which CDK's LambdaInvoke grants beside the unqualified ARNs.",
                f"Resource::arn:aws:batch:{self.region}:{self.account}:job-definition/*": "CDK's "
                "BatchSubmitJob "
                "grants SubmitJob on job definitions of this account and region, because a job "
                "definition's ARN "
                "carries its revision; the same statement limits the queue to this stack's queue, and "
                "the state "
                "machine's definition names this stack's job definition only.",
                f"Resource::arn:aws:batch:{self.region}:{self.account}:job/*": "TerminateJob on the "
                "jobs the run "
                "submitted: job ids are generated at submission, so only the account's and region's job ARN "
                "prefix can be named.",
                "Action::kms:GenerateDataKey*": "Publishing to the notification topic, which the ops key "
                "encrypts: GenerateDataKey* is the action family SNS needs, on the ops key's ARN only.",
            },
        )
        inputs = {
            f"Resource::arn:*:s3:::*/{settings.input_prefix}*": "Input objects under the batch input prefix "
            "(named by whoever drops a file there); read-only.",
        }
        job = {
            **inputs,
            f"Resource::arn:*:s3:::*/{settings.output_prefix}/*": "Results, rejects and manifests the "
            "job writes "
            "under the output prefix, one folder per input key (known only at run time).",
            "Resource::arn:*:s3:::*/models/*/schema.json": "The feature schema of whichever version is the "
            "champion (models/{version}/schema.json); versions are registered after deployment.",
            "Resource::arn:*:dynamodb:*:table/*/index/*": "The predictions table's indexes (CDK's table "
            "grant); "
            "the job only writes items.",
            "Action::s3:*": "Action families of CDK's S3 grants (GetObject*, GetBucket*, List*, "
            "Abort*), each in "
            "a statement limited to one bucket and key prefix.",
            "Action::kms:*": "Action families of CDK's KMS grants (GenerateDataKey*, ReEncrypt*), "
            "limited to the "
            "project's data key ARN in the same statement.",
        }
        acknowledge_wildcards(self.compute.job_role, job)
        self.inline_function.acknowledge_wildcards(job)
        self.list_function.acknowledge_wildcards(
            {
                **inputs,
                f"Resource::arn:*:s3:::*/{settings.output_prefix}/*": "Manifests under the output "
                "prefix, read "
                "to skip inputs processed already (one folder per input key).",
            }
        )
        self.report_function.acknowledge_wildcards(
            {
                f"Resource::arn:*:s3:::*/{settings.output_prefix}/*": "The inputs' manifests under the "
                "output "
                "prefix (one folder per input key), read-only.",
                f"Resource::arn:*:s3:::*/{settings.runs_prefix}/*": "Run manifests, one folder per execution "
                "name (known only at run time).",
            }
        )
