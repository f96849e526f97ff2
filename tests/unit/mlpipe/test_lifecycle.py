"""Reconciling the endpoint: deploy, weights, promote, rollback, and every refusal.

moto has no SageMaker UpdateEndpoint; the local stage's emulator extension adds it (and can make
a deployment roll back the way SageMaker's guardrails do), so these tests run the real calls.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mlpipe.cache import answer_cache_invalidator
from mlpipe.errors import ConflictError, MissingStageError, MlpipeError, UnknownVersionError, UsageError
from mlpipe.lifecycle import EndpointTarget, Lifecycle
from mlpipe.state import DesiredState, Traffic, parse_weights
from tests.unit.conftest import BUCKET, ENDPOINT, IMAGE, PATH, ROLE, VPC


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def lifecycle(aws, data_stack, stage):
    return Lifecycle(
        location=data_stack,
        target=EndpointTarget(endpoint_name=ENDPOINT, execution_role_arn=ROLE, image_uri=IMAGE),
        registry=stage,
        ssm=aws.client("ssm"),
        sagemaker=aws.client("sagemaker"),
        s3=aws.client("s3"),
        actor="alice",
        poll_seconds=0.0,
        sleep=lambda _: None,
        clock=Clock(),
    )


def _endpoint(aws):
    sm = aws.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    weights = {v["VariantName"]: v["CurrentWeight"] for v in endpoint["ProductionVariants"]}
    versions = {
        v["VariantName"]: sm.describe_model(ModelName=v["ModelName"])["PrimaryContainer"][
            "ModelDataUrl"
        ].split("/")[-2]
        for v in config["ProductionVariants"]
    }
    return endpoint, config, weights, versions


def _params(aws):
    ssm = aws.client("ssm")
    return {
        name.rsplit("/", 1)[-1]: ssm.get_parameter(Name=name)["Parameter"]["Value"]
        for name in (f"{PATH}/active-version", f"{PATH}/traffic", f"{PATH}/verified", f"{PATH}/last-request")
    }


def test_deploy_a_challenger_creates_a_model_and_config_and_verifies_it(aws, lifecycle):
    verified = lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    endpoint, config, weights, versions = _endpoint(aws)
    assert versions == {"ModelA": "v1", "ModelB": "v2"}
    assert weights == {"ModelA": 0.8, "ModelB": 0.2}
    assert endpoint["EndpointConfigName"] == verified.endpoint_config != "stack-config"
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == "s3://data/data-capture/"  # carried over
    model = aws.client("sagemaker").describe_model(ModelName=verified.variants["ModelB"].model_name)
    assert model["VpcConfig"] == VPC  # placed where the stack's model runs
    assert model["PrimaryContainer"]["Environment"]["MODEL_VERSION"] == "v2"
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    params = _params(aws)
    assert params["active-version"] == "v1"
    assert json.loads(params["traffic"]) == {"challenger": "v2", "challenger_weight": 0.2}
    assert json.loads(params["verified"]) == verified.model_dump()
    assert json.loads(params["last-request"])["status"] == "succeeded"
    assert [e.event for e in lifecycle.registry.history()][-1] == "deployed"
    assert lifecycle.release_lock() is False, "the lock is released after the deploy"


def test_weights_only_change_updates_weights_without_a_new_config(aws, lifecycle):
    first = lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    configs_before = len(aws.client("sagemaker").list_endpoint_configs()["EndpointConfigs"])
    verified = lifecycle.weights(parse_weights(["A=0.5", "B=0.5"]))
    _, _, weights, versions = _endpoint(aws)
    assert weights == {"ModelA": 0.5, "ModelB": 0.5}
    assert versions == {"ModelA": "v1", "ModelB": "v2"}
    assert verified.endpoint_config == first.endpoint_config
    assert len(aws.client("sagemaker").list_endpoint_configs()["EndpointConfigs"]) == configs_before


def test_promote_then_rollback_returns_to_the_previous_verified_state(aws, lifecycle):
    lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    promoted = lifecycle.promote()
    assert {k: (v.version, v.weight) for k, v in promoted.variants.items()} == {
        "ModelA": ("v2", 1.0),
        "ModelB": ("v2", 0.0),
    }
    assert _params(aws)["active-version"] == "v2"
    before, after = lifecycle.rollback()
    assert before == promoted
    assert {k: (v.version, v.weight) for k, v in after.variants.items()} == {
        "ModelA": ("v1", 0.8),
        "ModelB": ("v2", 0.2),
    }
    _, _, weights, versions = _endpoint(aws)
    assert versions == {"ModelA": "v1", "ModelB": "v2"}
    assert weights == {"ModelA": 0.8, "ModelB": 0.2}
    assert _params(aws)["active-version"] == "v1"


def test_a_deployment_sagemaker_rolls_back_is_a_failure_and_changes_no_verified_state(
    aws, lifecycle, emulator
):
    good = lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    emulator.schedule_rollback(
        ENDPOINT, "CloudWatch alarm ModelB-5xx went into ALARM", account_id="123456789012", region="us-east-1"
    )
    with pytest.raises(MlpipeError, match=r"rolled the deployment .* back.*ModelB-5xx") as failed:
        lifecycle.promote()
    assert failed.value.exit_code == 1
    assert lifecycle.verified() == good
    last = lifecycle.last_request()
    assert last is not None
    assert last.status == "failed"
    assert "ModelB-5xx" in last.reason
    _, _, _, versions = _endpoint(aws)
    assert versions == {"ModelA": "v1", "ModelB": "v2"}
    assert lifecycle.release_lock() is False


def test_a_second_deploy_while_one_holds_the_lock_is_refused(aws, lifecycle):
    aws.client("ssm").put_parameter(
        Name=f"{PATH}/deploy-lock",
        Value=json.dumps({"request_id": "other", "actor": "bob", "started_at": "2026-11-24T11:59:00+00:00"}),
        Type="String",
    )
    with pytest.raises(ConflictError, match=r"another deployment holds the lock.*bob"):
        lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    _, _, _, versions = _endpoint(aws)
    assert versions == {"ModelA": "v1", "ModelB": "v1"}
    assert lifecycle.verified() is None
    assert lifecycle.release_lock("not-mine") is False
    assert lifecycle.release_lock() is True  # the operator's forced unlock


def test_unknown_version_changes_nothing(aws, lifecycle):
    with pytest.raises(UnknownVersionError, match="v9 is not registered"):
        lifecycle.deploy("v9", variant="ModelB", weight=0.2)
    with pytest.raises(UnknownVersionError):
        lifecycle.set_desired(DesiredState(champion="v9"))
    ssm = aws.client("ssm")
    assert ssm.get_parameter(Name=f"{PATH}/active-version")["Parameter"]["Value"] == "v1"
    assert (
        "Parameters" not in ssm.get_parameters(Names=[f"{PATH}/traffic"])
        or not ssm.get_parameters(Names=[f"{PATH}/traffic"])["Parameters"]
    )


def test_an_artifact_overwritten_outside_mlpipe_is_not_deployed(aws, lifecycle):
    aws.client("s3").put_object(Bucket=BUCKET, Key="models/v2/model.tar.gz", Body=b"tampered")
    with pytest.raises(ConflictError, match="was overwritten outside mlpipe"):
        lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    assert lifecycle.verified() is None
    last = lifecycle.last_request()
    assert last is not None
    assert last.status == "failed"


def test_missing_endpoint_is_a_missing_stage(aws, lifecycle):
    aws.client("sagemaker").delete_endpoint(EndpointName=ENDPOINT)
    with pytest.raises(MissingStageError, match="deploy the inference stack first"):
        lifecycle.deploy("v2", variant="ModelB", weight=0.2)


def test_an_endpoint_still_updating_after_the_timeout_leaves_verified_state_alone(aws, lifecycle):
    lifecycle.timeout_seconds = 0.0
    with pytest.raises(MlpipeError, match="still Updating after 0s"):
        lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    assert lifecycle.verified() is None


def test_refusals_of_meaningless_requests(lifecycle):
    with pytest.raises(UsageError, match="no challenger to promote"):
        lifecycle.promote()
    with pytest.raises(UsageError, match="no challenger on ModelB"):
        lifecycle.weights(parse_weights(["A=0.5", "B=0.5"]))
    with pytest.raises(UsageError, match="nothing has been verified yet"):
        lifecycle.rollback()
    with pytest.raises(UsageError, match="variant must be ModelA or ModelB"):
        lifecycle.deploy("v2", variant="ModelC", weight=0.5)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["A=0.7", "B=0.2"], r"weights must sum to 1, got 0\.9"),
        (["A=0.5"], "give a weight for both variants"),
        (["C=0.5", "B=0.5"], "must look like A=0.8"),
        (["A=half", "B=0.5"], "is not a number"),
        (["A=1.5", "B=-0.5"], "between 0 and 1"),
        (["A=0.5", "ModelA=0.5"], "given twice"),
    ],
)
def test_invalid_weights_are_refused(pairs, message):
    with pytest.raises(UsageError, match=message):
        parse_weights(pairs)


def test_valid_weights_accept_variant_names_and_letters():
    assert parse_weights(["modela=0.25", "B=0.75"]) == {"ModelA": 0.25, "ModelB": 0.75}


def test_traffic_without_challenger_cannot_send_it_traffic():
    with pytest.raises(ValueError, match="needs a challenger version"):
        Traffic(challenger_weight=0.3)


def test_the_event_driven_path_starts_then_finishes_when_the_endpoint_is_done(aws, lifecycle):
    lifecycle.set_desired(
        DesiredState(champion="v1", traffic=Traffic(challenger="v2", challenger_weight=0.3))
    )
    pending = lifecycle.start()
    assert pending.endpoint_config is not None
    assert not pending.weights_only
    assert lifecycle.pending() == pending, "the lock holds what finish must find"
    last = lifecycle.last_request()
    assert last is not None
    assert last.status == "in-progress"
    assert lifecycle.finish() is None, "first look: the endpoint is still Updating"
    verified = lifecycle.finish()
    assert verified is not None
    assert verified.endpoint_config == pending.endpoint_config
    assert verified.variants["ModelB"].weight == 0.3
    assert lifecycle.pending() is None, "the lock is released"
    with pytest.raises(UsageError, match="no deployment is in progress"):
        lifecycle.finish()


def test_a_deployment_that_outlives_the_wait_can_be_finished_later(aws, lifecycle):
    lifecycle.timeout_seconds = 0.0
    with pytest.raises(MlpipeError, match="mlpipe models finish"):
        lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    assert lifecycle.pending() is not None, "still in progress: the lock stays"
    verified = lifecycle.finish()
    assert verified is not None
    assert verified.variants["ModelB"].version == "v2"
    assert lifecycle.verified() == verified


def test_a_failed_cache_invalidation_is_reported_after_the_verified_state_is_recorded(aws, lifecycle):
    lifecycle.on_verified.append(answer_cache_invalidator(aws.client("dynamodb"), table_name="no-such-table"))
    with pytest.raises(
        MlpipeError, match="verified and recorded, but invalidating the answer cache"
    ) as failed:
        lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    assert "aws dynamodb put-item --table-name no-such-table" in str(failed.value)
    verified = lifecycle.verified()
    assert verified is not None
    assert verified.variants["ModelB"].version == "v2"


def test_setting_the_desired_state_writes_only_what_changes(aws, lifecycle):
    ssm = aws.client("ssm")

    def version(name: str) -> int:
        return int(ssm.get_parameter(Name=f"{PATH}/{name}")["Parameter"]["Version"])

    lifecycle.set_desired(
        DesiredState(champion="v1", traffic=Traffic(challenger="v2", challenger_weight=0.2))
    )
    champion_version, traffic_version = version("active-version"), version("traffic")
    lifecycle.set_desired(
        DesiredState(champion="v1", traffic=Traffic(challenger="v2", challenger_weight=0.4))
    )
    assert version("active-version") == champion_version, "an unchanged champion makes no change event"
    assert version("traffic") == traffic_version + 1


def test_a_weights_update_is_updating_once_then_in_service_with_counts_kept(aws, stage, emulator):
    sagemaker = aws.client("sagemaker")
    before = {
        v["VariantName"]: v for v in sagemaker.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"]
    }
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=ENDPOINT,
        DesiredWeightsAndCapacities=[
            {"VariantName": "ModelA", "DesiredWeight": 0.5},
            {"VariantName": "ModelB", "DesiredWeight": 0.5},
        ],
    )
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "Updating"
    after = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert after["EndpointStatus"] == "InService"
    for variant in after["ProductionVariants"]:
        assert variant["CurrentWeight"] == 0.5
        assert variant["CurrentInstanceCount"] == before[variant["VariantName"]]["CurrentInstanceCount"]


# ----- the rollback grace period (issue 12, section 5) -----
def _configs(aws) -> int:
    return len(aws.client("sagemaker").list_endpoint_configs()["EndpointConfigs"])


def test_promote_keeps_the_champion_at_weight_0_so_a_rollback_in_the_grace_period_is_a_weights_update(
    aws, lifecycle
):
    lifecycle.rollback_grace_seconds = 600
    deployed = lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    configs = _configs(aws)
    promoted = lifecycle.promote()
    assert {k: (v.version, v.weight) for k, v in promoted.variants.items()} == {
        "ModelA": ("v1", 0.0),
        "ModelB": ("v2", 1.0),
    }
    assert promoted.endpoint_config == deployed.endpoint_config, "promotion is a weights update"
    assert promoted.standby_until is not None
    assert _params(aws)["active-version"] == "v2"  # the champion, whichever variant serves it
    assert json.loads(_params(aws)["traffic"])["standby"] == "v1"
    _, after = lifecycle.rollback()
    assert {k: (v.version, v.weight) for k, v in after.variants.items()} == {
        "ModelA": ("v1", 0.8),
        "ModelB": ("v2", 0.2),
    }
    assert after.endpoint_config == deployed.endpoint_config, "rollback in the window: weights only"
    assert _configs(aws) == configs
    assert _params(aws)["active-version"] == "v1"


def test_past_the_grace_period_the_standby_is_retired_and_a_rollback_needs_a_new_config(aws, lifecycle):
    lifecycle.rollback_grace_seconds = 600
    lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    promoted = lifecycle.promote()
    desired = lifecycle.desired()
    assert not lifecycle.standby_expired(desired)
    lifecycle.clock.now += timedelta(seconds=601)
    assert lifecycle.standby_expired(desired)
    pending = lifecycle.start_retirement(desired)
    assert not pending.weights_only
    assert lifecycle.finish() is None, "SageMaker shows Updating first"
    retired = lifecycle.finish()
    assert retired is not None
    assert {k: (v.version, v.weight) for k, v in retired.variants.items()} == {
        "ModelA": ("v2", 1.0),
        "ModelB": ("v2", 0.0),
    }
    assert retired.standby_until is None
    assert "standby" not in json.loads(_params(aws)["traffic"])
    configs = _configs(aws)
    _, after = lifecycle.rollback()  # skips the promotion's standby state: back to before it
    assert {k: (v.version, v.weight) for k, v in after.variants.items()} == {
        "ModelA": ("v1", 0.8),
        "ModelB": ("v2", 0.2),
    }
    assert after.endpoint_config not in {retired.endpoint_config, promoted.endpoint_config}
    assert _configs(aws) == configs + 1


def test_during_the_grace_period_weights_are_refused_and_a_new_challenger_retires_the_standby(aws, lifecycle):
    lifecycle.rollback_grace_seconds = 600
    lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    lifecycle.promote()
    with pytest.raises(UsageError, match="holds the previous champion v1 at weight 0"):
        lifecycle.weights(parse_weights(["A=0.5", "B=0.5"]))
    deployed = lifecycle.deploy("v1", variant="ModelB", weight=0.1)
    assert {k: (v.version, v.weight) for k, v in deployed.variants.items()} == {
        "ModelA": ("v2", 0.9),
        "ModelB": ("v1", 0.1),
    }
    assert deployed.standby_until is None


# ----- the deploy lock (issue 12, section 1) -----
def test_a_held_lock_names_the_request_holding_it_and_when_it_started(aws, lifecycle):
    holder = Lifecycle(**{**lifecycle.__dict__, "actor": "bob"})
    seen: list[str] = []

    def second_request(_seconds: float) -> None:
        """While the first request waits for the endpoint, a second one is tried."""
        if not seen:
            with pytest.raises(ConflictError) as refused:
                lifecycle.weights(parse_weights(["A=0.5", "B=0.5"]))
            seen.append(str(refused.value))

    holder.sleep = second_request
    verified = holder.deploy("v2", variant="ModelB", weight=0.2)
    pending_id = verified.request_id
    assert seen, "the second request ran while the first held the lock"
    assert f"request {pending_id} by bob, started 2026-11-24T12:00" in seen[0]
    assert lifecycle.verified() == verified
    assert json.loads(_params(aws)["traffic"])["challenger_weight"] == 0.2, "the refused one wrote nothing"


def test_an_expired_lock_of_a_crashed_holder_is_taken_over(aws, lifecycle):
    said: list[str] = []
    lifecycle.progress = said.append
    aws.client("ssm").put_parameter(
        Name=f"{PATH}/deploy-lock",
        Value=json.dumps(
            {
                "request_id": "crashed",
                "actor": "bob",
                "started_at": "2026-11-24T10:00:00+00:00",
                "expires_at": "2026-11-24T11:00:00+00:00",
            }
        ),
        Type="String",
    )
    verified = lifecycle.deploy("v2", variant="ModelB", weight=0.2)
    assert verified.variants["ModelB"].version == "v2"
    assert any("taking over the expired lock of request crashed" in line for line in said)
    assert lifecycle.pending() is None
