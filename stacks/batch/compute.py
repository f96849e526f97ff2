"""AWS Batch on Fargate: compute environments, the job queue, and the batch job's definition.

- Two managed Fargate compute environments in the isolated subnets, behind the compute security
  group (443 to the VPC endpoints only, no NAT): Fargate Spot first, on-demand Fargate second.
  The queue prefers Spot (about 70% cheaper); the job is restartable, so a reclaimed Spot task is
  simply retried, and on-demand capacity takes over when Spot has none. With ``use_spot`` off the
  queue has the on-demand environment alone.
- The compute environments name no service role: Batch then uses its service-linked role
  (``AWSServiceRoleForBatch``), which AWS maintains, instead of a role with a managed policy.
- The job definition runs the project's own image (``stacks/batch/image/Dockerfile``, built from
  the repository as an asset) as a non-root user on a read-only root filesystem, with resources,
  timeout and attempts from config. Batch retries only what a retry can fix (Spot reclaim, a
  task that failed to start, an image pull or network interface timeout); an exit of the job
  itself is final, because the job already retried its own calls and a re-run would fail again.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.container_image import python_image
from shared.infra.logs import EncryptedLogGroup

JOB_MODULE = "stacks.batch.runtime.job.job"
# the container command; Batch substitutes Ref::input with the SubmitJob parameter ``input``
JOB_COMMAND = ("python", "-m", JOB_MODULE, "Ref::input")
JOB_USER = "10001:10001"  # the image's unprivileged ``job`` user
DOCKERFILE = Path(__file__).with_name("image") / "Dockerfile"
# the runtime files the job imports (nothing else goes into the image)
JOB_SOURCES = (
    "shared/__init__.py",
    "shared/config.py",
    "shared/outputs.py",
    "shared/model_parameters.py",
    "shared/predictions.py",
    "mlpipe",
    "model/__init__.py",
    "model/schema.py",
    "stacks/__init__.py",
    "stacks/batch/__init__.py",
    "stacks/batch/runtime",
)
# Batch's retry rules (at most 5; the first that matches wins, and "EXIT *" ends the list)
RETRIED_REASONS = (
    ("status", "Your Spot Task was interrupted*", "Fargate reclaimed the Spot capacity"),
    ("status", "Task failed to start*", "the task never ran the job"),
    ("status", "Timeout waiting for network interface*", "the task's network interface came too late"),
    ("reason", "CannotPullContainerError*", "the image pull failed (ECR endpoint or throttling)"),
)


class BatchCompute(Construct):
    """Compute environments, the job queue and the job definition; ``job_role`` is granted by the stack."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        log_key: kms.IKey,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.batch
        subnets = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids

        def compute_environment(construct_id: str, name: str, kind: str) -> batch.CfnComputeEnvironment:
            return batch.CfnComputeEnvironment(
                self,
                construct_id,
                compute_environment_name=config.resource_name(name),
                type="MANAGED",
                state="ENABLED",
                compute_resources=batch.CfnComputeEnvironment.ComputeResourcesProperty(
                    type=kind,
                    maxv_cpus=settings.max_vcpus,
                    subnets=subnets,
                    security_group_ids=[security_group.security_group_id],
                ),
                replace_compute_environment=False,
            )

        on_demand = compute_environment("OnDemand", "batch-fargate", "FARGATE")
        order = [
            batch.CfnJobQueue.ComputeEnvironmentOrderProperty(compute_environment=on_demand.ref, order=2)
        ]
        if settings.use_spot:
            spot = compute_environment("Spot", "batch-fargate-spot", "FARGATE_SPOT")
            order.insert(
                0, batch.CfnJobQueue.ComputeEnvironmentOrderProperty(compute_environment=spot.ref, order=1)
            )
        self.job_queue = batch.CfnJobQueue(
            self,
            "Queue",
            job_queue_name=config.resource_name("batch"),
            priority=1,
            state="ENABLED",
            compute_environment_order=order,
        )

        self.log_group = EncryptedLogGroup(
            self, "Logs", config=config, log_group_name=f"{config.log_group_prefix}/batch/job", key=log_key
        ).log_group
        self.job_role = iam.Role(
            self,
            "JobRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{config.resource_name('batch')}: the batch job's own calls (S3, SSM, "
            f"SageMaker, DynamoDB)",
        )
        # The execution role pulls the image and ships the logs (the grants come from CDK: pull
        # from the asset's repository, write to this log group); it does nothing for the job.
        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{config.resource_name('batch')}: pulls the job image, writes its logs",
        )
        image = python_image(self, "Image", name="batch-job", dockerfile=DOCKERFILE, sources=JOB_SOURCES)
        job = settings.job
        self.container = batch.EcsFargateContainerDefinition(
            self,
            "Container",
            image=ecs.ContainerImage.from_docker_image_asset(image),
            cpu=job.vcpus,
            memory=cdk.Size.mebibytes(job.memory_mib),
            command=list(JOB_COMMAND),
            environment={
                **environment,
                "CHUNK_ROWS": str(job.chunk_rows),
                "REQUEST_ROWS": str(job.request_rows),
                "CONCURRENCY": str(job.concurrency),
                "AWS_DEFAULT_REGION": cdk.Stack.of(self).region,
            },
            job_role=self.job_role,
            execution_role=self.execution_role,
            logging=ecs.LogDriver.aws_logs(stream_prefix="job", log_group=self.log_group),
            readonly_root_filesystem=True,
            user=JOB_USER,
            assign_public_ip=False,
            fargate_platform_version=ecs.FargatePlatformVersion.VERSION1_4,
            fargate_cpu_architecture=ecs.CpuArchitecture.X86_64,
            fargate_operating_system_family=ecs.OperatingSystemFamily.LINUX,
        )
        retried = [
            batch.RetryStrategy.of(
                batch.Action.RETRY,
                batch.Reason.custom(on_status_reason=pattern)
                if field == "status"
                else batch.Reason.custom(on_reason=pattern),
            )
            for field, pattern, _why in RETRIED_REASONS
        ]
        self.job_definition = batch.EcsJobDefinition(
            self,
            "JobDefinition",
            job_definition_name=config.resource_name("batch-predict"),
            container=self.container,
            timeout=cdk.Duration.seconds(job.timeout_seconds),
            retry_attempts=job.attempts,
            retry_strategies=[
                *retried,
                batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom(on_reason="*")),
            ],
            propagate_tags=True,
        )

    @property
    def job_queue_arn(self) -> str:
        # Ref of a job queue is its ARN (the same value as GetAtt JobQueueArn)
        return self.job_queue.ref
