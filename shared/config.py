"""Typed configuration: one object per environment.

This is the only place where environment data lives. ``cdk.json`` holds the app command,
feature flags and pinned context; stacks read everything else from an
:class:`EnvironmentConfig`. The module imports no CDK so runtime code (handlers, the
``mlpipe`` CLI, the local stage) can share naming and knobs with the infrastructure.

An invalid configuration raises :class:`ConfigError` (a ``ValueError``) when the module is
imported or when :func:`get_config` is called, so ``cdk synth`` fails before any construct
is built and says which field of which environment is wrong.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.model_parameters import VERSION_PATTERN, ModelParameterNames

PROJECT: Final = "ml-pipeline"

_ACCOUNT_RE: Final = re.compile(r"^\d{12}$")
_REGION_RE: Final = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ENV_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9]{1,9}$")


class ConfigError(ValueError):
    """The configuration of an environment is invalid or the environment is unknown."""


class RemovalPolicy(StrEnum):
    """What CloudFormation does with a resource when it leaves the stack."""

    RETAIN = "retain"
    DESTROY = "destroy"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


PositiveInt = Annotated[int, Field(gt=0)]

# The retention periods CloudWatch Logs accepts, in days.
LOG_RETENTION_DAYS: Final = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)


def _check_retention(days: int) -> int:
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(f"{days} is not a CloudWatch Logs retention period; use one of {LOG_RETENTION_DAYS}")
    return days


LogRetentionDays = Annotated[int, AfterValidator(_check_retention)]


class InterfaceEndpoint(_Frozen):
    """An interface VPC endpoint and the compute inside the VPC that calls it.

    Interface endpoints cost per AZ-hour (about $15/month each in 2 AZs), so every entry
    names its caller; an endpoint nobody calls is removed, and a layer that needs another
    adds it here, in one place.
    """

    service: Annotated[str, Field(pattern=r"^[a-z0-9.\-]+$")]
    callers: Annotated[str, Field(min_length=10)]
    # Availability Zones the endpoint has a network interface in (each bills per hour); None: every
    # AZ of the VPC. One AZ suits an endpoint only batch work calls: the callers in the other AZ
    # reach it across AZs, and an AZ outage delays the daily run (retried) instead of failing requests.
    availability_zones: Annotated[int, Field(ge=1, le=3)] | None = None


# The services compute inside the VPC calls. S3 and DynamoDB use (free) gateway endpoints.
DEFAULT_INTERFACE_ENDPOINTS: Final = (
    InterfaceEndpoint(
        service="sagemaker.runtime",
        callers="preprocessing and stream-consumer Lambdas and the Batch job call InvokeEndpoint",
    ),
    InterfaceEndpoint(
        service="ssm",
        callers="preprocessing and stream-consumer Lambdas read the active model version (GetParameter)",
    ),
    InterfaceEndpoint(
        service="kinesis-streams",
        callers="preprocessing Lambda puts POST /predict/stream requests on the stream (PutRecord)",
    ),
    InterfaceEndpoint(
        service="kinesis-firehose",
        callers="the analytics tap Lambda puts history rows on the delivery stream (PutRecordBatch)",
    ),
    InterfaceEndpoint(
        service="ecr.api",
        callers="Fargate Batch jobs: the ECS agent authenticates to ECR to pull the job image",
    ),
    InterfaceEndpoint(
        service="ecr.dkr",
        callers="Fargate Batch jobs: the image manifest and layer pulls (layers themselves come via S3)",
    ),
    InterfaceEndpoint(
        service="logs",
        callers="Fargate Batch jobs: the awslogs log driver ships container output to CloudWatch Logs",
    ),
    InterfaceEndpoint(
        service="xray",
        callers="VPC Lambdas (active tracing): the X-Ray daemon in the sandbox sends their trace segments",
    ),
)


class GatewayPrefixLists(_Frozen):
    """AWS-managed prefix lists of the gateway services in a region, for security group egress.

    CloudFormation cannot look them up; find them with
    ``aws ec2 describe-managed-prefix-lists --filters Name=owner-id,Values=AWS``.
    """

    s3: Annotated[str, Field(pattern=r"^pl-[0-9a-f]{8,17}$")]
    dynamodb: Annotated[str, Field(pattern=r"^pl-[0-9a-f]{8,17}$")]


# Per region; add yours when you deploy elsewhere.
GATEWAY_PREFIX_LISTS: Final = {
    "us-east-1": GatewayPrefixLists(s3="pl-63a5400a", dynamodb="pl-02cd2c6b"),
}


class NetworkConfig(_Frozen):
    cidr: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+\.\d+/(1[6-9]|2[0-4])$")] = "10.20.0.0/16"
    max_azs: Annotated[int, Field(ge=2, le=3)] = 2
    subnet_cidr_mask: Annotated[int, Field(ge=20, le=26)] = 22
    interface_endpoints: tuple[InterfaceEndpoint, ...] = DEFAULT_INTERFACE_ENDPOINTS
    flow_log_retention_days: LogRetentionDays = 90
    gateway_prefix_lists: GatewayPrefixLists = GATEWAY_PREFIX_LISTS["us-east-1"]

    @field_validator("interface_endpoints")
    @classmethod
    def _unique_endpoints(cls, value: tuple[InterfaceEndpoint, ...]) -> tuple[InterfaceEndpoint, ...]:
        services = [endpoint.service for endpoint in value]
        duplicates = sorted({s for s in services if services.count(s) > 1})
        if duplicates:
            raise ValueError(f"interface endpoints listed twice: {', '.join(duplicates)}")
        return value


class DataConfig(_Frozen):
    prediction_ttl_days: PositiveInt = 30
    raw_input_expiry_days: PositiveInt = 30
    batch_output_expiry_days: PositiveInt = 365
    noncurrent_version_expiry_days: PositiveInt = 90
    noncurrent_versions_to_retain: Annotated[int, Field(ge=1, le=100)] = 5
    model_noncurrent_version_expiry_days: PositiveInt = 365
    analytics_intelligent_tiering_after_days: Annotated[int, Field(ge=0)] = 30
    access_log_expiry_days: PositiveInt = 365
    # The first version `mlpipe models register` is expected to publish; the stack seeds
    # /ml-pipeline/{env}/models/active-version with it.
    initial_model_version: Annotated[str, Field(pattern=VERSION_PATTERN.pattern)] = "v1"
    # The challenger the endpoint starts with on variant ModelB (at ModelB's configured weight),
    # seeded into /ml-pipeline/{env}/models/traffic; None: ModelB serves the champion at 0%.
    initial_challenger_version: Annotated[str, Field(pattern=VERSION_PATTERN.pattern)] | None = "v2"
    # where the endpoint's data capture lands in the data bucket (expired with the raw input)
    data_capture_prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9/_-]*[a-z0-9]$")] = "datacapture"


CHAMPION_VARIANT: Final = "ModelA"
CHALLENGER_VARIANT: Final = "ModelB"


class VariantConfig(_Frozen):
    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]{0,62}$")]
    weight: Annotated[float, Field(ge=0.0, le=1.0)]
    instance_type: Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")] = "ml.m5.large"
    initial_instance_count: Annotated[int, Field(ge=1, le=10)] = 1
    # this variant's autoscaling lower bound; None: InferenceConfig.autoscaling_min_capacity
    min_instance_count: Annotated[int, Field(ge=1, le=10)] | None = None


# The AWS-published SageMaker scikit-learn inference image (the model's entry point is the
# contract of this container). Its tag matches the scikit-learn the model is trained with
# (``model`` dependency group: scikit-learn 1.4.2); CloudFormation cannot look the registry up,
# so it comes from this table (the SageMaker Python SDK's image_uri_config/sklearn.json).
SKLEARN_IMAGE_TAG: Final = "1.4-2-cpu-py3"
SKLEARN_IMAGE_REGISTRIES: Final = {
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-west-2": "246618743249",
    "eu-west-1": "141502667606",
    "eu-central-1": "492215442770",
}


def sklearn_image_uri(region: str) -> str:
    try:
        registry = SKLEARN_IMAGE_REGISTRIES[region]
    except KeyError:
        known = ", ".join(sorted(SKLEARN_IMAGE_REGISTRIES))
        raise ConfigError(
            f"no SageMaker scikit-learn image registry known for {region}; add it (known: {known})"
        ) from None
    return f"{registry}.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:{SKLEARN_IMAGE_TAG}"


class FunctionConfig(_Frozen):
    """Size of one Lambda function (the reasons for each value sit where it is set)."""

    memory_mb: Annotated[int, Field(ge=128, le=10240)]
    timeout_seconds: Annotated[int, Field(ge=1, le=900)]
    # None: the function draws from the account's unreserved pool
    reserved_concurrency: Annotated[int, Field(ge=1)] | None = None


class ApiConfig(_Frozen):
    stage_name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,15}$")] = "v1"
    # 100,000 predictions/day is 1.16 req/s on average; a 10x peak is ~12 req/s. The steady
    # limit leaves 4x over that peak, the burst absorbs a client's retry storm.
    throttle_rate_limit: Annotated[float, Field(gt=0)] = 50.0
    throttle_burst_limit: Annotated[int, Field(gt=0)] = 100
    # per API key and day: 5x the expected daily volume, so a runaway client is stopped
    quota_per_day: Annotated[int, Field(gt=0)] = 500_000
    # how long POST /predict answers stay in the answer cache (shared.answer_cache); 0 disables
    # it. 300 s: a client retrying or re-sending the same rows within minutes is served without
    # an endpoint call, while a deployment invalidates every answer at once (the generation)
    cache_ttl_seconds: Annotated[int, Field(ge=0, le=86_400)] = 300
    # WAF web ACL with AWS managed rules in front of the stage (production)
    waf_enabled: bool = False
    # requests per 5 minutes from one IP before WAF blocks it
    waf_rate_limit_per_ip: Annotated[int, Field(ge=100)] = 3000


class StreamConfig(_Frozen):
    # Arithmetic: 100,000 requests/day of ~1.5 KB is 1.16 records/s (~1.7 KB/s) on average and
    # ~12 records/s (~18 KB/s) at a 10x peak. One shard takes 1,000 records/s or 1 MB/s in and
    # serves 2 MB/s out, so one provisioned shard covers the peak ~55x over; ON_DEMAND costs
    # more at this volume (per-stream hourly charge) and is only worth it for unknown traffic.
    mode: Literal["PROVISIONED", "ON_DEMAND"] = "PROVISIONED"
    shard_count: Annotated[int, Field(ge=1, le=100)] = 1
    retention_hours: Annotated[int, Field(ge=24, le=8760)] = 24
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    max_batching_window_seconds: Annotated[int, Field(ge=0, le=300)] = 1
    # bounded: a record is retried this many times (bisected each time) before it goes to the
    # on-failure queue, and never processed when older than max_record_age_seconds
    retry_attempts: Annotated[int, Field(ge=0, le=10_000)] = 3
    max_record_age_seconds: Annotated[int, Field(ge=60, le=604_800)] = 3600
    parallelization_factor: Annotated[int, Field(ge=1, le=10)] = 1
    failure_queue_retention_days: Annotated[int, Field(ge=1, le=14)] = 14

    @model_validator(mode="after")
    def _shards_only_when_provisioned(self) -> StreamConfig:
        if self.mode == "ON_DEMAND" and self.shard_count != 1:
            raise ValueError("shard_count applies to PROVISIONED streams only; leave it at 1 for ON_DEMAND")
        return self


class InferenceConfig(_Frozen):
    variants: tuple[VariantConfig, ...] = (
        VariantConfig(name="ModelA", weight=0.8),
        VariantConfig(name="ModelB", weight=0.2),
    )
    autoscaling_target_invocations_per_instance: PositiveInt = 1000
    autoscaling_min_capacity: PositiveInt = 1
    autoscaling_max_capacity: PositiveInt = 10
    scale_in_cooldown_seconds: PositiveInt = 300
    scale_out_cooldown_seconds: PositiveInt = 60
    # share of requests and responses the endpoint captures to the data bucket (drift analysis)
    data_capture_percent: Annotated[int, Field(ge=1, le=100)] = 20
    # deployment guardrails (blue/green): canary wait or all-at-once baking, and the overall cap
    canary_wait_seconds: Annotated[int, Field(ge=0, le=3600)] = 600
    baking_seconds: Annotated[int, Field(ge=0, le=3600)] = 600
    max_deployment_seconds: Annotated[int, Field(ge=600, le=14400)] = 3600
    # per-variant alarms that roll a deployment back (and page in production)
    variant_5xx_errors_per_minute: PositiveInt = 5
    variant_model_latency_p99_ms: PositiveInt = 500
    api: ApiConfig = ApiConfig()
    stream: StreamConfig = StreamConfig()
    # Preprocessing/API function: 512 MB buys CPU for JSON + pydantic validation (Lambda scales
    # CPU with memory); 10 s covers the SageMaker call with its retries well inside API Gateway's
    # 29 s. Reserved 20: the 10x peak (~12 req/s x ~0.1 s) needs ~2 concurrent executions, and
    # the reservation both guarantees them and caps what a flood can push at the endpoint.
    api_function: FunctionConfig = FunctionConfig(memory_mb=512, timeout_seconds=10, reserved_concurrency=20)
    # Stream consumer: one execution per shard (x parallelization factor); 60 s for a batch of
    # 100 requests with retries. Reserved 5 leaves room for re-sharding without starving others.
    stream_function: FunctionConfig = FunctionConfig(
        memory_mb=512, timeout_seconds=60, reserved_concurrency=5
    )
    # Deploy function: a few control-plane calls per event; 1 execution at a time (deployments
    # are serialised by the deploy lock anyway).
    deploy_function: FunctionConfig = FunctionConfig(
        memory_mb=256, timeout_seconds=60, reserved_concurrency=1
    )

    @field_validator("variants")
    @classmethod
    def _weights_sum_to_one(cls, value: tuple[VariantConfig, ...]) -> tuple[VariantConfig, ...]:
        if not value:
            raise ValueError("at least one production variant is required")
        names = [v.name for v in value]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        total = math.fsum(v.weight for v in value)
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"variant weights must sum to 1, got {total:g} ({names})")
        if sorted(names) != [CHAMPION_VARIANT, CHALLENGER_VARIANT]:
            raise ValueError(
                f"the endpoint has variants {CHAMPION_VARIANT} (champion) and {CHALLENGER_VARIANT} "
                f"(challenger), got {names}"
            )
        return value

    @model_validator(mode="after")
    def _capacity_bounds(self) -> InferenceConfig:
        if self.autoscaling_min_capacity > self.autoscaling_max_capacity:
            raise ValueError("autoscaling_min_capacity must not exceed autoscaling_max_capacity")
        for variant in self.variants:
            low = self.min_capacity(variant.name)
            if not low <= variant.initial_instance_count <= self.autoscaling_max_capacity:
                raise ValueError(
                    f"{variant.name}: initial_instance_count {variant.initial_instance_count} is outside the "
                    f"autoscaling bounds {low}..{self.autoscaling_max_capacity}"
                )
        return self

    def min_capacity(self, name: str) -> int:
        """The autoscaling lower bound of variant ``name`` (its own, else the endpoint's)."""
        own = self.variant(name).min_instance_count
        return self.autoscaling_min_capacity if own is None else own

    def variant(self, name: str) -> VariantConfig:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise ConfigError(f"no production variant {name!r}; variants: {[v.name for v in self.variants]}")

    @property
    def canary_instances(self) -> int | None:
        """Instances of the canary fleet, or None where a canary is not possible.

        A blue/green canary must be at most half of each variant's fleet, so a canary of one
        instance needs at least two instances in every variant; with one instance a variant's
        whole fleet would be the canary, and the deployment shifts all at once, then bakes.
        """
        if min(v.initial_instance_count for v in self.variants) >= 2:
            return 1
        return None


class BatchJobConfig(_Frozen):
    """The Fargate container of the batch job (Fargate's valid vCPU/memory pairs are checked)."""

    # 1 vCPU / 2 GiB: the job is I/O-bound (S3 reads, endpoint calls, DynamoDB writes) and holds
    # one chunk of rows and its results in memory at a time
    vcpus: float = 1.0
    memory_mib: Annotated[int, Field(ge=512, le=30720)] = 2048
    # an attempt that runs longer than this is stopped (a stuck endpoint, not a big file: a
    # whole day's 100,000 rows take minutes)
    timeout_seconds: Annotated[int, Field(ge=60, le=86_400)] = 3600
    # Batch's own attempts: a Spot reclaim or a host failure is retried, an application exit is not
    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    chunk_rows: Annotated[int, Field(ge=1, le=100_000)] = 1000
    # rows per InvokeEndpoint request (well under SageMaker's 6 MB payload limit)
    request_rows: Annotated[int, Field(ge=1, le=1000)] = 100
    # requests in flight at once: 4 keeps one instance per variant busy without throttling the
    # endpoint's 1,000 invocations/instance autoscaling target
    concurrency: Annotated[int, Field(ge=1, le=32)] = 4

    @model_validator(mode="after")
    def _fargate_size(self) -> BatchJobConfig:
        # https://docs.aws.amazon.com/batch/latest/APIReference/API_ResourceRequirement.html
        sizes = {
            0.25: (512, 1024, 2048),
            0.5: tuple(range(1024, 4097, 1024)),
            1.0: tuple(range(2048, 8193, 1024)),
            2.0: tuple(range(4096, 16385, 1024)),
            4.0: tuple(range(8192, 30721, 1024)),
        }
        if self.vcpus not in sizes:
            raise ValueError(f"Fargate runs {sorted(sizes)} vCPUs, not {self.vcpus}")
        allowed = sizes[self.vcpus]
        if self.memory_mib not in allowed:
            raise ValueError(
                f"Fargate does not run {self.vcpus} vCPU with {self.memory_mib} MiB; "
                f"use one of {allowed[0]}..{allowed[-1]} MiB (steps as AWS Batch documents)"
            )
        return self


class BatchConfig(_Frozen):
    """The batch layer: when it runs, where it reads and writes, and how big it may get."""

    # daily at 02:00 UTC, after the day's input has landed; EventBridge cron or rate syntax
    schedule: Annotated[str, Field(pattern=r"^(cron|rate)\(.+\)$")] = "cron(0 2 * * ? *)"
    # where input files land in the data bucket (an object created here also starts a run),
    # and where results and run manifests go in the results bucket
    input_prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9/_-]*/$")] = "batch/input/"
    output_prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9/_-]*[a-z0-9]$")] = "batch/output"
    runs_prefix: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9/_-]*[a-z0-9]$")] = "batch/runs"
    # Choice: an input up to this size runs inline in a Lambda function (seconds, no container
    # start); a larger one goes to AWS Batch. 1 MiB is ~5,000 rows of the model's features, which
    # one function does in well under its timeout; a container's ~1 min start is not worth it.
    inline_max_bytes: Annotated[int, Field(ge=1, le=50_000_000)] = 1_048_576
    # Map: inputs processed at once (each a Lambda or a Batch job); bounded so a backlog does
    # not flood the endpoint or the predictions table
    max_concurrency: Annotated[int, Field(ge=1, le=40)] = 4
    # inputs one run takes (the rest wait for the next run); keeps the listing far below Step
    # Functions' 256 KB state payload limit
    max_inputs_per_run: Annotated[int, Field(ge=1, le=1000)] = 500
    # vCPUs the compute environments may run at once (4 jobs of 1 vCPU at the Map's concurrency)
    max_vcpus: Annotated[int, Field(ge=1, le=256)] = 16
    # Fargate Spot first (~70% cheaper; an interrupted job is retried by Batch), on-demand after
    use_spot: bool = True
    # a run that takes longer is stopped and reported as failed
    run_timeout_minutes: Annotated[int, Field(ge=5, le=1440)] = 240
    job: BatchJobConfig = BatchJobConfig()
    # Lists inputs and skips processed ones: S3 listing only.
    list_function: FunctionConfig = FunctionConfig(memory_mb=256, timeout_seconds=60)
    # Runs the batch job inline for a small input (<= inline_max_bytes, ~5,000 rows): 1 GB buys
    # CPU for parsing and validation; 15 min is Lambda's cap and several times what it needs.
    inline_function: FunctionConfig = FunctionConfig(memory_mb=1024, timeout_seconds=900)
    # Sums the inputs' manifests into the run manifest.
    report_function: FunctionConfig = FunctionConfig(memory_mb=256, timeout_seconds=60)


class LifecycleConfig(_Frozen):
    """How ``mlpipe`` changes the endpoint: waiting, the deploy lock, the rollback grace period.

    - ``poll_seconds``: how often ``mlpipe`` reads the request's outcome and the endpoint's status
      while it waits (the deploy function reacts to the endpoint's own state-change events; this
      is only how soon the waiting operator hears of it).
    - ``wait_timeout_seconds``: how long ``mlpipe`` waits for one request's verified outcome before
      it gives up waiting (the deployment itself goes on; ``mlpipe models status`` shows it).
    - ``lock_ttl_seconds``: a deploy lock older than this belongs to a holder that died; the next
      request takes it over. It must outlast the longest deployment SageMaker may run.
    - ``rollback_grace_seconds``: after ``promote``, the previous champion stays deployed at weight
      0 this long, so a rollback in that window is a weights update (no new endpoint config, no
      blue/green deployment); 0 turns the grace period off.
    - ``standby_check_minutes``: how often the deploy function's schedule looks for a standby whose
      window has passed, to retire it (so a standby outlives its window by at most this).
    """

    poll_seconds: Annotated[float, Field(gt=0.0, le=60.0)] = 10.0
    wait_timeout_seconds: PositiveInt = 4200
    lock_ttl_seconds: PositiveInt = 4500
    rollback_grace_seconds: Annotated[int, Field(ge=0, le=7 * 86_400)] = 3600
    standby_check_minutes: Annotated[int, Field(ge=1, le=1440)] = 5

    @model_validator(mode="after")
    def _lock_outlasts_the_wait(self) -> LifecycleConfig:
        if self.lock_ttl_seconds < self.wait_timeout_seconds:
            raise ValueError("lock_ttl_seconds must not be shorter than wait_timeout_seconds")
        return self


class AnalyticsConfig(_Frozen):
    """The analytics layer: the history tap, its delivery stream, the catalog and Athena."""

    # Firehose's Parquet conversion needs a buffer of at least 64 MB; at ~100k records/day
    # (~1.3 KB of JSON each, ~5 MB/hour) the interval always flushes first: 96 objects a day of
    # ~0.2 MB Parquet each, and a prediction reaches the history within 15 minutes.
    buffer_interval_seconds: Annotated[int, Field(ge=60, le=900)] = 900
    buffer_size_mb: Annotated[int, Field(ge=64, le=128)] = 64
    # the tap's event source mapping on the predictions table's stream
    tap_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    tap_max_batching_window_seconds: Annotated[int, Field(ge=0, le=300)] = 30
    tap_retry_attempts: Annotated[int, Field(ge=0, le=10_000)] = 5
    # a stream record is kept 24 h by DynamoDB Streams: give up (to the failure queue) before
    tap_max_record_age_seconds: Annotated[int, Field(ge=60, le=86_400)] = 21_600
    tap_failure_queue_retention_days: Annotated[int, Field(ge=1, le=14)] = 14
    # Converts stream records to history rows and puts them on the delivery stream.
    tap_function: FunctionConfig = FunctionConfig(memory_mb=256, timeout_seconds=60)
    # the first day the history table's partition projection knows (dt=YYYY-MM-DD)
    projection_start: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] = "2026-01-01"
    # Athena cancels a query of this workgroup that scans more (10 MB is Athena's minimum);
    # 1 GB is about 30 years of this layer's history at 100k/day
    bytes_scanned_cutoff: Annotated[int, Field(ge=10_000_000)] = 1_000_000_000
    # Athena's price per TB scanned (us-east-1), for the cost `mlpipe analytics query` reports
    athena_usd_per_tb: Annotated[float, Field(gt=0)] = 5.0


class SloConfig(_Frozen):
    """Service levels the load tests gate on (``nox -s load``)."""

    # API Gateway + Lambda + SageMaker real-time inference of a small tabular model
    p99_latency_ms: PositiveInt = 300
    max_error_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01


class AlertSubscription(_Frozen):
    """Who hears an alert topic: an e-mail address, an HTTPS hook, or an SQS queue / Lambda (ARN)."""

    topic: Literal["paging", "notice"]
    protocol: Literal["email", "https", "sqs", "lambda"]
    endpoint: Annotated[str, Field(min_length=3)]


class BurnRateWindow(_Frozen):
    """A multi-window burn-rate alert (Google SRE workbook): both windows must burn this fast."""

    burn_rate: Annotated[float, Field(gt=1.0)]
    long_minutes: Annotated[int, Field(ge=5, le=1440)]
    short_minutes: Annotated[int, Field(ge=1, le=360)]


class DriftConfig(_Frozen):
    """The drift monitor: when it runs, what it reads, and when a feature counts as drifted."""

    # hourly: a shift shows within the hour at 100,000 predictions/day (~4,000 rows per hour
    # reach the window), and one run reads at most a few thousand items
    schedule: Annotated[str, Field(pattern=r"^(cron|rate)\(.+\)$")] = "rate(1 hour)"
    window_minutes: Annotated[int, Field(ge=5, le=1440)] = 60
    # Below this many rows a window publishes its count and no score. Why 500: with no drift PSI
    # averages (B-1)(1/N + 1/M) over B bins; with the 10 decile bins and the 341-row training
    # split (M) that is 0.044 at N = 500 and 0.18 at N = 50, so only from ~500 rows on is the
    # 0.25 "major" threshold clear of noise (tests/unit/observability measure the false-alarm rate).
    min_samples: Annotated[int, Field(ge=50)] = 500
    # rows read per variant and run (newest first), bounding the run's time and read cost
    max_samples: Annotated[int, Field(ge=500, le=100_000)] = 20_000
    # PSI: 0.1 moderate, 0.25 major shift (the industry convention)
    psi_threshold: Annotated[float, Field(gt=0)] = 0.25
    # KS: alpha across all features (Bonferroni: alpha / features per test) and the minimum
    # effect size D, so a large window does not flag a negligible shift as drift
    ks_alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    ks_min_effect: Annotated[float, Field(gt=0, lt=1)] = 0.1
    # accuracy from feedback: published once this many of the window's predictions have an
    # observed label (100 gives a +-0.05 binomial standard error at 85 %), alarmed below the floor
    # (the versions' test accuracy is above 0.93)
    min_feedback: Annotated[int, Field(ge=10)] = 100
    accuracy_floor: Annotated[float, Field(gt=0, lt=1)] = 0.85
    # the drift alarm: this share of the features drifted in one run (0.1: 3 of the 30 features)
    alarm_drifted_share: Annotated[float, Field(gt=0, le=1)] = 0.1
    # 120 s covers reading 20,000 items and the statistics many times over; 512 MB for numpy
    function: FunctionConfig = FunctionConfig(memory_mb=512, timeout_seconds=120, reserved_concurrency=1)

    def environment(self) -> dict[str, str]:
        """The monitor's settings as its function's environment (what ``MonitorSettings`` reads)."""
        return {
            "WINDOW_MINUTES": str(self.window_minutes),
            "MIN_SAMPLES": str(self.min_samples),
            "MAX_SAMPLES": str(self.max_samples),
            "PSI_THRESHOLD": str(self.psi_threshold),
            "KS_ALPHA": str(self.ks_alpha),
            "KS_MIN_EFFECT": str(self.ks_min_effect),
            "MIN_FEEDBACK": str(self.min_feedback),
        }


class ObservabilityConfig(_Frozen):
    """Dashboard, alarms and alert topics of the observability layer (each threshold's reason beside it)."""

    subscriptions: tuple[AlertSubscription, ...] = ()
    # Availability SLO of POST /predict over 30 days: 99.9 % (43 minutes of errors a month)
    availability_target: Annotated[float, Field(gt=0.9, lt=1.0)] = 0.999
    # page when 2 % of the month's budget burns in 1 h (14.4x) or 5 % in 6 h (6x), each confirmed
    # by a short window so the page stops soon after the errors stop
    burn_rate_windows: tuple[BurnRateWindow, ...] = (
        BurnRateWindow(burn_rate=14.4, long_minutes=60, short_minutes=5),
        BurnRateWindow(burn_rate=6.0, long_minutes=360, short_minutes=30),
    )
    # API 5XX share over 5 min: 5 % is far above the SLO's 0.1 % yet clear of a single failed
    # request at 1 req/s; 2 of 3 periods so one bad minute does not notify
    api_5xx_rate: Annotated[float, Field(gt=0, lt=1)] = 0.05
    # a variant's share of 4XX answers from the model container: clients sending what the model
    # rejects (a schema mismatch after a deployment shows here first)
    variant_4xx_rate: Annotated[float, Field(gt=0, lt=1)] = 0.05
    # Kinesis iterator age: records wait at most the batching window (1 s) plus a batch's
    # processing (< 60 s); 5 minutes means the consumer is stuck or far behind
    iterator_age_ms: PositiveInt = 300_000
    # a function's errors or throttles in 5 minutes: any is worth a notice (none are expected)
    function_errors: PositiveInt = 1
    function_throttles: PositiveInt = 1
    # alarm periods: 5 minutes (1-minute metrics cost the same, but notify on noise)
    period_minutes: Annotated[int, Field(ge=1, le=60)] = 5
    drift: DriftConfig = DriftConfig()


class TrainingGateConfig(_Frozen):
    """The evaluation gate: absolute floors, then the candidate against the live champion.

    The champion is re-scored on the run's own test split and the difference of ROC AUC
    (candidate - champion) gets a paired bootstrap interval (the same resampled rows for both).
    A candidate is deployed as challenger when it passes both floors, its AUC is higher than the
    champion's, and the interval's lower bound is above ``-non_inferiority_margin`` (on ~110 test
    rows the interval of two good models always spans 0, so "better at the 95 % level" would
    never pass; this says "higher, and not credibly worse by more than the margin"). An equal
    candidate is not deployed: a challenger that cannot win wastes an A/B test.
    """

    # the versions' held-out ROC AUC is above 0.99; their recall of the malignant class (at the 0.5
    # threshold) is 0.88-0.95 on the 42 malignant rows of the test split, where one row moves it by
    # 2.4 points: 0.85 fails a model that misses 7 or more of them
    min_roc_auc: Annotated[float, Field(gt=0.5, le=1.0)] = 0.95
    min_recall_malignant: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    non_inferiority_margin: Annotated[float, Field(ge=0.0, lt=0.5)] = 0.01
    bootstrap_resamples: Annotated[int, Field(ge=200, le=20_000)] = 2000
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    seed: int = 20240517


class TrainingValidationConfig(_Frozen):
    """The Validate step's thresholds (every failed check is reported, not the first)."""

    # 569 rows is the whole breast-cancer dataset; below 200 the 20 % test split (~40 rows) cannot
    # separate two models' AUCs
    min_rows: Annotated[int, Field(ge=20)] = 200
    # each class at least this share of the rows (the dataset: 37 % malignant)
    min_class_share: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.2
    # a value outside the champion's training [min, max] widened by this share of the range on
    # each side counts as out of range; more than ``max_out_of_range_share`` of a feature's
    # values out of range fails the check (a unit change, a shifted sensor)
    range_tolerance: Annotated[float, Field(ge=0.0, le=10.0)] = 0.5
    max_out_of_range_share: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.01


class TrainingConfig(_Frozen):
    """The training layer: when it runs, the SageMaker job, the gate and the challenger's rollout."""

    # weekly, Sunday 03:00 UTC (after the daily batch run); drift and new data also start runs
    schedule: Annotated[str, Field(pattern=r"^(cron|rate)\(.+\)$")] = "cron(0 3 ? * SUN *)"
    # the scikit-learn job fits in seconds on 569 rows: the smallest general-purpose instance
    instance_type: Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")] = "ml.m5.large"
    volume_size_gb: Annotated[int, Field(ge=1, le=100)] = 10
    # managed spot (~70 % cheaper; an interruption resumes from the checkpoint)
    use_spot: bool = True
    # a job that runs longer is stopped; with spot, the job may wait for capacity until
    # max_wait_seconds (SageMaker requires max_wait >= max_runtime)
    max_runtime_seconds: Annotated[int, Field(ge=60, le=432_000)] = 1800
    max_wait_seconds: Annotated[int, Field(ge=60, le=432_000)] = 3600
    # tuning (a run's input "tune": true): jobs in all, and at once
    tuning_max_jobs: Annotated[int, Field(ge=1, le=100)] = 6
    tuning_max_parallel: Annotated[int, Field(ge=1, le=10)] = 2
    # the job's hyper-parameters when a run does not tune (shared.training.HYPERPARAMETERS)
    algorithm: Literal["logistic_regression", "gradient_boosting"] = "gradient_boosting"
    # a promoted candidate becomes the challenger at this share of traffic
    challenger_weight: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    # how long the run waits for the deploy function's verified state (a deployment takes
    # minutes; SageMaker's blue/green update may take up to an hour)
    deploy_timeout_minutes: Annotated[int, Field(ge=5, le=720)] = 90
    # a run that takes longer is stopped; the run lock expires after this too
    run_timeout_minutes: Annotated[int, Field(ge=30, le=2880)] = 360
    validation: TrainingValidationConfig = TrainingValidationConfig()
    gate: TrainingGateConfig = TrainingGateConfig()
    # Validate and Preprocess read one CSV (a few hundred KB); Evaluate scores two models and
    # draws the bootstrap (2,000 resamples of ~110 rows: about a second)
    validate_function: FunctionConfig = FunctionConfig(memory_mb=1024, timeout_seconds=120)
    preprocess_function: FunctionConfig = FunctionConfig(memory_mb=1024, timeout_seconds=120)
    evaluate_function: FunctionConfig = FunctionConfig(memory_mb=2048, timeout_seconds=300)
    # Starts runs (lock, run record, StartExecution) and records their outcome
    runs_function: FunctionConfig = FunctionConfig(memory_mb=256, timeout_seconds=30)

    @model_validator(mode="after")
    def _spot_wait(self) -> TrainingConfig:
        if self.use_spot and self.max_wait_seconds < self.max_runtime_seconds:
            raise ValueError("max_wait_seconds must be >= max_runtime_seconds (SageMaker managed spot)")
        if self.tuning_max_parallel > self.tuning_max_jobs:
            raise ValueError("tuning_max_parallel must not exceed tuning_max_jobs")
        return self


class Tags(_Frozen):
    """Tags every taggable resource carries (applied by an aspect on the stage)."""

    cost_center: Annotated[str, Field(min_length=1)] = "ml-platform"
    owner: Annotated[str, Field(min_length=1)] = "mlops-team"
    data_classification: Literal["public", "internal", "confidential", "restricted"] = "confidential"


class EnvironmentConfig(_Frozen):
    """Everything that differs between ``local``, ``dev`` and ``prod``."""

    name: str
    account: str
    region: str
    tags: Tags = Tags()
    # RETAIN for anything holding data in prod; DESTROY where losing it is harmless.
    data_removal_policy: RemovalPolicy = RemovalPolicy.DESTROY
    log_removal_policy: RemovalPolicy = RemovalPolicy.DESTROY
    log_retention_days: LogRetentionDays = 30
    network: NetworkConfig = NetworkConfig()
    data: DataConfig = DataConfig()
    inference: InferenceConfig = InferenceConfig()
    batch: BatchConfig = BatchConfig()
    analytics: AnalyticsConfig = AnalyticsConfig()
    slo: SloConfig = SloConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    training: TrainingConfig = TrainingConfig()

    @field_validator("name")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME_RE.match(value):
            raise ValueError(f"environment name {value!r} must be 2-10 lowercase letters/digits")
        return value

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        if not _ACCOUNT_RE.match(value):
            raise ValueError(f"account {value!r} must be a 12-digit AWS account id")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION_RE.match(value):
            raise ValueError(f"region {value!r} is not an AWS region name such as us-east-1")
        return value

    # ----- naming: ml-pipeline-{resource}-{env}-{region} -----
    def resource_name(self, resource: str) -> str:
        """``ml-pipeline-{resource}-{env}-{region}``, e.g. ``ml-pipeline-predictions-prod-us-east-1``."""
        if not re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", resource):
            raise ConfigError(f"resource part {resource!r} must be lowercase letters, digits and dashes")
        return f"{PROJECT}-{resource}-{self.name}-{self.region}"

    def bucket_name(self, resource: str) -> str:
        """S3 names are global across all accounts, so buckets also carry the account id."""
        name = f"{self.resource_name(resource)}-{self.account}"
        if len(name) > 63:
            raise ConfigError(f"bucket name {name!r} is longer than S3's 63 characters")
        return name

    def stack_name(self, layer: str) -> str:
        return f"{PROJECT}-{layer}-{self.name}"

    @property
    def ssm_prefix(self) -> str:
        """Root of this environment's Parameter Store hierarchy."""
        return f"/{PROJECT}/{self.name}"

    @property
    def log_group_prefix(self) -> str:
        """Log groups the project names itself live under ``/ml-pipeline/{env}``."""
        return f"/{PROJECT}/{self.name}"

    @property
    def model_parameters_path(self) -> str:
        """Path that holds every model parameter (for GetParametersByPath and IAM scoping)."""
        return f"{self.ssm_prefix}/models"

    @property
    def model_parameters(self) -> ModelParameterNames:
        return ModelParameterNames(self.model_parameters_path)

    @property
    def tag_map(self) -> dict[str, str]:
        return {
            "Project": PROJECT,
            "Environment": self.name,
            "CostCenter": self.tags.cost_center,
            "Owner": self.tags.owner,
            "DataClassification": self.tags.data_classification,
        }

    @property
    def is_production(self) -> bool:
        return self.name == "prod"

    @model_validator(mode="after")
    def _initial_traffic(self) -> EnvironmentConfig:
        challenger_weight = self.inference.variant(CHALLENGER_VARIANT).weight
        if self.data.initial_challenger_version is None and challenger_weight != 0.0:
            raise ValueError(
                f"{CHALLENGER_VARIANT} has weight {challenger_weight:g} but data.initial_challenger_version "
                "is not set: name the version it serves, or give it weight 0"
            )
        if self.data.initial_challenger_version == self.data.initial_model_version:
            raise ValueError("data.initial_challenger_version must differ from data.initial_model_version")
        return self

    @property
    def initial_traffic(self) -> dict[str, object]:
        """The first value of the ``traffic`` parameter (the shape ``mlpipe.state.Traffic`` reads)."""
        challenger = self.data.initial_challenger_version
        weight = self.inference.variant(CHALLENGER_VARIANT).weight if challenger else 0.0
        return {"challenger": challenger, "challenger_weight": weight}

    def drift_alarm_name(self, variant: str) -> str:
        """A variant's drift alarm: the observability layer makes it, the training layer's rule
        starts a run when it goes to ALARM (by name, so either layer may be deployed first)."""
        return self.resource_name(f"{variant.lower()}-drift")

    def guardrail_alarm_names(self, variant: str) -> tuple[str, str]:
        """The endpoint's guardrail alarms of a variant (5XX, latency): the inference layer makes
        them, the observability layer's composite alarms name them."""
        low = variant.lower()
        return self.resource_name(f"{low}-5xx"), self.resource_name(f"{low}-latency")

    def initial_version(self, variant: str) -> str:
        """The model version a variant serves when the endpoint is first created."""
        if variant == CHALLENGER_VARIANT and self.data.initial_challenger_version:
            return self.data.initial_challenger_version
        return self.data.initial_model_version


# Interface endpoints only the daily Batch job calls (see DEFAULT_INTERFACE_ENDPOINTS' callers).
BATCH_ONLY_ENDPOINTS: Final = frozenset({"ecr.api", "ecr.dkr", "logs"})


def _batch_only_in_one_az(endpoints: tuple[InterfaceEndpoint, ...]) -> tuple[InterfaceEndpoint, ...]:
    return tuple(
        e.model_copy(update={"availability_zones": 1}) if e.service in BATCH_ONLY_ENDPOINTS else e
        for e in endpoints
    )


# moto's default account: the local stage deploys the same templates into moto server.
LOCAL_ACCOUNT: Final = "123456789012"


def _build_environments() -> dict[str, EnvironmentConfig]:
    """The environments. Replace the dev/prod account ids with your own before deploying."""
    try:
        environments = (
            EnvironmentConfig(
                name="local",
                account=LOCAL_ACCOUNT,
                region="us-east-1",
                log_retention_days=7,
                # everything (emulated account, handlers, model servers, locust) shares 2 cores here;
                # moto's garbage-collection pauses alone reach 70-200 ms
                slo=SloConfig(p99_latency_ms=1000),
                # the emulated endpoint updates in milliseconds: poll often, give up and expire soon
                lifecycle=LifecycleConfig(
                    poll_seconds=0.1,
                    wait_timeout_seconds=60,
                    lock_ttl_seconds=120,
                    rollback_grace_seconds=900,
                ),
                # Firehose's shortest interval: the local history is a minute behind, not 15
                analytics=AnalyticsConfig(buffer_interval_seconds=60),
            ),
            EnvironmentConfig(
                name="dev",
                account="111111111111",
                region="us-east-1",
                log_retention_days=30,
                data=DataConfig(prediction_ttl_days=7, access_log_expiry_days=90),
            ),
            EnvironmentConfig(
                name="prod",
                account="222222222222",
                region="us-east-1",
                data_removal_policy=RemovalPolicy.RETAIN,
                log_removal_policy=RemovalPolicy.RETAIN,
                log_retention_days=365,
                # Cost decisions of issue 19 (`nox -s cost`, README "Cost"): each with its saving a
                # month at 100,000 predictions a day, us-east-1 list prices.
                network=NetworkConfig(
                    cidr="10.30.0.0/16",
                    flow_log_retention_days=365,
                    # ecr.api, ecr.dkr and logs serve only the daily Fargate job: one AZ each
                    # (-3 x $7.30 = -$21.90/month); the real-time callers' endpoints stay in both AZs
                    interface_endpoints=_batch_only_in_one_az(DEFAULT_INTERFACE_ENDPOINTS),
                ),
                data=DataConfig(prediction_ttl_days=30, access_log_expiry_days=730),
                inference=InferenceConfig(
                    variants=(
                        # Champion: two instances (SageMaker spreads them over the two AZs' subnets,
                        # so it keeps serving when an AZ fails), on ml.t2.medium instead of
                        # ml.m5.large: the model takes ~4-7 ms of CPU per prediction (bench: model-only
                        # p50 3.9 ms; ~7 ms of model-server CPU per POST /predict), so the 10x peak
                        # (11.6 req/s) is ~8% of one vCPU, against t2.medium's sustained baseline of
                        # 40% of a vCPU (2 vCPUs x 20%, credits above) and 4 GiB for a <1 MB model;
                        # autoscaling adds instances past 1,000 invocations/instance/minute
                        # (-2 x 730 h x ($0.115 - $0.056) = -$86.14/month).
                        VariantConfig(
                            name="ModelA",
                            weight=0.8,
                            instance_type="ml.t2.medium",
                            initial_instance_count=2,
                            min_instance_count=2,
                        ),
                        # Challenger: one instance of the same type for its 20% (~2.3 req/s at the
                        # peak). The second instance existed only so a blue/green canary of one
                        # instance was possible (a canary is at most half of every variant's fleet).
                        # The challenger is itself the canary of a new model (mlpipe deploys new
                        # versions to ModelB at its weight), so endpoint updates now shift all at once
                        # and bake for baking_seconds with the same per-variant alarms rolling back
                        # automatically (-$167.90 + $40.88 = -$127.02/month).
                        VariantConfig(
                            name="ModelB", weight=0.2, instance_type="ml.t2.medium", initial_instance_count=1
                        ),
                    ),
                    autoscaling_min_capacity=1,
                    # WAF stays (the managed rules and the per-IP limit, $10.46/month); the stage
                    # cache stays at its smallest size, 0.5 GB ($14.60/month; the seed asks for it)
                    api=ApiConfig(waf_enabled=True),
                ),
            ),
        )
    except ValidationError as err:
        raise ConfigError(f"invalid environment configuration:\n{err}") from err
    return {env.name: env for env in environments}


ENVIRONMENTS: Final = _build_environments()


def get_config(name: str) -> EnvironmentConfig:
    """The configuration of environment ``name``; a clear error for an unknown one."""
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        known = ", ".join(sorted(ENVIRONMENTS))
        raise ConfigError(f"unknown environment {name!r}; known environments: {known}") from None


def validate(data: dict[str, object]) -> EnvironmentConfig:
    """Build an :class:`EnvironmentConfig` from plain data, turning pydantic's error into ConfigError."""
    try:
        return EnvironmentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid configuration for environment {data.get('name')!r}:\n{err}") from err
