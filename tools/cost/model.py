"""Monthly cost of a stage, read from its synthesized templates and the repository's price table.

Every resource of every template lands in exactly one of three lists:

- **priced**: one or more lines (quantity x price) from the resource's own properties (instance
  type and count, memory size, shards, cache size, rules, retention, subnets) and the usage
  profile (:mod:`tools.cost.usage`);
- **free**: a type AWS does not charge for by itself (IAM, routes, security groups, API
  Gateway methods, ...), each with the reason;
- **unpriced**: a type this model does not know, or a price the table does not have, or a
  resource no usage assumption covers - never silently zero.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared import answer_cache
from tools.cost.usage import TableUsage, UsageProfile
from tools.deploy_plan import stack_order, stage_assemblies

PRICE_TABLE = Path(__file__).with_name("prices-us-east-1.json")


class Price(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    usd: float | None
    unit: str
    source: str
    evidence: str


class PriceTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str
    currency: str
    as_of: str
    note: str
    prices: dict[str, Price]

    @classmethod
    def load(cls, path: Path = PRICE_TABLE) -> PriceTable:
        return cls.model_validate(json.loads(path.read_text()))


class UnpriceableError(Exception):
    """A resource (or one of its charges) the model cannot price; the message says why."""


@dataclass(frozen=True)
class Line:
    stack: str
    logical_id: str
    resource_type: str
    item: str
    quantity: float
    unit: str
    price_key: str
    unit_usd: float

    @property
    def usd(self) -> float:
        return self.quantity * self.unit_usd


@dataclass(frozen=True)
class Listed:
    """A resource that is free, or that the model could not price, with the reason."""

    stack: str
    logical_id: str
    resource_type: str
    reason: str


@dataclass
class StageCost:
    stage: str
    profile: UsageProfile
    prices: PriceTable
    lines: list[Line] = field(default_factory=list)
    free: list[Listed] = field(default_factory=list)
    unpriced: list[Listed] = field(default_factory=list)

    @property
    def monthly_usd(self) -> float:
        return math.fsum(line.usd for line in self.lines)

    @property
    def per_million_predictions_usd(self) -> float:
        return self.monthly_usd / self.profile.predictions_per_month * 1e6

    def by(self, key: Callable[[Line], str]) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for line in self.lines:
            totals[key(line)] += line.usd
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


# Types AWS does not bill by themselves (what they lead to is priced where it is billed).
FREE_TYPES: dict[str, str] = {
    "AWS::CDK::Metadata": "CDK's own metadata",
    "AWS::IAM::Role": "IAM is free",
    "AWS::IAM::Policy": "IAM is free",
    "AWS::IAM::ManagedPolicy": "IAM is free",
    "AWS::IAM::InstanceProfile": "IAM is free",
    "AWS::EC2::VPC": "a VPC is free (no NAT gateway, no public IPv4 addresses here)",
    "AWS::EC2::Subnet": "free",
    "AWS::EC2::RouteTable": "free",
    "AWS::EC2::Route": "free",
    "AWS::EC2::SubnetRouteTableAssociation": "free",
    "AWS::EC2::SecurityGroup": "free",
    "AWS::EC2::SecurityGroupIngress": "free",
    "AWS::EC2::SecurityGroupEgress": "free",
    "AWS::EC2::NetworkAcl": "free",
    "AWS::EC2::NetworkAclEntry": "free",
    "AWS::EC2::SubnetNetworkAclAssociation": "free",
    "AWS::EC2::FlowLog": "its records are priced as ingestion of the log group it writes to",
    "AWS::KMS::Alias": "free",
    "AWS::Glue::SecurityConfiguration": "free (the KMS requests it leads to are priced on the key)",
    "AWS::Logs::LogStream": "free; what is written to it is priced on its log group",
    "AWS::Logs::QueryDefinition": "a saved query is free; running one bills the GB it scans (not modelled)",
    "AWS::S3::BucketPolicy": "free",
    "AWS::SNS::TopicPolicy": "free",
    "AWS::SQS::QueuePolicy": "free",
    "AWS::Lambda::Permission": "free",
    "AWS::Lambda::LayerVersion": "layers count against the free code storage",
    "AWS::Lambda::EventSourceMapping": "Kinesis polling by Lambda is not billed; the invocations are",
    "AWS::ApiGateway::RestApi": "requests are priced on the stage",
    "AWS::ApiGateway::Account": "free",
    "AWS::ApiGateway::Deployment": "free",
    "AWS::ApiGateway::Resource": "free",
    "AWS::ApiGateway::Method": "free",
    "AWS::ApiGateway::Model": "free",
    "AWS::ApiGateway::RequestValidator": "free",
    "AWS::ApiGateway::ApiKey": "free",
    "AWS::ApiGateway::UsagePlan": "free",
    "AWS::ApiGateway::UsagePlanKey": "free",
    "AWS::ApiGateway::GatewayResponse": "free",
    "AWS::WAFv2::WebACLAssociation": "the web ACL is priced",
    "AWS::SageMaker::Model": "a model definition is free; its instances are priced on the endpoint config",
    "AWS::SageMaker::Endpoint": "priced through its endpoint config (instance-hours per variant)",
    "AWS::ApplicationAutoScaling::ScalableTarget": "free (the scaling policy's alarms are priced)",
    "AWS::Batch::ComputeEnvironment": "free; the Fargate jobs it runs are priced on the job definition",
    "AWS::Batch::JobQueue": "free",
    "AWS::Events::Rule": "schedules and AWS service events are free on the default bus",
    "AWS::Glue::Database": "Data Catalog: first million objects free",
    "AWS::Glue::Table": "Data Catalog: first million objects free",
    "AWS::Glue::Partition": "Data Catalog: first million objects free",
    "AWS::Athena::NamedQuery": "free; scans are priced on the workgroup",
    "AWS::CloudFormation::WaitConditionHandle": "free",
}


class _Context:
    def __init__(
        self, stack: str, template: dict[str, Any], profile: UsageProfile, prices: PriceTable
    ) -> None:
        self.stack = stack
        self.resources: dict[str, dict[str, Any]] = template.get("Resources", {})
        self.profile = profile
        self.prices = prices

    def line(self, logical_id: str, rtype: str, item: str, quantity: float, key: str) -> Line:
        price = self.prices.prices.get(key)
        if price is None:
            raise UnpriceableError(f"{item}: no price {key!r} in the table")
        if price.usd is None:
            raise UnpriceableError(f"{item}: {price.evidence}")
        return Line(self.stack, logical_id, rtype, item, quantity, price.unit, key, price.usd)


def _definition_text(props: dict[str, Any]) -> str:
    """A state machine's definition as text, CloudFormation tokens left out (``Fn::Join`` of parts)."""
    definition = props.get("DefinitionString", props.get("Definition", ""))
    if isinstance(definition, dict) and "Fn::Join" in definition:
        separator, parts = definition["Fn::Join"]
        return str(separator).join(part for part in parts if isinstance(part, str))
    return definition if isinstance(definition, str) else json.dumps(definition)


def _name(props: dict[str, Any], key: str, logical_id: str) -> str:
    value = props.get(key)
    return value if isinstance(value, str) else logical_id


Pricer = Callable[[_Context, str, dict[str, Any]], Iterator[Line]]


def _endpoint_config(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    hours = ctx.profile.hours_per_month
    for variant in props.get("ProductionVariants", []):
        name = variant.get("VariantName", "?")
        if "ServerlessConfig" in variant:
            raise UnpriceableError(f"variant {name}: serverless inference is not in the price table")
        itype, count = variant["InstanceType"], int(variant["InitialInstanceCount"])
        yield ctx.line(
            lid,
            "AWS::SageMaker::EndpointConfig",
            f"variant {name}: {count} x {itype} (weight {variant.get('InitialVariantWeight', 1)})",
            count * hours,
            f"sagemaker.hosting.{itype}",
        )


def _vpc_endpoint(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    if props.get("VpcEndpointType", "Gateway") != "Interface":
        yield ctx.line(lid, "AWS::EC2::VPCEndpoint", "gateway endpoint", 1, "vpc.gateway_endpoint")
        return
    service = str(props.get("ServiceName", lid)).split(".", 3)[-1]  # com.amazonaws.{region}.{service}
    azs = len(props.get("SubnetIds", []))
    rtype = "AWS::EC2::VPCEndpoint"
    yield ctx.line(
        lid,
        rtype,
        f"{service}: {azs} AZ(s)",
        azs * ctx.profile.hours_per_month,
        "privatelink.interface.az_hour",
    )
    yield ctx.line(
        lid,
        rtype,
        f"{service}: data",
        ctx.profile.endpoint_gb(service),
        "privatelink.interface.gb",
    )


def _kinesis(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    rtype = "AWS::Kinesis::Stream"
    mode = props.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
    if mode != "PROVISIONED":
        yield ctx.line(
            lid, rtype, "on-demand stream", ctx.profile.hours_per_month, "kinesis.on_demand_stream_hour"
        )
        return
    shards = int(props.get("ShardCount", 1))
    yield ctx.line(
        lid, rtype, f"{shards} shard(s)", shards * ctx.profile.hours_per_month, "kinesis.shard_hour"
    )
    units = math.ceil(ctx.profile.request_kb / 25)
    records = ctx.profile.stream_requests_per_day * ctx.profile.days_per_month
    yield ctx.line(
        lid, rtype, f"PUT payload units ({units} per record)", records * units, "kinesis.put_payload_unit"
    )


def _api_stage(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    rtype = "AWS::ApiGateway::Stage"
    p = ctx.profile
    requests = p.gateway_requests_per_day * p.days_per_month
    yield ctx.line(lid, rtype, "REST requests", requests, "apigateway.rest.request")
    if props.get("CacheClusterEnabled"):
        size = str(props.get("CacheClusterSize", "0.5"))
        yield ctx.line(lid, rtype, f"cache {size} GB", p.hours_per_month, f"apigateway.cache.{size}")
    if props.get("TracingEnabled"):
        traced = requests * p.sampled_share(p.gateway_requests_per_day)
        yield ctx.line(lid, rtype, "X-Ray traces (default sampling)", traced, "xray.trace_recorded")


def _web_acl(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    rtype = "AWS::WAFv2::WebACL"
    p = ctx.profile
    rules = len(props.get("Rules", []))
    yield ctx.line(lid, rtype, "web ACL", 1, "waf.web_acl")
    yield ctx.line(lid, rtype, f"{rules} rules / rule groups", rules, "waf.rule")
    yield ctx.line(
        lid, rtype, "requests inspected", p.gateway_requests_per_day * p.days_per_month, "waf.request"
    )


def _lambda(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    rtype = "AWS::Lambda::Function"
    p = ctx.profile
    if any(marker in lid for marker in p.deploy_time_function_ids):
        raise _FreeError("CDK custom-resource handler: runs at deployment only")
    name = _name(props, "FunctionName", lid)
    usage = p.function(name)
    if usage is None:
        raise UnpriceableError(f"function {name}: no usage assumption matches it (UsageProfile.functions)")
    memory_gb = int(props.get("MemorySize", 128)) / 1024
    arch = (props.get("Architectures") or ["x86_64"])[0]
    per_day = p.invocations_per_day(usage)
    invocations = per_day * p.days_per_month
    gb_seconds = invocations * usage.billed_ms / 1000 * memory_gb
    yield ctx.line(
        lid,
        rtype,
        f"{name}: {per_day:g}/day x {usage.billed_ms:g} ms x {memory_gb * 1024:g} MB",
        gb_seconds,
        f"lambda.gb_second.{arch}",
    )
    yield ctx.line(lid, rtype, f"{name}: requests", invocations, "lambda.request")
    if usage.custom_metrics:
        yield ctx.line(
            lid, rtype, f"{name}: custom metrics (EMF)", usage.custom_metrics, "cloudwatch.custom_metric"
        )
    tracing = props.get("TracingConfig", {}).get("Mode") == "Active"
    # behind API Gateway the function's segments join the stage's trace (priced there)
    if tracing and usage.driven_by != "gateway":
        traced = invocations * p.sampled_share(per_day)
        yield ctx.line(lid, rtype, f"{name}: X-Ray traces", traced, "xray.trace_recorded")


def _log_group(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    rtype = "AWS::Logs::LogGroup"
    p = ctx.profile
    name = _name(props, "LogGroupName", lid)
    gb, _why = p.log_gb(name)
    vended = "vpc-flow-logs" in name or name.startswith("/aws/vendedlogs/")
    key = "cloudwatch.logs_vended_ingest_gb" if vended else "cloudwatch.logs_ingest_gb"
    yield ctx.line(lid, rtype, f"{name}: ingestion", gb, key)
    retention = props.get("RetentionInDays")
    months = p.log_storage_months if retention is None else min(int(retention) / 30.4, p.log_storage_months)
    yield ctx.line(
        lid,
        rtype,
        f"{name}: stored ({months:.1f} months kept)",
        gb * months,
        "cloudwatch.logs_storage_gb_month",
    )


def _answer_cache_table(ctx: _Context, lid: str) -> Iterator[Line]:
    """The answer cache of POST /predict (shared.answer_cache): a lookup per request, a write per miss."""
    rtype = "AWS::DynamoDB::Table"
    p = ctx.profile
    requests = p.api_requests_per_day * p.days_per_month
    # BatchGetItem of the entry and the generation item, strongly consistent: 1 RRU per item
    yield ctx.line(
        lid, rtype, "lookups (2 items, strongly consistent)", 2 * requests, "dynamodb.read_request_unit"
    )
    writes = requests * (1 - p.answer_cache_hit_share)
    yield ctx.line(lid, rtype, "answers stored (misses)", writes, "dynamodb.write_request_unit")
    # at most a TTL's worth of answers is live (DynamoDB's TTL deletes later: a day assumed)
    gb = p.api_requests_per_day * p.answer_cache_item_kb / 1e6
    yield ctx.line(
        lid, rtype, "storage (a day of answers until TTL deletes them)", gb, "dynamodb.storage_gb_month"
    )


def _profiled_table(
    ctx: _Context, lid: str, props: dict[str, Any], usage: TableUsage, indexes: int
) -> Iterator[Line]:
    """A table with its own usage assumption (``UsageProfile.tables``)."""
    rtype = "AWS::DynamoDB::Table"
    days = ctx.profile.days_per_month
    writes = usage.writes_per_day * days * (1 + indexes)
    yield ctx.line(
        lid, rtype, f"writes (table + {indexes} GSI): {usage.why}", writes, "dynamodb.write_request_unit"
    )
    yield ctx.line(
        lid,
        rtype,
        "reads (eventually consistent)",
        usage.reads_per_day * days / 2,
        "dynamodb.read_request_unit",
    )
    yield ctx.line(
        lid, rtype, "storage (table + GSIs)", usage.gb_stored * (1 + indexes), "dynamodb.storage_gb_month"
    )
    if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        yield ctx.line(lid, rtype, "point-in-time recovery", usage.gb_stored, "dynamodb.pitr_gb_month")


def _table(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    rtype = "AWS::DynamoDB::Table"
    p = ctx.profile
    if props.get("BillingMode") != "PAY_PER_REQUEST":
        raise UnpriceableError("provisioned capacity is not in the price table")
    keys = [key.get("AttributeName") for key in props.get("KeySchema", [])]
    if keys == [answer_cache.KEY_ATTRIBUTE]:
        yield from _answer_cache_table(ctx, lid)
        return
    indexes = len(props.get("GlobalSecondaryIndexes", []))
    usage = p.table(_name(props, "TableName", lid))
    if usage is not None:
        yield from _profiled_table(ctx, lid, props, usage, indexes)
        return
    items_per_day = p.predictions_per_day
    units = math.ceil(p.prediction_item_kb)
    writes = items_per_day * p.days_per_month * units * (1 + indexes)
    yield ctx.line(
        lid,
        rtype,
        f"writes ({units} WRU per item, table + {indexes} GSI)",
        writes,
        "dynamodb.write_request_unit",
    )
    reads = p.table_reads_per_day * p.days_per_month / 2  # eventually consistent: half a unit
    yield ctx.line(lid, rtype, "reads (eventually consistent)", reads, "dynamodb.read_request_unit")
    gb = items_per_day * p.prediction_ttl_days * p.prediction_item_kb * (1 + indexes) / 1e6
    yield ctx.line(
        lid,
        rtype,
        f"storage ({p.prediction_ttl_days:g} days of items, table + GSIs)",
        gb,
        "dynamodb.storage_gb_month",
    )
    if props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        yield ctx.line(lid, rtype, "point-in-time recovery", gb / (1 + indexes), "dynamodb.pitr_gb_month")
    if "StreamSpecification" in props:
        # GetRecords by Lambda triggers is free; no other stream reader is assumed
        yield ctx.line(
            lid, rtype, "stream reads (Lambda triggers: free)", 0, "dynamodb.streams_read_request_unit"
        )


def _bucket(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    rtype = "AWS::S3::Bucket"
    p = ctx.profile
    name = _name(props, "BucketName", lid)
    usage = p.bucket(name)
    yield ctx.line(lid, rtype, f"{name}: storage", usage.gb_stored, "s3.standard_gb_month")
    yield ctx.line(lid, rtype, f"{name}: PUT/LIST", usage.puts_per_day * p.days_per_month, "s3.put_request")
    yield ctx.line(lid, rtype, f"{name}: GET", usage.gets_per_day * p.days_per_month, "s3.get_request")


def _kms_key(ctx: _Context, lid: str, _props: dict[str, Any]) -> Iterator[Line]:
    yield ctx.line(lid, "AWS::KMS::Key", "customer managed key", 1, "kms.key_month")
    yield ctx.line(
        lid, "AWS::KMS::Key", "requests", ctx.profile.kms_requests_per_key_per_month, "kms.request"
    )


def _alarm(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    metrics = props.get("Metrics")
    count = sum(1 for m in metrics if "MetricStat" in m) if metrics else 1
    period = int(props.get("Period", 60))
    key = "cloudwatch.alarm_high_resolution" if period < 60 else "cloudwatch.alarm_standard"
    yield ctx.line(
        lid, "AWS::CloudWatch::Alarm", f"alarm on {count} metric(s), period {period} s", count, key
    )


def _composite_alarm(ctx: _Context, lid: str, _props: dict[str, Any]) -> Iterator[Line]:
    yield ctx.line(lid, "AWS::CloudWatch::CompositeAlarm", "composite alarm", 1, "cloudwatch.alarm_composite")


def _dashboard(ctx: _Context, lid: str, _props: dict[str, Any]) -> Iterator[Line]:
    yield ctx.line(lid, "AWS::CloudWatch::Dashboard", "dashboard", 1, "cloudwatch.dashboard")


def _scaling_policy(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    if props.get("PolicyType") != "TargetTrackingScaling":
        raise _FreeError("step scaling uses the alarms it names (priced as alarms)")
    # target tracking creates and keeps two alarms of its own (scale out, scale in)
    yield ctx.line(
        lid,
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "2 target-tracking alarms",
        2,
        "cloudwatch.alarm_standard",
    )


def _state_machine(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    rtype = "AWS::StepFunctions::StateMachine"
    p = ctx.profile
    if props.get("StateMachineType", "STANDARD") != "STANDARD":
        raise UnpriceableError("express workflows are not in the price table")
    name = _name(props, "StateMachineName", lid)
    definition = json.dumps(props.get("DefinitionString", props.get("Definition", "")))
    trains = "createTrainingJob" in definition
    runs = p.runs(name)
    if runs is None and not trains:
        raise UnpriceableError(
            f"state machine {name}: no usage assumption matches it (UsageProfile.state_machine_runs)"
        )
    per_month = runs.per_day * p.days_per_month if runs else p.training_runs_per_month
    transitions = per_month * p.state_transitions_per_run
    yield ctx.line(
        lid,
        rtype,
        f"{name}: {per_month:g} runs x {p.state_transitions_per_run:g} transitions",
        transitions,
        "stepfunctions.standard_transition",
    )
    if trains:
        text = _definition_text(props)
        found = re.search(r'"InstanceType"\s*:\s*"(ml\.[a-z0-9]+\.[a-z0-9]+)"', text)
        itype = found.group(1) if found else p.training_instance_type
        spot = re.search(r'"EnableManagedSpotTraining"\s*:\s*true', text) is not None
        hours = p.training_runs_per_month * p.training_hours_per_run
        billed = hours * (1 - p.training_spot_savings) if spot else hours
        how = f"managed spot, {p.training_spot_savings:.0%} assumed saving" if spot else "on demand"
        yield ctx.line(
            lid,
            rtype,
            f"training: {p.training_runs_per_month:g} runs x {p.training_hours_per_run:g} h x {itype} "
            f"({how})",
            billed,
            f"sagemaker.training.{itype}",
        )


def _job_definition(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    rtype = "AWS::Batch::JobDefinition"
    p = ctx.profile
    if "FARGATE" not in props.get("PlatformCapabilities", []):
        raise UnpriceableError("EC2 Batch jobs are not in the price table")
    name = _name(props, "JobDefinitionName", lid)
    usage = p.job(name)
    if usage is None:
        raise UnpriceableError(
            f"job definition {name}: no usage assumption matches it (UsageProfile.job_seconds)"
        )
    needs = {
        r["Type"]: float(r["Value"])
        for r in props.get("ContainerProperties", {}).get("ResourceRequirements", [])
    }
    hours = usage.per_day * p.days_per_month / 3600
    note = "Spot priced at the on-demand rate (upper bound)"
    yield ctx.line(
        lid,
        rtype,
        f"{name}: {needs.get('VCPU', 0):g} vCPU x {hours:.2f} h ({note})",
        needs.get("VCPU", 0) * hours,
        "fargate.vcpu_hour",
    )
    memory_gb = needs.get("MEMORY", 0) / 1024
    yield ctx.line(
        lid, rtype, f"{name}: {memory_gb:g} GB x {hours:.2f} h", memory_gb * hours, "fargate.gb_hour"
    )


def _topic(ctx: _Context, lid: str, _props: dict[str, Any]) -> Iterator[Line]:
    yield ctx.line(lid, "AWS::SNS::Topic", "publishes", ctx.profile.sns_publishes_per_month, "sns.publish")


def _queue(ctx: _Context, lid: str, _props: dict[str, Any]) -> Iterator[Line]:
    yield ctx.line(lid, "AWS::SQS::Queue", "requests", ctx.profile.sqs_requests_per_month, "sqs.request")


def _parameter(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    if props.get("Tier", "Standard") == "Standard":
        raise _FreeError("standard parameters are free")
    yield ctx.line(lid, "AWS::SSM::Parameter", "advanced parameter", 1, "ssm.advanced_parameter")


def _firehose(ctx: _Context, lid: str, props: dict[str, Any]) -> Iterator[Line]:
    rtype = "AWS::KinesisFirehose::DeliveryStream"
    p = ctx.profile
    gb = p.predictions_per_day * p.days_per_month * p.firehose_record_kb / 1e6
    yield ctx.line(
        lid,
        rtype,
        f"ingestion: every prediction, {p.firehose_record_kb:g} KB billed each",
        gb,
        "firehose.ingest_gb",
    )
    conversion = props.get("ExtendedS3DestinationConfiguration", {}).get(
        "DataFormatConversionConfiguration", {}
    )
    if conversion.get("Enabled", bool(conversion)):
        yield ctx.line(lid, rtype, "format conversion (Parquet)", gb, "firehose.format_conversion_gb")


def _crawler(ctx: _Context, lid: str, _props: dict[str, Any]) -> Iterator[Line]:
    p = ctx.profile
    dpu_hours = p.crawler_runs_per_month * p.crawler_dpu_hours_per_run
    yield ctx.line(
        lid, "AWS::Glue::Crawler", f"{p.crawler_runs_per_month:g} runs", dpu_hours, "glue.crawler_dpu_hour"
    )


def _workgroup(ctx: _Context, lid: str, _props: dict[str, Any]) -> Iterator[Line]:
    tb = ctx.profile.athena_tb_scanned_per_month
    yield ctx.line(lid, "AWS::Athena::WorkGroup", "data scanned", tb, "athena.tb_scanned")


class _FreeError(Exception):
    """This resource (of a type that is usually priced) costs nothing; the message says why."""


PRICERS: dict[str, Pricer] = {
    "AWS::SageMaker::EndpointConfig": _endpoint_config,
    "AWS::EC2::VPCEndpoint": _vpc_endpoint,
    "AWS::Kinesis::Stream": _kinesis,
    "AWS::ApiGateway::Stage": _api_stage,
    "AWS::WAFv2::WebACL": _web_acl,
    "AWS::Lambda::Function": _lambda,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::DynamoDB::Table": _table,
    "AWS::S3::Bucket": _bucket,
    "AWS::KMS::Key": _kms_key,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::CloudWatch::CompositeAlarm": _composite_alarm,
    "AWS::CloudWatch::Dashboard": _dashboard,
    "AWS::ApplicationAutoScaling::ScalingPolicy": _scaling_policy,
    "AWS::StepFunctions::StateMachine": _state_machine,
    "AWS::Batch::JobDefinition": _job_definition,
    "AWS::SNS::Topic": _topic,
    "AWS::SQS::Queue": _queue,
    "AWS::SSM::Parameter": _parameter,
    "AWS::KinesisFirehose::DeliveryStream": _firehose,
    "AWS::Glue::Crawler": _crawler,
    "AWS::Athena::WorkGroup": _workgroup,
}


def price_template(cost: StageCost, stack: str, template: dict[str, Any]) -> None:
    """Add the lines, free and unpriced entries of one template to ``cost``."""
    ctx = _Context(stack, template, cost.profile, cost.prices)
    for lid, resource in ctx.resources.items():
        rtype = resource["Type"]
        props = resource.get("Properties", {})
        if rtype in FREE_TYPES:
            cost.free.append(Listed(stack, lid, rtype, FREE_TYPES[rtype]))
            continue
        if rtype.startswith("Custom::"):
            cost.free.append(
                Listed(stack, lid, rtype, "deploy-time custom resource; its handler is priced as a function")
            )
            continue
        pricer = PRICERS.get(rtype)
        if pricer is None:
            cost.unpriced.append(Listed(stack, lid, rtype, "the cost model does not price this type"))
            continue
        lines: list[Line] = []
        try:
            for line in pricer(ctx, lid, props):
                lines.append(line)
        except _FreeError as free:
            cost.free.append(Listed(stack, lid, rtype, str(free)))
            continue
        except UnpriceableError as err:
            cost.unpriced.append(Listed(stack, lid, rtype, str(err)))
        cost.lines += lines


def price_stage(cdk_out: Path, stage: str, profile: UsageProfile, prices: PriceTable) -> StageCost:
    """The cost of one synthesized stage (``cdk_out`` from ``python -m tools.synth``)."""
    assemblies = stage_assemblies(cdk_out)
    if stage not in assemblies:
        raise KeyError(f"no stage {stage!r} in {cdk_out} (stages: {', '.join(assemblies)})")
    cost = StageCost(stage, profile, prices)
    for plan in stack_order(assemblies[stage]):
        price_template(cost, plan.stack_name, json.loads(plan.template_file.read_text()))
    return cost
