"""The cost model on the real synthesized stages: each resource priced or listed free; figures from config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from shared.config import ENVIRONMENTS
from tools.cost.model import PriceTable, StageCost, price_stage
from tools.cost.usage import DEFAULT_PROFILE

PRICES = PriceTable.load()


@pytest.fixture(scope="module")
def costs(cdk_out: Path) -> dict[str, StageCost]:
    return {env: price_stage(cdk_out, env, DEFAULT_PROFILE, PRICES) for env in ENVIRONMENTS}


@pytest.mark.parametrize("env", list(ENVIRONMENTS))
def test_every_resource_of_every_stage_is_priced_or_listed_free(env, costs, plan):
    cost = costs[env]
    assert not cost.unpriced, cost.unpriced
    counted = {(line.stack, line.logical_id) for line in cost.lines} | {
        (f.stack, f.logical_id) for f in cost.free
    }
    stacks = {s.stack_name for s in plan[env]}
    assert {stack for stack, _ in counted} == stacks
    assert cost.monthly_usd > 0


@pytest.mark.parametrize("env", list(ENVIRONMENTS))
def test_instance_hours_follow_each_variant_of_the_config(env, costs):
    config = ENVIRONMENTS[env].inference
    lines = [line for line in costs[env].lines if line.resource_type == "AWS::SageMaker::EndpointConfig"]
    assert len(lines) == len(config.variants)
    for variant, line in zip(config.variants, lines, strict=True):
        assert line.price_key == f"sagemaker.hosting.{variant.instance_type}"
        assert line.quantity == variant.initial_instance_count * DEFAULT_PROFILE.hours_per_month


@pytest.mark.parametrize("env", list(ENVIRONMENTS))
def test_interface_endpoint_hours_follow_the_configured_azs(env, costs):
    network = ENVIRONMENTS[env].network
    az_hours = sum(
        line.quantity for line in costs[env].lines if line.price_key == "privatelink.interface.az_hour"
    )
    expected = sum(e.availability_zones or network.max_azs for e in network.interface_endpoints)
    assert math.isclose(az_hours, expected * DEFAULT_PROFILE.hours_per_month)


def test_prod_is_cheaper_per_prediction_than_a_stage_with_the_default_sizing(costs):
    # dev runs the defaults (one ml.m5.large per variant, every endpoint in both AZs)
    assert costs["prod"].per_million_predictions_usd < costs["dev"].per_million_predictions_usd
