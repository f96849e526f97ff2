"""One CDK Stage per environment, holding the layer stacks wired by passing objects."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.tagging import RequiredTags
from stacks.analytics.stack import AnalyticsStack
from stacks.batch.stack import BatchStack
from stacks.data.stack import DataStack
from stacks.inference.stack import InferenceStack
from stacks.network.stack import NetworkStack
from stacks.observability.stack import ObservabilityStack
from stacks.training.stack import TrainingStack


class MlPipelineStage(cdk.Stage):
    """The whole platform for one environment; stack names carry the environment."""

    def __init__(self, scope: Construct, *, config: EnvironmentConfig) -> None:
        env = cdk.Environment(account=config.account, region=config.region)
        super().__init__(scope, config.name, env=env)
        self.config = config
        self.network = NetworkStack(
            self,
            "Network",
            config=config,
            stack_name=config.stack_name("network"),
            description=f"ml-pipeline {config.name}: VPC, endpoints, security groups, NACL, flow logs",
        )
        self.data = DataStack(
            self,
            "Data",
            config=config,
            stack_name=config.stack_name("data"),
            description=f"ml-pipeline {config.name}: KMS keys, buckets, predictions table, model registry",
        )
        self.inference = InferenceStack(
            self,
            "Inference",
            config=config,
            network=self.network,
            data=self.data,
            stack_name=config.stack_name("inference"),
            description=f"ml-pipeline {config.name}: SageMaker endpoint, REST API, Kinesis path, deploy "
            f"function",
        )
        self.batch = BatchStack(
            self,
            "Batch",
            config=config,
            network=self.network,
            data=self.data,
            inference=self.inference,
            stack_name=config.stack_name("batch"),
            description=f"ml-pipeline {config.name}: AWS Batch on Fargate, the Step Functions batch run, its "
            f"schedule and S3 trigger",
        )
        # the jobs call the endpoint: deploy (and roll out) the batch layer after the inference layer
        self.batch.add_dependency(self.inference, "batch jobs invoke the inference layer's endpoint")
        self.analytics = AnalyticsStack(
            self,
            "Analytics",
            config=config,
            network=self.network,
            data=self.data,
            stack_name=config.stack_name("analytics"),
            description=f"ml-pipeline {config.name}: prediction history (stream tap, Firehose Parquet), Glue "
            f"catalog and crawler, Athena workgroup and named queries",
        )
        # the batch run starts this layer's crawler (by its shared name): deploy it after batch
        self.analytics.add_dependency(self.batch, "the batch run starts the analytics layer's crawler")
        self.training = TrainingStack(
            self,
            "Training",
            config=config,
            network=self.network,
            data=self.data,
            inference=self.inference,
            stack_name=config.stack_name("training"),
            description=f"ml-pipeline {config.name}: the training run (validate, preprocess, spot "
            f"training or tuning, evaluation gate, challenger), its triggers and the metadata table",
        )
        # a promoted candidate is deployed through the inference layer's deploy function
        self.training.add_dependency(self.inference, "runs deploy challengers through the deploy function")
        # deployed last: it reads every layer, and no lower layer reaches up to it
        self.observability = ObservabilityStack(
            self,
            "Observability",
            config=config,
            data=self.data,
            inference=self.inference,
            batch=self.batch,
            stack_name=config.stack_name("observability"),
            description=f"ml-pipeline {config.name}: dashboard, alarms, alert topics, drift monitor",
        )
        self.observability.add_dependency(self.batch, "the dashboard and alarms read the batch layer")
        self.observability.add_dependency(self.analytics, "deployed last: it watches every layer")
        self.observability.add_dependency(self.training, "deployed last: it watches every layer")
        cdk.Aspects.of(self).add(RequiredTags(config.tag_map))

    @property
    def stacks(self) -> list[cdk.Stack]:
        return [
            self.network,
            self.data,
            self.inference,
            self.batch,
            self.analytics,
            self.training,
            self.observability,
        ]
