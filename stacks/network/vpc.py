"""The VPC: isolated private subnets in two or more AZs, no NAT, flow logs to an encrypted group."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.keys import customer_managed_key
from shared.infra.logs import EncryptedLogGroup


class PrivateNetwork(Construct):
    """VPC with only ``PRIVATE_ISOLATED`` subnets: nothing routes to the internet.

    AWS services are reached through VPC endpoints (see ``endpoints.py``). The default
    security group is stripped of its rules (``restrict_default_security_group``), so a
    resource created without a security group gets no network access.
    """

    SUBNET_GROUP = "private"

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        net = config.network
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            vpc_name=config.resource_name("vpc"),
            ip_addresses=ec2.IpAddresses.cidr(net.cidr),
            max_azs=net.max_azs,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name=self.SUBNET_GROUP,
                    subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                    cidr_mask=net.subnet_cidr_mask,
                )
            ],
            enable_dns_hostnames=True,  # required for interface endpoints' private DNS
            enable_dns_support=True,
            restrict_default_security_group=True,
        )
        self.subnets = self.vpc.select_subnets(subnet_group_name=self.SUBNET_GROUP)

        # The network is the first layer, so its flow logs get their own key rather than
        # waiting for the data layer's; a key per layer also keeps each key policy small.
        self.flow_log_key = customer_managed_key(
            self,
            "FlowLogKey",
            config=config,
            purpose="flow-logs",
            description=f"Encrypts the VPC flow logs of ml-pipeline {config.name}",
        )
        self.flow_log_group = EncryptedLogGroup(
            self,
            "FlowLogs",
            config=config,
            log_group_name=f"{config.log_group_prefix}/vpc-flow-logs",
            key=self.flow_log_key,
            retention_days=net.flow_log_retention_days,
        ).log_group
        flow_log_role = iam.Role(
            self,
            "FlowLogRole",
            assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com").with_conditions(
                {
                    "StringEquals": {"aws:SourceAccount": config.account},
                    "ArnLike": {
                        "aws:SourceArn": cdk.Stack.of(self).format_arn(
                            service="ec2", resource="vpc-flow-log", resource_name="*"
                        )
                    },
                }
            ),
            description="VPC flow logs delivery into the flow log group",
        )
        self.flow_log = self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group, flow_log_role),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
