"""The batch run: a Step Functions state machine that lists inputs, predicts them, and reports.

Input: ``{"bucket": "...", "prefix": "batch/input/..."}`` (the schedule sends the input prefix,
the S3 rule the key of the object just created).

    ListInputs ─ AnyInputs? ─ no ──────────────────────────────────────────────── NothingToDo
                     │ yes
                 ProcessInputs (Map over the inputs, bounded concurrency)
                   └ InlineOrBatch? ─ size ≤ inline_max_bytes ─ PredictInline (Lambda)
                                    └ larger ─────────────────── RunBatchJob (Batch .sync)
                     each: Retry on transient errors; Catch → InputFailed (recorded, not hidden)
                 Finish (Parallel: Report (run manifest) ─ CatalogOutputs (Glue StartCrawler)
                                   ‖ NotifyFinished (SNS))
                 AllInputsSucceeded? ─ yes ─ Succeeded
                                     └ no ── NotifyInputsFailed (SNS) ─ InputsFailed (Fail)
    any step's unexpected error ─ NotifyRunFailed (SNS) ─ RunFailed (Fail)

Failures are never turned into success: an input whose Lambda raised or whose job failed is
recorded with its error so its neighbours still finish and the run manifest lists it, and then
the run ends in a Fail state. No fixed waits: Batch jobs are awaited with the ``.sync``
integration, which Step Functions completes from Batch's job state change events.

``CatalogOutputs`` starts the analytics layer's crawler over the batch outputs, so the
``batch_output`` table knows the run's new folders. The crawler is named by
``shared.analytics.crawler_name`` on both sides: the analytics stack, deployed after this one,
creates it, and this stack needs no reference to it (no export, no cycle). A crawl still running
from an earlier run (``Glue.CrawlerRunningException``) picks the new files up, so it is not an
error; transient Glue errors are retried; anything else fails the run as any step's error does.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from shared.analytics import crawler_name
from shared.config import EnvironmentConfig
from shared.infra.logs import EncryptedLogGroup
from shared.infra.states import lambda_task, notice
from stacks.batch.compute import BatchCompute

# Transient errors of submitting a Batch job (service-side failures and throttling). A job that
# ran and failed (States.TaskFailed) is not retried here: Batch's retry strategy already retried
# what a retry can fix.
TRANSIENT_BATCH_ERRORS = ("Batch.AWSBatchException", "Batch.ServerException")
# a crawl already running will see the new outputs; throttling and service faults are retried
CRAWLER_RUNNING = "Glue.CrawlerRunningException"
TRANSIENT_GLUE_ERRORS = (
    "Glue.OperationTimeoutException",
    "Glue.InternalServiceException",
    "Glue.ThrottlingException",
)
EXECUTION = "$$.Execution.Name"


class BatchWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        list_function: lambda_.IFunction,
        inline_function: lambda_.IFunction,
        report_function: lambda_.IFunction,
        compute: BatchCompute,
        topic: sns.ITopic,
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.batch
        env = config.name

        def invoke(
            construct_id: str, function: lambda_.IFunction, comment: str, **kwargs: object
        ) -> tasks.LambdaInvoke:
            return lambda_task(self, construct_id, function, comment, **kwargs)

        def notify(construct_id: str, subject: str, message: dict[str, object]) -> tasks.SnsPublish:
            """An SNS notice naming the execution; its result is discarded (the state passes through)."""
            return notice(
                self,
                construct_id,
                topic=topic,
                subject=f"ml-pipeline {env}: {subject}",
                names={"execution": EXECUTION},
                message=message,
            )

        # ----- failure paths -----
        run_failed = notify(
            "NotifyRunFailed",
            "batch run FAILED",
            {
                "error": sfn.JsonPath.string_at("$.error.Error"),
                "cause": sfn.JsonPath.string_at("$.error.Cause"),
            },
        ).next(
            sfn.Fail(
                self,
                "RunFailed",
                error="BatchRunFailed",
                cause="A step of the run failed; see NotifyRunFailed",
            )
        )

        def catch(state: tasks.LambdaInvoke | sfn.Map | sfn.Parallel) -> None:
            state.add_catch(run_failed, errors=[sfn.Errors.ALL], result_path="$.error")

        # ----- list -----
        list_inputs = invoke(
            "ListInputs",
            list_function,
            "Inputs under the prefix not processed yet (same ETag), with their sizes",
            payload=sfn.TaskInput.from_object(
                {"bucket": sfn.JsonPath.string_at("$.bucket"), "prefix": sfn.JsonPath.string_at("$.prefix")}
            ),
            output_path="$.Payload",
        )
        catch(list_inputs)

        # ----- per input: inline or Batch -----
        predict_inline = invoke(
            "PredictInline",
            inline_function,
            "A small input: the batch job's code in a Lambda function",
            result_selector={"mode": "inline", "counts": sfn.JsonPath.object_at("$.Payload")},
            result_path="$.outcome",
        )
        run_batch_job = tasks.BatchSubmitJob(
            self,
            "RunBatchJob",
            comment="A large input: the batch job on Fargate, awaited with .sync (no polling loop)",
            job_name=f"predict-{env}",
            job_queue_arn=compute.job_queue_arn,
            job_definition_arn=compute.job_definition.job_definition_arn,
            payload=sfn.TaskInput.from_object({"input": sfn.JsonPath.string_at("$.uri")}),
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_selector={
                "mode": "batch",
                "jobId": sfn.JsonPath.string_at("$.JobId"),
                "status": sfn.JsonPath.string_at("$.Status"),
            },
            result_path="$.outcome",
        )
        run_batch_job.add_retry(
            errors=list(TRANSIENT_BATCH_ERRORS),
            interval=cdk.Duration.seconds(10),
            max_attempts=3,
            backoff_rate=2.0,
            jitter_strategy=sfn.JitterType.FULL,
        )
        input_failed = sfn.Pass(
            self,
            "InputFailed",
            comment="Record the input's error; the run still fails after the others finish",
            parameters={
                "uri": sfn.JsonPath.string_at("$.uri"),
                "key": sfn.JsonPath.string_at("$.key"),
                "failed": True,
                # the error's name only: a failed job's cause is its whole description (kilobytes
                # per input), which is in the execution history and the job's logs
                "error": sfn.JsonPath.string_at("$.error.Error"),
            },
        )
        for task in (predict_inline, run_batch_job):
            task.add_catch(input_failed, errors=[sfn.Errors.ALL], result_path="$.error")
        route = (
            sfn.Choice(self, "InlineOrBatch", comment="Small inputs inline, large ones on AWS Batch")
            .when(sfn.Condition.number_less_than_equals("$.size", settings.inline_max_bytes), predict_inline)
            .otherwise(run_batch_job)
        )
        process = sfn.Map(
            self,
            "ProcessInputs",
            comment="Each listed input, at most max_concurrency at once",
            items_path="$.inputs",
            max_concurrency=settings.max_concurrency,
            result_path="$.results",
        )
        process.item_processor(route)
        catch(process)

        # ----- post-processing beside the notification -----
        report = invoke(
            "Report",
            report_function,
            "The run manifest: every input's counts and errors, and the totals",
            payload=sfn.TaskInput.from_object(
                {"execution": sfn.JsonPath.string_at(EXECUTION), "inputs": sfn.JsonPath.list_at("$.results")}
            ),
            output_path="$.Payload",
        )
        self.crawler_name = crawler_name(config)
        self.crawler_arn = cdk.Stack.of(self).format_arn(
            service="glue", resource="crawler", resource_name=self.crawler_name
        )
        catalog_outputs = tasks.CallAwsService(
            self,
            "CatalogOutputs",
            comment="Start the batch outputs' crawler (the analytics layer's batch_output table)",
            service="glue",
            action="startCrawler",
            parameters={"Name": self.crawler_name},
            iam_resources=[self.crawler_arn],
            iam_action="glue:StartCrawler",
            result_path=sfn.JsonPath.DISCARD,  # the branch's result stays the run manifest
        )
        catalog_outputs.add_retry(
            errors=list(TRANSIENT_GLUE_ERRORS),
            interval=cdk.Duration.seconds(5),
            max_attempts=3,
            backoff_rate=2.0,
            jitter_strategy=sfn.JitterType.FULL,
        )
        catalog_outputs.add_catch(
            sfn.Pass(self, "CrawlerAlreadyRunning", comment="The running crawl picks up the new outputs"),
            errors=[CRAWLER_RUNNING],
            result_path=sfn.JsonPath.DISCARD,
        )
        notify_finished = notify(
            "NotifyFinished",
            "batch run finished",
            {
                "bucket": sfn.JsonPath.string_at("$.bucket"),
                "prefix": sfn.JsonPath.string_at("$.prefix"),
                "inputs": sfn.JsonPath.number_at("$.count"),
                "truncated": sfn.JsonPath.string_at("$.truncated"),
            },
        )
        finish = sfn.Parallel(
            self,
            "Finish",
            comment="The run manifest beside the notification",
            result_selector={"report": sfn.JsonPath.object_at("$[0]")},
            result_path="$.finish",
        )
        finish.branch(report.next(catalog_outputs))
        finish.branch(notify_finished)
        catch(finish)

        inputs_failed = notify(
            "NotifyInputsFailed",
            "batch run FAILED (inputs failed)",
            {"report": sfn.JsonPath.object_at("$.finish.report")},
        ).next(
            sfn.Fail(
                self, "InputsFailed", error="BatchInputsFailed", cause="Inputs failed; see the run manifest"
            )
        )
        verdict = (
            sfn.Choice(self, "AllInputsSucceeded")
            .when(sfn.Condition.number_greater_than("$.finish.report.failed_inputs", 0), inputs_failed)
            .otherwise(sfn.Succeed(self, "Succeeded"))
        )

        definition = list_inputs.next(
            sfn.Choice(self, "AnyInputs", comment="Nothing new under the prefix ends the run here")
            .when(sfn.Condition.number_greater_than("$.count", 0), process.next(finish).next(verdict))
            .otherwise(sfn.Succeed(self, "NothingToDo"))
        )

        self.log_group = EncryptedLogGroup(
            self,
            "Logs",
            config=config,
            log_group_name=f"/aws/vendedlogs/states/{config.resource_name('batch')}",
            key=log_key,
        ).log_group
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=config.resource_name("batch"),
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=cdk.Duration.minutes(settings.run_timeout_minutes),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            comment=f"ml-pipeline {env}: batch predictions for the inputs under a prefix",
        )
