"""Observability layer: one dashboard, alarms that page on what matters, and the drift monitor.

Deployed last: it reads every layer (passed in as objects, so CDK makes the imports), and no
lower layer reaches up to it. The endpoint's guardrail alarms stay in the inference layer (the
endpoint rolls back on them); the composite "model degraded" alarms here reference them.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.python_function import DependenciesLayer
from shared.infra.queues import dead_letter_queue
from shared.outputs import ObservabilityOutputs
from stacks.batch.stack import BatchStack
from stacks.data.references import data_references
from stacks.data.stack import DataStack
from stacks.inference.stack import InferenceStack
from stacks.observability.alarms import OperationalAlarms, Watched, WatchedFunction, WatchedQueue
from stacks.observability.dashboard import OperationsDashboard
from stacks.observability.drift import DriftMonitor
from stacks.observability.queries import LogQueries
from stacks.observability.topics import AlertTopics


class ObservabilityStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        data: DataStack,
        inference: InferenceStack,
        batch: BatchStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # the data layer's resources by their configured names (literal ARNs in every grant)
        refs = data_references(self, config=config, data_key=data.data_key)
        self.topics = AlertTopics(self, "Topics", config=config, key=data.ops_key)
        self.dead_letters = dead_letter_queue(
            self,
            "MonitorEventsDeadLetters",
            config=config,
            key=data.ops_key,
            name="drift-monitor-dlq",
            retention_days=14,
            holds="Schedule ticks EventBridge could not deliver to the drift monitor after its retries.",
        )
        runtime_layer = DependenciesLayer(
            self, "Dependencies", description=f"ml-pipeline {config.name}: locked runtime dependencies"
        ).layer
        self.drift = DriftMonitor(
            self,
            "DriftMonitor",
            config=config,
            table_name=refs.predictions_table.table_name,
            model_bucket=refs.model_bucket,
            data_key=data.data_key,
            log_key=data.ops_key,
            runtime_layer=runtime_layer,
            dead_letters=self.dead_letters,
        )
        functions = {
            "api": inference.api_function,
            "stream": inference.stream_function,
            "deploy": inference.deploy_function,
            "batch-list": batch.list_function,
            "batch-inline": batch.inline_function,
            "batch-report": batch.report_function,
            "drift-monitor": self.drift.function,
        }
        # by name, not by object: an ARN export would tie the inference stack's alarms to this one
        guardrails = {
            variant.name: [
                cloudwatch.Alarm.from_alarm_name(self, f"{variant.name}Guardrail{index}", name)
                for index, name in enumerate(config.guardrail_alarm_names(variant.name))
            ]
            for variant in config.inference.variants
        }
        watched = Watched(
            endpoint_name=inference.endpoint.endpoint_name,
            guardrail_alarms=guardrails,
            api_name=inference.api.rest_api.rest_api_name,
            api_stage=inference.api.stage_name,
            functions=[WatchedFunction(n, f.function.function_name) for n, f in functions.items()],
            stream_function_name=inference.stream_function.function.function_name,
            stream_name=inference.stream.stream.stream_name,
            queues=[
                WatchedQueue("stream-failures", inference.stream.failures.queue_name),
                WatchedQueue("deploy-events-dlq", inference.deploy_dead_letters.queue_name),
                WatchedQueue("batch-events-dlq", batch.dead_letters.queue_name),
                WatchedQueue("drift-monitor-dlq", self.dead_letters.queue_name),
            ],
            state_machine_arns={"batch": batch.workflow.state_machine.state_machine_arn},
            table_name=refs.predictions_table.table_name,
        )
        self.alarms = OperationalAlarms(
            self,
            "Alarms",
            config=config,
            watched=watched,
            paging=self.topics.paging,
            notice=self.topics.notice,
        )
        # AWS Batch publishes no CloudWatch metric of failed jobs: its state-change events notify
        self.batch_failures = events.Rule(
            self,
            "BatchJobFailed",
            rule_name=config.resource_name("batch-job-failed"),
            description="A job of the batch queue failed (after Batch's own attempts): notice",
            event_pattern=events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job State Change"],
                detail={"status": ["FAILED"], "jobQueue": [batch.compute.job_queue_arn]},
            ),
            # the topic by ARN: CDK would otherwise add an unconditioned EventBridge statement to
            # the data layer's ops key policy, which already admits EventBridge for this account
            targets=[
                targets.SnsTopic(
                    sns.Topic.from_topic_arn(
                        self,
                        "NoticeTarget",
                        f"arn:aws:sns:{config.region}:{config.account}:{config.resource_name('notice')}",
                    ),
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=3,
                )
            ],
        )
        self.topics.notice.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topics.notice.topic_arn],
                conditions={"ArnEquals": {"aws:SourceArn": self.batch_failures.rule_arn}},
            )
        )
        log_groups = [f.log_group.log_group_name for f in functions.values()]
        log_groups += [
            batch.compute.log_group.log_group_name,
            batch.workflow.log_group.log_group_name,
            inference.api.access_logs.log_group_name,
        ]
        self.queries = LogQueries(self, "Queries", config=config, log_group_names=log_groups)
        self.dashboard = OperationsDashboard(
            self,
            "Dashboard",
            config=config,
            watched=watched,
            alarms=[*self.alarms.composites, *self.alarms.drift.values()],
            query_names=self.queries.names,
            rule_names={"batch jobs failed": self.batch_failures.rule_name},
        )
        outputs = {
            ObservabilityOutputs.PAGING_TOPIC_ARN: self.topics.paging.topic_arn,
            ObservabilityOutputs.NOTICE_TOPIC_ARN: self.topics.notice.topic_arn,
            ObservabilityOutputs.DASHBOARD_NAME: self.dashboard.dashboard.dashboard_name,
            ObservabilityOutputs.DRIFT_FUNCTION_NAME: self.drift.function.function.function_name,
            ObservabilityOutputs.DRIFT_SCHEDULE_RULE_NAME: self.drift.schedule.rule_name,
            ObservabilityOutputs.PIPELINE_DOWN_ALARM_NAME: self.alarms.pipeline_down.alarm_name,
        }
        for variant, degraded in self.alarms.model_degraded.items():
            outputs[ObservabilityOutputs.model_degraded_alarm(variant)] = degraded.alarm_name
        for variant, drift in self.alarms.drift.items():
            outputs[ObservabilityOutputs.drift_alarm(variant)] = drift.alarm_name
        for key, value in outputs.items():
            cdk.CfnOutput(self, key, value=value)
