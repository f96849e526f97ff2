"""The typed configuration: valid environments, naming, and clear errors for invalid config."""

from __future__ import annotations

import pytest

from shared.config import (
    ENVIRONMENTS,
    SKLEARN_IMAGE_TAG,
    ConfigError,
    RemovalPolicy,
    get_config,
    sklearn_image_uri,
    validate,
)
from shared.model_parameters import InvalidVersionError


def _base(**overrides):
    data = {"name": "test", "account": "123456789012", "region": "us-east-1"}
    data.update(overrides)
    return data


def test_three_environments_with_prod_retaining_data():
    assert sorted(ENVIRONMENTS) == ["dev", "local", "prod"]
    prod = get_config("prod")
    assert prod.data_removal_policy is RemovalPolicy.RETAIN
    assert prod.log_removal_policy is RemovalPolicy.RETAIN
    assert prod.log_retention_days >= 365
    assert get_config("local").data_removal_policy is RemovalPolicy.DESTROY
    assert get_config("dev").data_removal_policy is RemovalPolicy.DESTROY


def test_unknown_environment_names_the_known_ones():
    with pytest.raises(
        ConfigError, match=r"unknown environment 'staging'; known environments: dev, local, prod"
    ):
        get_config("staging")


def test_naming_scheme():
    prod = get_config("prod")
    assert prod.resource_name("predictions") == "ml-pipeline-predictions-prod-us-east-1"
    assert prod.bucket_name("models") == "ml-pipeline-models-prod-us-east-1-222222222222"
    assert prod.stack_name("network") == "ml-pipeline-network-prod"
    assert prod.model_parameters.active_version == "/ml-pipeline/prod/models/active-version"
    assert prod.model_parameters.metadata("v2") == "/ml-pipeline/prod/models/versions/v2/metadata"
    with pytest.raises(InvalidVersionError, match="model version"):
        prod.model_parameters.metadata("../v2")
    with pytest.raises(ConfigError, match="resource part"):
        prod.resource_name("Bad_Name")


def test_bucket_name_longer_than_s3_allows_is_refused():
    config = validate(_base())
    with pytest.raises(ConfigError, match="longer than S3's 63 characters"):
        config.bucket_name("a-very-long-purpose-name-that-does-not-fit")


def test_tags_cover_the_required_keys():
    assert get_config("dev").tag_map == {
        "Project": "ml-pipeline",
        "Environment": "dev",
        "CostCenter": "ml-platform",
        "Owner": "mlops-team",
        "DataClassification": "confidential",
    }


def test_weights_must_sum_to_one():
    variants = [{"name": "ModelA", "weight": 0.7}, {"name": "ModelB", "weight": 0.2}]
    with pytest.raises(ConfigError, match=r"variant weights must sum to 1, got 0\.9"):
        validate(_base(inference={"variants": variants}))


def test_variant_names_must_be_unique():
    variants = [{"name": "ModelA", "weight": 0.5}, {"name": "ModelA", "weight": 0.5}]
    with pytest.raises(ConfigError, match="variant names must be unique"):
        validate(_base(inference={"variants": variants}))


@pytest.mark.parametrize("ttl", [0, -1])
def test_ttl_must_be_positive(ttl):
    with pytest.raises(ConfigError, match="prediction_ttl_days"):
        validate(_base(data={"prediction_ttl_days": ttl}))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("account", "12345", "12-digit AWS account id"),
        ("region", "mars-1", "not an AWS region name"),
        ("name", "Prod!", "2-10 lowercase letters"),
        ("log_retention_days", 42, "not a CloudWatch Logs retention period"),
        ("data_removal_policy", "snapshot", "data_removal_policy"),
        ("unexpected", 1, "Extra inputs are not permitted"),
    ],
)
def test_invalid_fields_fail_with_a_clear_message(field, value, message):
    with pytest.raises(ConfigError, match=message):
        validate(_base(**{field: value}))


def test_interface_endpoints_listed_twice_are_refused():
    endpoint = {"service": "ssm", "callers": "the preprocessing Lambda reads parameters"}
    with pytest.raises(ConfigError, match="interface endpoints listed twice: ssm"):
        validate(_base(network={"interface_endpoints": [endpoint, endpoint]}))


def test_autoscaling_bounds_are_ordered():
    with pytest.raises(ConfigError, match="autoscaling_min_capacity must not exceed"):
        validate(_base(inference={"autoscaling_min_capacity": 5, "autoscaling_max_capacity": 2}))


def test_every_interface_endpoint_names_its_caller():
    for config in ENVIRONMENTS.values():
        for endpoint in config.network.interface_endpoints:
            assert len(endpoint.callers) >= 10


def test_config_is_immutable():
    with pytest.raises(ValueError, match="frozen"):
        get_config("dev").name = "other"  # type: ignore[misc]


def test_canary_only_where_one_instance_is_at_most_half_of_every_variant():
    one_each = validate(_base())
    assert one_each.inference.canary_instances is None  # all at once, then bake
    two_each = validate(
        _base(
            inference={
                "variants": [
                    {"name": "ModelA", "weight": 0.8, "initial_instance_count": 2},
                    {"name": "ModelB", "weight": 0.2, "initial_instance_count": 2},
                ]
            }
        )
    )
    assert two_each.inference.canary_instances == 1
    # prod's challenger runs one instance (issue 19): its deployments shift all at once and bake
    assert get_config("prod").inference.canary_instances is None


def test_prod_keeps_the_champion_in_two_azs_and_private_endpoints_for_real_time_callers():
    prod = get_config("prod")
    champion = prod.inference.variant("ModelA")
    assert champion.initial_instance_count >= 2
    assert prod.inference.min_capacity("ModelA") >= 2  # autoscaling never takes it below two AZs
    assert prod.inference.min_capacity("ModelB") == 1
    single_az = {e.service for e in prod.network.interface_endpoints if e.availability_zones == 1}
    assert single_az == {"ecr.api", "ecr.dkr", "logs"}  # the Batch job's only
    assert {e.service for e in prod.network.interface_endpoints} >= {
        "sagemaker.runtime",
        "ssm",
        "kinesis-streams",
    }


def test_a_variant_floor_of_its_own_bounds_its_instance_count():
    variants = [
        {"name": "ModelA", "weight": 0.8, "initial_instance_count": 1, "min_instance_count": 2},
        {"name": "ModelB", "weight": 0.2, "initial_instance_count": 1},
    ]
    with pytest.raises(
        ConfigError, match=r"ModelA: initial_instance_count 1 is outside the autoscaling bounds 2\.\.10"
    ):
        validate(_base(inference={"variants": variants}))
    variants[0]["initial_instance_count"] = 2
    config = validate(_base(inference={"variants": variants}))
    assert [config.inference.min_capacity(n) for n in ("ModelA", "ModelB")] == [2, 1]


def test_the_endpoint_has_a_champion_and_a_challenger_variant():
    with pytest.raises(ConfigError, match="variants ModelA \\(champion\\) and ModelB \\(challenger\\)"):
        validate(
            _base(inference={"variants": [{"name": "Blue", "weight": 0.5}, {"name": "Green", "weight": 0.5}]})
        )


def test_a_challenger_weight_needs_a_challenger_version():
    with pytest.raises(
        ConfigError, match=r"ModelB has weight 0.2 but data.initial_challenger_version is not set"
    ):
        validate(_base(data={"initial_challenger_version": None}))
    zero = [{"name": "ModelA", "weight": 1.0}, {"name": "ModelB", "weight": 0.0}]
    alone = validate(_base(data={"initial_challenger_version": None}, inference={"variants": zero}))
    assert alone.initial_traffic == {"challenger": None, "challenger_weight": 0.0}
    assert alone.initial_version("ModelB") == alone.data.initial_model_version


def test_instance_counts_stay_inside_the_autoscaling_bounds():
    variants = [
        {"name": "ModelA", "weight": 0.8, "initial_instance_count": 1},
        {"name": "ModelB", "weight": 0.2, "initial_instance_count": 1},
    ]
    with pytest.raises(ConfigError, match=r"outside the autoscaling bounds 2\.\.10"):
        validate(_base(inference={"variants": variants, "autoscaling_min_capacity": 2}))


def test_image_registry_and_stream_mode_are_checked():
    assert sklearn_image_uri("us-east-1").startswith("683313688378.dkr.ecr.us-east-1.amazonaws.com/")
    with pytest.raises(ConfigError, match="no SageMaker scikit-learn image registry known for ap-south-2"):
        sklearn_image_uri("ap-south-2")
    with pytest.raises(ConfigError, match="shard_count applies to PROVISIONED streams only"):
        validate(_base(inference={"stream": {"mode": "ON_DEMAND", "shard_count": 2}}))


def test_image_tag_matches_the_scikit_learn_the_model_is_trained_with():
    import sklearn  # noqa: PLC0415 (the model group's pin)

    major_minor = ".".join(sklearn.__version__.split(".")[:2])
    assert SKLEARN_IMAGE_TAG.startswith(f"{major_minor}-")
