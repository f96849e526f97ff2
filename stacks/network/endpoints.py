"""VPC endpoints and the two security groups around them.

Compute (Lambdas, Fargate jobs) runs in the ``compute`` security group; interface endpoints sit in
the ``endpoint`` security group, which admits HTTPS from the compute group only. Compute may
send HTTPS only to the endpoints and to the S3/DynamoDB prefix lists of the gateway endpoints.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from shared.config import EnvironmentConfig

HTTPS = ec2.Port.tcp(443)


def _in_azs(vpc: ec2.IVpc, subnets: ec2.SubnetSelection, count: int | None) -> ec2.SubnetSelection:
    """``subnets`` in the VPC's first ``count`` Availability Zones (all of them when None)."""
    if count is None:
        return subnets
    return ec2.SubnetSelection(
        subnet_group_name=subnets.subnet_group_name, availability_zones=list(vpc.availability_zones[:count])
    )


class ServiceEndpoints(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
    ) -> None:
        super().__init__(scope, construct_id)
        self.compute_security_group = ec2.SecurityGroup(
            self,
            "ComputeSecurityGroup",
            vpc=vpc,
            security_group_name=config.resource_name("compute-sg"),
            description="Lambdas and Batch jobs of ml-pipeline: HTTPS to VPC endpoints only",
            allow_all_outbound=False,
        )
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=vpc,
            security_group_name=config.resource_name("endpoint-sg"),
            description="Interface VPC endpoints of ml-pipeline: HTTPS from the compute security group",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(
            self.compute_security_group, HTTPS, "HTTPS from ml-pipeline compute"
        )
        self.compute_security_group.add_egress_rule(
            self.endpoint_security_group, HTTPS, "HTTPS to the interface VPC endpoints"
        )

        # Gateway endpoints are free and keep S3 (model artifacts, batch data, ECR layers) and
        # DynamoDB (predictions) traffic on the AWS network.
        self.gateway_endpoints: dict[str, ec2.GatewayVpcEndpoint] = {}
        prefix_lists = config.network.gateway_prefix_lists
        for name, service, prefix_list_id in (
            ("S3", ec2.GatewayVpcEndpointAwsService.S3, prefix_lists.s3),
            ("DynamoDB", ec2.GatewayVpcEndpointAwsService.DYNAMODB, prefix_lists.dynamodb),
        ):
            self.gateway_endpoints[name] = vpc.add_gateway_endpoint(
                f"{name}Gateway", service=service, subnets=[subnets]
            )
            self.compute_security_group.add_egress_rule(
                ec2.Peer.prefix_list(prefix_list_id), HTTPS, f"HTTPS to {name} through its gateway endpoint"
            )

        # Interface endpoints: exactly the set in config, each entry naming its caller.
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        for endpoint in config.network.interface_endpoints:
            logical_id = "".join(part.capitalize() for part in endpoint.service.replace("-", ".").split("."))
            self.interface_endpoints[endpoint.service] = vpc.add_interface_endpoint(
                f"{logical_id}Endpoint",
                service=ec2.InterfaceVpcEndpointAwsService(endpoint.service),
                private_dns_enabled=True,
                subnets=_in_azs(vpc, subnets, endpoint.availability_zones),
                security_groups=[self.endpoint_security_group],
                open=False,  # the ingress rule above is the only way in
            )
