"""The local stage's deployment: the real synthesized templates into the emulated account, gaps patched."""

from __future__ import annotations

import pytest

from local.deploy import StageDeployer
from local.emulator import cfn_properties
from shared.config import get_config
from shared.outputs import DataOutputs, InferenceOutputs, NetworkOutputs
from tools.synth import synthesize


@pytest.fixture(scope="module")
def local_assembly(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "cdk.out"
    synthesize(out, ["local"])
    return out


def test_the_local_stage_deploys_in_plan_order_with_every_gap_reported(aws, local_assembly):
    cfn_properties.install()
    deployment = StageDeployer(aws, poll_seconds=0.0).deploy(local_assembly, "local")
    config = get_config("local")
    network = deployment.outputs[config.stack_name("network")]
    data = deployment.outputs[config.stack_name("data")]
    assert network[NetworkOutputs.VPC_ID].startswith("vpc-")
    assert len(network[NetworkOutputs.PRIVATE_SUBNET_IDS].split(",")) == 2
    table = data[DataOutputs.PREDICTIONS_TABLE_NAME]
    assert table == "ml-pipeline-predictions-local-us-east-1"

    ttl = aws.client("dynamodb").describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expirationTime"}
    bucket = data[DataOutputs.MODEL_BUCKET_NAME]
    assert aws.client("s3").get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    default_sg = aws.client("ec2").describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [network[NetworkOutputs.VPC_ID]]},
            {"Name": "group-name", "Values": ["default"]},
        ]
    )["SecurityGroups"][0]
    assert default_sg["IpPermissions"] == []
    assert default_sg["IpPermissionsEgress"] == []
    assert (
        aws.client("ssm").get_parameter(Name=config.model_parameters.active_version)["Parameter"]["Value"]
        == "v1"
    )

    patched = "\n".join(deployment.patches)
    assert "Custom::VpcRestrictDefaultSG" in patched
    assert "TTL on expirationTime" in patched
    assert patched.count("versioning Enabled") == 4


def test_the_inference_stack_deploys_with_its_names_stage_and_api_key(aws, local_assembly):
    cfn_properties.install()
    deployment = StageDeployer(aws, poll_seconds=0.0).deploy(local_assembly, "local")
    config = get_config("local")
    inference = deployment.outputs[config.stack_name("inference")]
    endpoint = aws.client("sagemaker").describe_endpoint(
        EndpointName=inference[InferenceOutputs.ENDPOINT_NAME]
    )
    assert endpoint["EndpointName"] == config.resource_name("endpoint")
    assert sorted(v["VariantName"] for v in endpoint["ProductionVariants"]) == ["ModelA", "ModelB"]
    apigateway = aws.client("apigateway")
    api_id = inference[InferenceOutputs.REST_API_ID]
    (stage,) = apigateway.get_stages(restApiId=api_id)["item"]
    assert stage["stageName"] == inference[InferenceOutputs.API_STAGE_NAME] == "v1"
    (key,) = apigateway.get_api_keys(includeValues=True)["items"]
    assert key["enabled"]
    assert key["value"]
    (plan,) = apigateway.get_usage_plans()["items"]
    assert plan["apiStages"] == [{"apiId": api_id, "stage": "v1"}]
    assert [k["id"] for k in apigateway.get_usage_plan_keys(usagePlanId=plan["id"])["items"]] == [key["id"]]
    patched = "\n".join(deployment.patches)
    assert f"stage v1 of API {api_id} via API Gateway" in patched
    assert "AWS::ApiGateway::Stage not created" not in patched
    assert "AWS::ApiGateway::Method not created" in patched  # reported: the local API reads the template
