"""Network layer: VPC, endpoints, security groups, NACL, flow logs."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from shared.config import EnvironmentConfig
from shared.infra.acknowledge import acknowledge
from shared.outputs import NetworkOutputs
from stacks.network.endpoints import ServiceEndpoints
from stacks.network.nacl import IsolatedSubnetAcl
from stacks.network.vpc import PrivateNetwork


class NetworkStack(cdk.Stack):
    """Exposes ``vpc``, ``subnets`` and ``compute_security_group`` for the layers above."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        network = PrivateNetwork(self, "Network", config=config)
        self.vpc: ec2.IVpc = network.vpc
        self.subnets = ec2.SubnetSelection(subnet_group_name=PrivateNetwork.SUBNET_GROUP)
        endpoints = ServiceEndpoints(self, "Endpoints", config=config, vpc=self.vpc, subnets=self.subnets)
        self.compute_security_group = endpoints.compute_security_group
        self.endpoints = endpoints
        IsolatedSubnetAcl(self, "SubnetAcl", vpc=self.vpc, subnets=self.subnets, cidr=config.network.cidr)

        self._acknowledge_default_sg_handler()

        outputs = {
            NetworkOutputs.VPC_ID: self.vpc.vpc_id,
            NetworkOutputs.PRIVATE_SUBNET_IDS: cdk.Fn.join(",", network.subnets.subnet_ids),
            NetworkOutputs.COMPUTE_SECURITY_GROUP_ID: self.compute_security_group.security_group_id,
            NetworkOutputs.ENDPOINT_SECURITY_GROUP_ID: endpoints.endpoint_security_group.security_group_id,
            NetworkOutputs.FLOW_LOG_GROUP_NAME: network.flow_log_group.log_group_name,
        }
        for key, value in outputs.items():
            cdk.CfnOutput(self, key, value=value)

    def _acknowledge_default_sg_handler(self) -> None:
        """The CDK-provided Lambda that strips the default security group's rules at deploy time."""
        provider = self.node.try_find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
        handler = provider.node.try_find_child("Handler") if provider is not None else None
        if handler is None:
            raise LookupError("the VPC's restrict-default-security-group provider was not found")
        acknowledge(
            handler,
            guard=["lambda_inside_vpc_check"],
            reason="CDK's custom resource that removes the default security group's rules runs once per "
            "deployment and calls only the EC2 API; inside this VPC it would need an ec2 interface "
            "endpoint that nothing else uses.",
        )
