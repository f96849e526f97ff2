"""The usage profile: every assumption the cost model multiplies a price by, as typed data.

The templates say what exists (instance types and counts, memory sizes, shards, cache size,
rules, retention); this profile says how much it is used. Each field carries its reason in
its description, and the report prints every field beside the result, so a figure can always
be traced to the template property and the assumption that produced it.

Traffic is the seed's: 100,000 predictions a day. Durations come from the benchmark where it
measured them (``reports/bench``: handler overhead, the batch run) and are stated otherwise.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

NonNegative = Annotated[float, Field(ge=0)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FunctionUsage(_Frozen):
    """Invocations and billed duration of the Lambda functions whose name contains ``match``."""

    match: str
    invocations_per_day: NonNegative
    billed_ms: NonNegative
    why: str
    # invoked once per gateway request (POST /predict and /predict/stream) or per stream record
    # instead of invocations_per_day
    driven_by: Literal["gateway", "stream"] | None = None
    # distinct CloudWatch metrics (name x dimension values) its EMF lines publish
    custom_metrics: int = 0


class Volume(_Frozen):
    """GB a month into the log groups, or through the interface endpoints, whose name contains ``match``."""

    match: str
    gb_per_month: NonNegative
    why: str


class BucketUsage(_Frozen):
    """Storage and requests of the S3 buckets whose name contains ``match``."""

    match: str
    gb_stored: NonNegative
    puts_per_day: NonNegative
    gets_per_day: NonNegative
    why: str


class JobUsage(_Frozen):
    """Runs of the state machines, or seconds of the Batch jobs, whose name contains ``match``."""

    match: str
    per_day: NonNegative
    why: str


class TableUsage(_Frozen):
    """Requests and storage of the DynamoDB tables whose name contains ``match`` (any other table is
    priced as the predictions table: an item per prediction)."""

    match: str
    writes_per_day: NonNegative  # items written (1 WRU each, and one per index that holds it)
    reads_per_day: NonNegative  # eventually consistent reads (half a unit each)
    gb_stored: NonNegative
    why: str


class UsageProfile(_Frozen):
    hours_per_month: float = Field(730.0, description="AWS's billing month: 8,760 hours / 12")
    api_requests_per_day: int = Field(
        70_000, description="POST /predict: one row per request, answered at once (the real-time share)"
    )
    stream_requests_per_day: int = Field(
        10_000, description="POST /predict/stream: through API Gateway and the API function onto Kinesis"
    )
    batch_rows_per_day: int = Field(
        20_000,
        description="rows of the daily batch file (~4 MiB: above inline_max_bytes, so the Batch route)",
    )
    request_kb: NonNegative = Field(1.5, description="a request body of 30 features (JSON)")
    prediction_item_kb: NonNegative = Field(
        1.0, description="a stored prediction item (features, result, TTL): 1 write request unit"
    )
    job_seconds: tuple[JobUsage, ...] = (
        JobUsage(
            match="-batch-",
            per_day=120.0,
            why="one Fargate job a day: ~60 s to start and pull the image, then ~10 s per 20k rows (bench: "
            "100,000 rows in 47.5 s on the local stage); Fargate bills per second, 1 minute minimum",
        ),
    )
    state_machine_runs: tuple[JobUsage, ...] = (
        JobUsage(
            match="-batch-",
            per_day=2.0,
            why="the S3 trigger's run for the new file and the 02:00 schedule's (which finds nothing new)",
        ),
    )
    state_transitions_per_run: NonNegative = Field(
        15.0,
        description="ListInputs, AnyInputs, Map, the input's Choice/Batch task, Parallel report + notify",
    )
    training_runs_per_month: NonNegative = Field(
        4.0, description="weekly retraining (priced where a state machine starts a SageMaker training job)"
    )
    training_instance_type: str = Field("ml.m5.large", description="the training job's instance")
    training_hours_per_run: NonNegative = Field(
        0.25,
        description="billed time of one run's job: scikit-learn on 569 rows fits in seconds; the image "
        "download and data staging take minutes (the local emulation's job: ~5 s of fitting)",
    )
    training_spot_savings: NonNegative = Field(
        0.7,
        description="managed spot training's saving against on-demand, where the template turns it on "
        "(AWS: 'up to 90%'; 70% assumed as the typical discount of spot capacity)",
    )
    crawler_runs_per_month: NonNegative = Field(30.0, description="a daily Glue crawler, where one exists")
    crawler_dpu_hours_per_run: NonNegative = Field(
        2 * 10 / 60, description="2 DPUs for the 10-minute minimum a crawler run is billed"
    )
    athena_tb_scanned_per_month: NonNegative = Field(
        0.01, description="daily reports over partitioned Parquet: ~10 GB scanned a month"
    )
    firehose_record_kb: NonNegative = Field(
        5.0, description="Firehose bills each record rounded up to 5 KB (a prediction is ~1 KB)"
    )
    endpoint_data: tuple[Volume, ...] = (
        Volume(
            match="sagemaker.runtime",
            gb_per_month=5.0,
            why="80k requests/day x (1.5 + 0.5) KB + the batch rows, with TLS overhead",
        ),
        Volume(match="kinesis-streams", gb_per_month=0.5, why="10k records/day x 1.5 KB"),
    )
    default_endpoint_gb_per_month: NonNegative = Field(
        0.1, description="any other interface endpoint (parameter reads, traces, image manifests, job logs)"
    )
    kms_requests_per_key_per_month: NonNegative = Field(
        100_000.0,
        description="S3 bucket keys and DynamoDB's cached table key keep KMS calls far below one per item",
    )
    sqs_requests_per_month: NonNegative = Field(1_000.0, description="dead-letter queues: near empty")
    sns_publishes_per_month: NonNegative = Field(200.0, description="alarm and batch notices")
    log_storage_months: NonNegative = Field(
        12.0,
        description="stored logs = a month's ingestion x min(retention, this many months): the steady state "
        "within a year",
    )
    functions: tuple[FunctionUsage, ...] = (
        FunctionUsage(
            match="-api-",
            invocations_per_day=0,
            driven_by="gateway",
            billed_ms=40,
            why="every POST /predict and /predict/stream (billed as misses: a hit skips only the endpoint "
            "call, ~5-10 ms, and adds the cache lookup); bench: handler overhead <= 2 ms, the rest waits on "
            "InvokeEndpoint and PutItem/PutRecord; "
            "metrics: Predictions, ModelLatency x 2 variants x (variant; variant+version) + Requests, "
            "ClientErrors, ServerErrors, CacheHits, CacheMisses, ColdStart",
            custom_metrics=14,
        ),
        FunctionUsage(
            match="-stream-",
            invocations_per_day=0,
            driven_by="stream",
            billed_ms=60,
            why="one batch per record at this rate (~0.12 records/s, 1 s batching window); InvokeEndpoint + "
            "PutItem per record; metrics: 8 per-variant as the API's + RecordsReceived, RecordsFailed, "
            "PoisonRecords, ReplaysSkipped, ColdStart",
            custom_metrics=13,
        ),
        FunctionUsage(
            match="-deploy-", invocations_per_day=1, billed_ms=5_000, why="a few parameter changes a day"
        ),
        FunctionUsage(
            match="-batch-list-", invocations_per_day=2, billed_ms=1_000, why="one listing per run"
        ),
        FunctionUsage(
            match="-batch-inline-",
            invocations_per_day=0,
            billed_ms=30_000,
            why="the daily file is above inline_max_bytes, so it goes to Batch",
        ),
        FunctionUsage(
            match="-batch-report-",
            invocations_per_day=2,
            billed_ms=1_000,
            why="one report per run; metrics: InputsProcessed, InputsFailed, 4 row counts, ColdStart",
            custom_metrics=7,
        ),
        FunctionUsage(
            match="-analytics-tap-",
            invocations_per_day=2_880,
            billed_ms=300,
            why="the predictions table's stream in batches of up to 500 with a 30 s window: at ~1.2 "
            "items/s (100k predictions + feedback a day) the window fires first, one batch every 30 s; "
            "each decodes its records and makes one Firehose PutRecordBatch (assumed, not measured)",
        ),
        FunctionUsage(
            match="-drift-monitor-",
            invocations_per_day=24,
            billed_ms=15_000,
            why="hourly (observability.drift schedule); one hour of traffic per variant read through the "
            "by-model-version index and scored (the bench measured 11.3 s for 4,000 rows against moto; "
            "assumed 15 s on Lambda); metrics: per-feature drift x 30 features x 2 variants + max, "
            "share, score drift, sample count, accuracy",
            custom_metrics=70,
        ),
        # the training layer: training_runs_per_month (4: the weekly schedule) = 0.13 runs a day
        FunctionUsage(
            match="-training-runs-",
            invocations_per_day=0.27,
            billed_ms=500,
            why="a start and a finish per run: a few DynamoDB writes and StartExecution",
        ),
        FunctionUsage(
            match="-training-validate-",
            invocations_per_day=0.13,
            billed_ms=5_000,
            why="one per run: reads a ~0.2 MB CSV and the champion's baseline (container image, cold start)",
        ),
        FunctionUsage(
            match="-training-preprocess-",
            invocations_per_day=0.13,
            billed_ms=5_000,
            why="one per run: the split and four S3 writes (container image, cold start)",
        ),
        FunctionUsage(
            match="-training-evaluate-",
            invocations_per_day=0.13,
            billed_ms=15_000,
            why="one per run: loads two models, scores the test split and 2,000 bootstrap resamples",
        ),
        FunctionUsage(
            match="-training-register-",
            invocations_per_day=0.13,
            billed_ms=3_000,
            why="register and request the challenger, for a promoted candidate (at most once per run)",
        ),
    )
    tables: tuple[TableUsage, ...] = (
        TableUsage(
            match="-training-metadata-",
            writes_per_day=1.0,
            reads_per_day=20.0,
            gb_stored=0.01,
            why="training_runs_per_month runs: each writes its run item twice, the lock twice, and for a "
            "promoted candidate a model and an A/B item (~8 items a week); reads are mlpipe train status "
            "and experiments commands; a few KB per run",
        ),
    )
    deploy_time_function_ids: tuple[str, ...] = Field(
        ("CustomResourceProvider", "BucketNotificationsHandler", "LogRetention", "AWS679f53fac"),
        description="CDK's custom-resource handlers (logical id contains one of these): deploy time only",
    )
    logs: tuple[Volume, ...] = (
        Volume(
            match="/lambda/api", gb_per_month=1.2, why="80k invocations/day x ~0.5 KB (JSON lines, REPORT)"
        ),
        Volume(match="/lambda/stream", gb_per_month=0.15, why="10k invocations/day x ~0.5 KB"),
        Volume(
            match="/apigateway/access", gb_per_month=1.5, why="80k requests/day x ~0.6 KB JSON access log"
        ),
        Volume(
            match="vpc-flow-logs", gb_per_month=0.5, why="all traffic of a few ENIs, 10-minute aggregation"
        ),
        Volume(match="/batch/job", gb_per_month=0.05, why="one job a day: progress lines per chunk"),
        Volume(match="/aws/vendedlogs/states", gb_per_month=0.05, why="ALL logging of ~2 runs/day"),
    )
    default_log_gb_per_month: NonNegative = Field(
        0.01, description="any other log group (deploy, batch functions, later layers)"
    )
    buckets: tuple[BucketUsage, ...] = (
        BucketUsage(
            match="-data-",
            gb_stored=3.0,
            puts_per_day=600,
            gets_per_day=100,
            why="data capture (20% of requests, files every few minutes) + batch input, 30-day expiry",
        ),
        BucketUsage(
            match="-results-",
            gb_stored=2.0,
            puts_per_day=50,
            gets_per_day=50,
            why="batch parts and manifests",
        ),
        BucketUsage(
            match="-models-",
            gb_stored=0.1,
            puts_per_day=1,
            gets_per_day=20,
            why="versioned model.tar.gz files",
        ),
        BucketUsage(
            match="-access-logs-",
            gb_stored=1.0,
            puts_per_day=300,
            gets_per_day=0,
            why="server access logs of the other buckets",
        ),
    )
    default_bucket: BucketUsage = BucketUsage(
        match="", gb_stored=0.5, puts_per_day=10, gets_per_day=10, why="any other bucket"
    )

    prediction_ttl_days: NonNegative = Field(
        30.0, description="predictions expire (TTL) after this many days"
    )
    answer_cache_hit_share: NonNegative = Field(
        0.1,
        le=1.0,
        description="POST /predict answered from the answer cache (a retry or a repeated row within "
        "the TTL); each request reads 2 items strongly consistent, each miss writes 1",
    )
    answer_cache_item_kb: NonNegative = Field(0.3, description="a cached answer of one row (key, JSON, TTL)")
    table_reads_per_day: NonNegative = Field(
        1_000.0, description="A/B reports and lookups by id or by model version (eventually consistent)"
    )
    xray_reservoir_per_second: NonNegative = Field(
        1.0, description="X-Ray's default sampling rule: the first request each second ..."
    )
    xray_rate: NonNegative = Field(0.05, description="... and 5% of the rest are traced")

    @property
    def days_per_month(self) -> float:
        return self.hours_per_month / 24

    @property
    def predictions_per_day(self) -> int:
        """The seed's 100,000: real-time, stream and batch together (the cost per 1M divides by it)."""
        return self.api_requests_per_day + self.stream_requests_per_day + self.batch_rows_per_day

    def invocations_per_day(self, usage: FunctionUsage) -> float:
        if usage.driven_by == "gateway":
            return self.gateway_requests_per_day
        if usage.driven_by == "stream":
            return self.stream_requests_per_day
        return usage.invocations_per_day

    @property
    def predictions_per_month(self) -> float:
        return self.predictions_per_day * self.days_per_month

    @property
    def gateway_requests_per_day(self) -> int:
        return self.api_requests_per_day + self.stream_requests_per_day

    def sampled_share(self, requests_per_day: float) -> float:
        """Share of requests X-Ray's default rule traces at this (evenly spread) daily volume."""
        if requests_per_day <= 0:
            return 0.0
        reservoir = min(requests_per_day, self.xray_reservoir_per_second * 86_400)
        return (reservoir + self.xray_rate * (requests_per_day - reservoir)) / requests_per_day

    def table(self, name: str) -> TableUsage | None:
        return next((t for t in self.tables if t.match in name), None)

    def function(self, name: str) -> FunctionUsage | None:
        return next((f for f in self.functions if f.match in name), None)

    def endpoint_gb(self, service: str) -> float:
        usage = next((u for u in self.endpoint_data if u.match in service), None)
        return self.default_endpoint_gb_per_month if usage is None else usage.gb_per_month

    def log_gb(self, name: str) -> tuple[float, str]:
        usage = next((u for u in self.logs if u.match in name), None)
        if usage is None:
            return self.default_log_gb_per_month, "default_log_gb_per_month"
        return usage.gb_per_month, usage.why

    def job(self, name: str) -> JobUsage | None:
        return next((j for j in self.job_seconds if j.match in name), None)

    def runs(self, name: str) -> JobUsage | None:
        return next((j for j in self.state_machine_runs if j.match in name), None)

    def bucket(self, name: str) -> BucketUsage:
        return next((b for b in self.buckets if b.match in name), self.default_bucket)


DEFAULT_PROFILE = UsageProfile()
