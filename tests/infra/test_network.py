"""Network stack: isolated subnets, endpoints, security groups, NACL, flow logs."""

from __future__ import annotations

import pytest

from shared.config import ENVIRONMENTS
from shared.outputs import NetworkOutputs
from tests.infra.conftest import resources_of

ENVS = sorted(ENVIRONMENTS)


@pytest.mark.parametrize("env", ENVS)
def test_only_isolated_subnets_in_two_azs_and_no_internet_path(env, template_json):
    t = template_json(env, "network")
    subnets = resources_of(t, "AWS::EC2::Subnet")
    assert len(subnets) == ENVIRONMENTS[env].network.max_azs
    assert len({s["Properties"]["AvailabilityZone"] for s in subnets.values()}) >= 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets.values())
    for forbidden in ("AWS::EC2::NatGateway", "AWS::EC2::InternetGateway", "AWS::EC2::EIP"):
        assert not resources_of(t, forbidden), f"{forbidden} in {env}"
    routes = resources_of(t, "AWS::EC2::Route")
    assert not routes, "isolated subnets have no routes besides local and gateway endpoints"


@pytest.mark.parametrize("env", ENVS)
def test_gateway_endpoints_for_s3_and_dynamodb(env, template_json):
    t = template_json(env, "network")
    endpoints = resources_of(t, "AWS::EC2::VPCEndpoint").values()
    gateway = [e for e in endpoints if e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"]
    names = sorted(str(e["Properties"]["ServiceName"]) for e in gateway)
    assert len(gateway) == 2
    assert any("s3" in n for n in names)
    assert any("dynamodb" in n for n in names)
    for e in gateway:
        assert len(e["Properties"]["RouteTableIds"]) == ENVIRONMENTS[env].network.max_azs


@pytest.mark.parametrize("env", ENVS)
def test_interface_endpoints_are_exactly_the_configured_set_with_private_dns(env, template_json):
    t = template_json(env, "network")
    interface = [
        e["Properties"]
        for e in resources_of(t, "AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    ]
    configured = {
        f"com.amazonaws.us-east-1.{e.service}": e for e in ENVIRONMENTS[env].network.interface_endpoints
    }
    assert {p["ServiceName"] for p in interface} == set(configured)
    endpoint_sg = [k for k in resources_of(t, "AWS::EC2::SecurityGroup") if "EndpointSecurityGroup" in k]
    assert len(endpoint_sg) == 1
    for p in interface:
        assert p["PrivateDnsEnabled"] is True
        assert p["SecurityGroupIds"] == [{"Fn::GetAtt": [endpoint_sg[0], "GroupId"]}]
        # every AZ unless the endpoint names fewer (batch-only callers, issue 19)
        azs = configured[p["ServiceName"]].availability_zones or ENVIRONMENTS[env].network.max_azs
        assert len(p["SubnetIds"]) == azs
        subnet_ids = [s["Ref"] for s in p["SubnetIds"]]
        assert len(set(subnet_ids)) == azs


def test_endpoint_security_group_admits_https_from_compute_only(template_json):
    t = template_json("prod", "network")
    sgs = resources_of(t, "AWS::EC2::SecurityGroup")
    endpoint_sg = next(k for k in sgs if "EndpointSecurityGroup" in k)
    compute_sg = next(k for k in sgs if "ComputeSecurityGroup" in k)
    assert "SecurityGroupIngress" not in sgs[endpoint_sg]["Properties"]
    ingress = list(resources_of(t, "AWS::EC2::SecurityGroupIngress").values())
    assert len(ingress) == 1
    rule = ingress[0]["Properties"]
    assert rule["GroupId"] == {"Fn::GetAtt": [endpoint_sg, "GroupId"]}
    assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [compute_sg, "GroupId"]}
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)


def test_compute_egress_is_https_to_endpoints_and_gateway_prefix_lists_only(template_json):
    t = template_json("prod", "network")
    sgs = resources_of(t, "AWS::EC2::SecurityGroup")
    compute_sg = next(k for k in sgs if "ComputeSecurityGroup" in k)
    # allow_all_outbound=False and explicit rules: no inline (default allow-all) egress
    assert "SecurityGroupEgress" not in sgs[compute_sg]["Properties"]
    egress = [
        e["Properties"]
        for e in resources_of(t, "AWS::EC2::SecurityGroupEgress").values()
        if e["Properties"]["GroupId"] == {"Fn::GetAtt": [compute_sg, "GroupId"]}
    ]
    assert all((e["IpProtocol"], e["FromPort"], e["ToPort"]) == ("tcp", 443, 443) for e in egress)
    prefix_lists = sorted(e["DestinationPrefixListId"] for e in egress if "DestinationPrefixListId" in e)
    lists = ENVIRONMENTS["prod"].network.gateway_prefix_lists
    assert prefix_lists == sorted([lists.s3, lists.dynamodb])
    assert sum("DestinationSecurityGroupId" in e for e in egress) == 1
    assert not any("CidrIp" in e for e in egress)


def test_nacl_allows_only_https_and_return_traffic_and_never_rdp_or_ssh(template_json):
    t = template_json("prod", "network")
    entries = [e["Properties"] for e in resources_of(t, "AWS::EC2::NetworkAclEntry").values()]
    assert len(entries) == 5
    assert all(e["RuleAction"] == "allow" and e["Protocol"] == 6 for e in entries)
    for e in entries:
        low, high = e["PortRange"]["From"], e["PortRange"]["To"]
        if not e.get("Egress") and e["CidrBlock"] == "0.0.0.0/0":
            assert not low <= 3389 <= high
            assert not low <= 22 <= high
    inbound_https = [e for e in entries if not e.get("Egress") and e["PortRange"] == {"From": 443, "To": 443}]
    assert [e["CidrBlock"] for e in inbound_https] == [ENVIRONMENTS["prod"].network.cidr]
    associations = resources_of(t, "AWS::EC2::SubnetNetworkAclAssociation")
    assert len(associations) == ENVIRONMENTS["prod"].network.max_azs


@pytest.mark.parametrize("env", ENVS)
def test_flow_logs_go_to_a_kms_encrypted_log_group_with_retention(env, template_json):
    t = template_json(env, "network")
    config = ENVIRONMENTS[env]
    (flow_log,) = resources_of(t, "AWS::EC2::FlowLog").values()
    assert flow_log["Properties"]["TrafficType"] == "ALL"
    assert flow_log["Properties"]["LogDestinationType"] == "cloud-watch-logs"
    (group_id, group), *_ = resources_of(t, "AWS::Logs::LogGroup").items()
    assert group["Properties"]["LogGroupName"] == f"/ml-pipeline/{env}/vpc-flow-logs"
    assert group["Properties"]["RetentionInDays"] == config.network.flow_log_retention_days
    (key_id,) = resources_of(t, "AWS::KMS::Key")
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert flow_log["Properties"]["LogGroupName"] == {"Ref": group_id}
    expected_deletion = "Retain" if config.is_production else "Delete"
    assert group["DeletionPolicy"] == expected_deletion


def test_flow_log_key_policy_admits_logs_for_the_flow_log_group_only(template_json):
    t = template_json("prod", "network")
    (key,) = resources_of(t, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    logs = [s for s in statements if s.get("Principal", {}).get("Service") == "logs.us-east-1.amazonaws.com"]
    assert len(logs) == 1
    assert logs[0]["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": [
                "arn:aws:logs:us-east-1:222222222222:log-group:/ml-pipeline/prod/vpc-flow-logs"
            ]
        }
    }


def test_flow_log_role_trusts_flow_logs_of_this_account_only(template_json):
    t = template_json("prod", "network")
    roles = resources_of(t, "AWS::IAM::Role")
    role = next(r for k, r in roles.items() if "FlowLogRole" in k)
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "222222222222"},
        "ArnLike": {"aws:SourceArn": "arn:aws:ec2:us-east-1:222222222222:vpc-flow-log/*"},
    }


def test_default_security_group_is_restricted(template):
    template("prod", "network").resource_count_is("Custom::VpcRestrictDefaultSG", 1)


@pytest.mark.parametrize("env", ENVS)
def test_outputs_for_later_layers(env, template_json):
    outputs = template_json(env, "network")["Outputs"]
    for key in (
        NetworkOutputs.VPC_ID,
        NetworkOutputs.PRIVATE_SUBNET_IDS,
        NetworkOutputs.COMPUTE_SECURITY_GROUP_ID,
        NetworkOutputs.ENDPOINT_SECURITY_GROUP_ID,
        NetworkOutputs.FLOW_LOG_GROUP_NAME,
    ):
        assert key in outputs, key


def test_acknowledgements_and_their_reasons_are_written_into_the_template(template_json):
    resources = template_json("prod", "network")["Resources"]
    acl = next(r for k, r in resources.items() if r["Type"] == "AWS::EC2::NetworkAcl")
    (ack,) = [a for a in acl["Metadata"]["cdk_nag"]["rules_to_suppress"] if a["id"] == "AwsSolutions-VPC3"]
    assert "stateless second layer" in ack["reason"]
    handler = next(
        k for k in resources if k.startswith("CustomVpcRestrictDefaultSGCustomResourceProviderHandler")
    )
    guard = resources[handler]["Metadata"]["guard"]
    assert guard["SuppressedRules"] == ["lambda_inside_vpc_check"]
    assert "EC2 API" in guard["Reasons"]["lambda_inside_vpc_check"]
