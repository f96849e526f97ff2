"""The cost model prices what the templates say: change a value and the cost follows; unknown types listed."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from shared.config import DEFAULT_INTERFACE_ENDPOINTS, get_config
from stacks.app import new_app
from stacks.network.stack import NetworkStack
from tools.cost.__main__ import as_json, as_markdown
from tools.cost.model import PRICE_TABLE, PriceTable, StageCost, price_template
from tools.cost.usage import DEFAULT_PROFILE, FunctionUsage, UsageProfile

PRICES = PriceTable.load()
HOURS = DEFAULT_PROFILE.hours_per_month


def _cost(resources: dict[str, Any], profile: UsageProfile = DEFAULT_PROFILE) -> StageCost:
    cost = StageCost("test", profile, PRICES)
    price_template(cost, "stack", {"Resources": resources})
    return cost


def _endpoint_config(*variants: tuple[str, int]) -> dict[str, Any]:
    return {
        "Config": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {
                "ProductionVariants": [
                    {"VariantName": f"V{i}", "InstanceType": itype, "InitialInstanceCount": count}
                    for i, (itype, count) in enumerate(variants)
                ]
            },
        }
    }


def test_instance_count_and_type_follow_the_template():
    two = _cost(_endpoint_config(("ml.m5.large", 2)))
    three = _cost(_endpoint_config(("ml.m5.large", 3)))
    small = _cost(_endpoint_config(("ml.t2.medium", 2)))
    m5 = PRICES.prices["sagemaker.hosting.ml.m5.large"].usd
    t2 = PRICES.prices["sagemaker.hosting.ml.t2.medium"].usd
    assert m5 is not None
    assert t2 is not None
    assert math.isclose(two.monthly_usd, 2 * HOURS * m5)
    assert math.isclose(three.monthly_usd, 3 * HOURS * m5)
    assert math.isclose(small.monthly_usd, 2 * HOURS * t2)
    assert not two.unpriced


def test_an_instance_type_without_a_price_is_unpriced_never_zero():
    cost = _cost(_endpoint_config(("ml.m5.large", 1), ("ml.p4d.24xlarge", 1)))
    assert [u.resource_type for u in cost.unpriced] == ["AWS::SageMaker::EndpointConfig"]
    assert "sagemaker.hosting.ml.p4d.24xlarge" in cost.unpriced[0].reason


def test_unknown_types_are_unpriced_and_free_types_are_listed_as_free():
    cost = _cost(
        {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
            "Thing": {"Type": "AWS::Foo::Bar", "Properties": {}},
            "Custom": {"Type": "Custom::Whatever", "Properties": {}},
        }
    )
    assert not cost.lines
    assert [(u.logical_id, u.reason) for u in cost.unpriced] == [
        ("Thing", "the cost model does not price this type")
    ]
    assert {f.logical_id for f in cost.free} == {"Role", "Custom"}
    report = as_markdown(cost)
    assert "**Unpriced** (1):" in report
    assert "AWS::Foo::Bar" in report
    assert as_json(cost)["unpriced"][0]["resource_type"] == "AWS::Foo::Bar"


def test_a_price_the_table_does_not_have_makes_the_resource_unpriced():
    stream = {
        "Type": "AWS::Kinesis::Stream",
        "Properties": {"StreamModeDetails": {"StreamMode": "ON_DEMAND"}},
    }
    cost = _cost({"Stream": stream})
    assert not cost.lines
    assert "on-demand" in cost.unpriced[0].reason


def _function(memory: int, name: str = "ml-pipeline-api-prod-us-east-1") -> dict[str, Any]:
    return {
        "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": name, "MemorySize": memory}}
    }


def test_lambda_cost_follows_the_configured_memory_and_the_stated_duration():
    half = _cost(_function(512))
    full = _cost(_function(1024))
    usage = DEFAULT_PROFILE.function("-api-")
    assert usage is not None
    per_day = DEFAULT_PROFILE.gateway_requests_per_day  # the API function serves every gateway request
    gb_seconds = per_day * DEFAULT_PROFILE.days_per_month * usage.billed_ms / 1000
    quantities = {line.price_key: line.quantity for line in full.lines}
    assert math.isclose(quantities["lambda.gb_second.x86_64"], gb_seconds)

    def compute(cost: StageCost) -> float:
        return sum(line.usd for line in cost.lines if line.price_key.startswith("lambda.gb_second"))

    assert math.isclose(compute(full), 2 * compute(half))
    # requests and the function's custom metrics do not depend on memory
    assert math.isclose(full.monthly_usd - compute(full), half.monthly_usd - compute(half))
    metrics = [line for line in half.lines if line.price_key == "cloudwatch.custom_metric"]
    assert [m.quantity for m in metrics] == [usage.custom_metrics]
    slower = DEFAULT_PROFILE.model_copy(
        update={"functions": (FunctionUsage(match="-api-", invocations_per_day=1, billed_ms=1, why="test"),)}
    )
    assert _cost(_function(512), slower).monthly_usd < half.monthly_usd


def test_a_function_no_usage_assumption_covers_is_unpriced():
    cost = _cost(_function(256, name="ml-pipeline-new-thing-prod-us-east-1"))
    assert not cost.lines
    assert "no usage assumption" in cost.unpriced[0].reason


def test_later_layers_types_are_priced_generically():
    cost = _cost(
        {
            "Firehose": {
                "Type": "AWS::KinesisFirehose::DeliveryStream",
                "Properties": {
                    "ExtendedS3DestinationConfiguration": {
                        "DataFormatConversionConfiguration": {"Enabled": True}
                    }
                },
            },
            "Crawler": {"Type": "AWS::Glue::Crawler", "Properties": {}},
            "WorkGroup": {"Type": "AWS::Athena::WorkGroup", "Properties": {}},
            "Composite": {"Type": "AWS::CloudWatch::CompositeAlarm", "Properties": {}},
            "Dashboard": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {}},
            "Table": {"Type": "AWS::Glue::Table", "Properties": {}},
        }
    )
    assert not cost.unpriced
    priced = {line.resource_type for line in cost.lines}
    assert priced == {
        "AWS::KinesisFirehose::DeliveryStream",
        "AWS::Glue::Crawler",
        "AWS::Athena::WorkGroup",
        "AWS::CloudWatch::CompositeAlarm",
        "AWS::CloudWatch::Dashboard",
    }
    firehose = {line.price_key for line in cost.lines if line.logical_id == "Firehose"}
    assert firehose == {"firehose.ingest_gb", "firehose.format_conversion_gb"}


def test_every_price_names_its_public_source_and_the_table_is_dated():
    raw = json.loads(PRICE_TABLE.read_text())
    assert raw["region"] == "us-east-1"
    assert raw["as_of"]
    for key, price in PRICES.prices.items():
        assert price.source.startswith("https://"), key
        assert price.evidence, key
        assert price.usd is None or price.usd >= 0, key


def _network_cost(tmp_path: Path, **network: Any) -> StageCost:
    base = get_config("prod")
    config = base.model_copy(update={"network": base.network.model_copy(update=network)})
    app = new_app(outdir=str(tmp_path))
    stack = NetworkStack(
        app, "Network", config=config, env=cdk.Environment(account=config.account, region=config.region)
    )
    template = app.synth().get_stack_by_name(stack.stack_name).template
    cost = StageCost("prod", DEFAULT_PROFILE, PRICES)
    price_template(cost, stack.stack_name, template)
    return cost


@pytest.mark.parametrize("keep", [7, 2])
def test_interface_endpoint_cost_follows_the_configured_list_and_azs(tmp_path, keep):
    az_hour = PRICES.prices["privatelink.interface.az_hour"].usd
    per_gb = PRICES.prices["privatelink.interface.gb"].usd
    assert az_hour is not None
    assert per_gb is not None
    endpoints = DEFAULT_INTERFACE_ENDPOINTS[:keep]
    in_one_az = (endpoints[0].model_copy(update={"availability_zones": 1}), *endpoints[1:])
    for listed, az_count in ((endpoints, 2 * keep), (in_one_az, 2 * keep - 1)):
        cost = _network_cost(tmp_path / f"{keep}-{az_count}", interface_endpoints=listed)
        endpoint_usd = cost.by(lambda line: line.resource_type)["AWS::EC2::VPCEndpoint"]
        gb = sum(DEFAULT_PROFILE.endpoint_gb(e.service) for e in endpoints)
        expected = az_count * HOURS * az_hour + gb * per_gb
        assert math.isclose(endpoint_usd, expected), (keep, az_count)
        assert not cost.unpriced


def test_request_driven_costs_follow_the_traffic_assumption():
    stage = {"Stage": {"Type": "AWS::ApiGateway::Stage", "Properties": {}}, **_function(512)}
    base = _cost(stage)
    doubled = DEFAULT_PROFILE.model_copy(
        update={
            "api_requests_per_day": 2 * DEFAULT_PROFILE.api_requests_per_day,
            "stream_requests_per_day": 2 * DEFAULT_PROFILE.stream_requests_per_day,
        }
    )
    more = _cost(stage, doubled)
    for key in ("apigateway.rest.request", "lambda.request", "lambda.gb_second.x86_64"):
        before = sum(line.quantity for line in base.lines if line.price_key == key)
        after = sum(line.quantity for line in more.lines if line.price_key == key)
        assert math.isclose(after, 2 * before), key
    assert doubled.predictions_per_day == DEFAULT_PROFILE.predictions_per_day + 80_000


def test_state_machines_are_priced_by_runs_and_a_training_job_by_its_instance_hours():
    batch = {"StateMachineName": "ml-pipeline-batch-prod-us-east-1", "DefinitionString": "{}"}
    training = {
        "StateMachineName": "ml-pipeline-retrain-prod-us-east-1",
        "DefinitionString": {
            "Fn::Join": ["", ['{"Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync"}']]
        },
    }
    other = {"StateMachineName": "ml-pipeline-other-prod-us-east-1", "DefinitionString": "{}"}
    machines = {
        name: {"Type": "AWS::StepFunctions::StateMachine", "Properties": props}
        for name, props in (("Batch", batch), ("Train", training), ("Other", other))
    }
    cost = _cost(machines)
    p = DEFAULT_PROFILE
    train = {line.price_key: line.quantity for line in cost.lines if line.logical_id == "Train"}
    # no instance type or spot in this definition: the profile's instance, on demand
    assert train[f"sagemaker.training.{p.training_instance_type}"] == (
        p.training_runs_per_month * p.training_hours_per_run
    )
    runs = p.runs("-batch-")
    assert runs is not None
    (transitions,) = [line.quantity for line in cost.lines if line.logical_id == "Batch"]
    assert math.isclose(transitions, runs.per_day * p.days_per_month * p.state_transitions_per_run)
    assert [u.logical_id for u in cost.unpriced] == ["Other"]


def test_a_fargate_job_is_priced_from_its_resource_requirements():
    requirements = [{"Type": "VCPU", "Value": "2"}, {"Type": "MEMORY", "Value": "4096"}]
    job = {
        "Type": "AWS::Batch::JobDefinition",
        "Properties": {
            "JobDefinitionName": "ml-pipeline-batch-predict-prod-us-east-1",
            "PlatformCapabilities": ["FARGATE"],
            "ContainerProperties": {"ResourceRequirements": requirements},
        },
    }
    cost = _cost({"Job": job})
    usage = DEFAULT_PROFILE.job("-batch-")
    assert usage is not None
    hours = usage.per_day * DEFAULT_PROFILE.days_per_month / 3600
    quantities = {line.price_key: line.quantity for line in cost.lines}
    assert math.isclose(quantities["fargate.vcpu_hour"], 2 * hours)
    assert math.isclose(quantities["fargate.gb_hour"], 4 * hours)


def test_a_training_job_is_priced_at_its_templates_instance_type_and_spot_saving():
    def machine(instance: str, spot: bool) -> dict:
        text = (
            '{"Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync", "Parameters": '
            f'{{"ResourceConfig": {{"InstanceType": "{instance}"}}, '
            f'"EnableManagedSpotTraining": {"true" if spot else "false"}}}}}'
        )
        return {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "StateMachineName": "ml-pipeline-training-prod-us-east-1",
                "DefinitionString": {"Fn::Join": ["", [text, {"Ref": "AWS::Partition"}]]},
            },
        }

    p = DEFAULT_PROFILE
    hours = p.training_runs_per_month * p.training_hours_per_run
    on_demand = _cost({"Train": machine("ml.m5.xlarge", spot=False)})
    (line,) = [line for line in on_demand.lines if line.price_key.startswith("sagemaker.training.")]
    assert line.price_key == "sagemaker.training.ml.m5.xlarge"
    assert math.isclose(line.quantity, hours)
    spot = _cost({"Train": machine("ml.m5.xlarge", spot=True)})
    (spot_line,) = [line for line in spot.lines if line.price_key.startswith("sagemaker.training.")]
    assert math.isclose(spot_line.quantity, hours * (1 - p.training_spot_savings))
    assert "managed spot" in spot_line.item


def test_a_table_with_its_own_usage_is_priced_by_it_not_as_the_predictions_table():
    table = {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "TableName": "ml-pipeline-training-metadata-prod-us-east-1",
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [{"IndexName": "a"}, {"IndexName": "b"}],
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    }
    p = DEFAULT_PROFILE
    usage = p.table("ml-pipeline-training-metadata-prod-us-east-1")
    assert usage is not None
    lines = {line.price_key: line.quantity for line in _cost({"Metadata": table}).lines}
    assert math.isclose(lines["dynamodb.write_request_unit"], usage.writes_per_day * p.days_per_month * 3)
    assert math.isclose(lines["dynamodb.pitr_gb_month"], usage.gb_stored)
    assert lines["dynamodb.write_request_unit"] < p.predictions_per_day, "not one write per prediction"
