"""Network ACL of the isolated subnets: only HTTPS to AWS services and its return traffic."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from shared.infra.acknowledge import acknowledge

EPHEMERAL = ec2.AclTraffic.tcp_port_range(1024, 65535)
# Inbound ephemeral range split around 3389 so no rule admits RDP from anywhere (CT.EC2.PR.5);
# Linux (Lambda, Fargate) picks local ports from 32768-60999, so nothing legitimate is lost.
EPHEMERAL_BELOW_RDP = ec2.AclTraffic.tcp_port_range(1024, 3388)
EPHEMERAL_ABOVE_RDP = ec2.AclTraffic.tcp_port_range(3390, 65535)
HTTPS = ec2.AclTraffic.tcp_port(443)


class IsolatedSubnetAcl(Construct):
    """Stateless second line behind the security groups.

    - egress 443 anywhere: the only routes are local and the S3/DynamoDB gateway endpoints,
      whose public ranges a NACL cannot name by prefix list (AWS documents CIDRs only);
    - ingress ephemeral ports anywhere (except 3389): the return half of those HTTPS connections;
    - ingress 443 from the VPC: compute to the interface endpoints' network interfaces;
    - egress ephemeral ports to the VPC: the endpoints' replies to compute.
    DNS to the Amazon-provided resolver is not subject to network ACLs.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, vpc: ec2.IVpc, subnets: ec2.SubnetSelection, cidr: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.acl = ec2.NetworkAcl(self, "Acl", vpc=vpc, subnet_selection=subnets)
        vpc_cidr = ec2.AclCidr.ipv4(cidr)
        anywhere = ec2.AclCidr.any_ipv4()
        entries = (
            ("HttpsOut", 100, anywhere, HTTPS, ec2.TrafficDirection.EGRESS),
            ("EphemeralOutToVpc", 110, vpc_cidr, EPHEMERAL, ec2.TrafficDirection.EGRESS),
            ("HttpsInFromVpc", 100, vpc_cidr, HTTPS, ec2.TrafficDirection.INGRESS),
            ("EphemeralInLow", 110, anywhere, EPHEMERAL_BELOW_RDP, ec2.TrafficDirection.INGRESS),
            ("EphemeralInHigh", 120, anywhere, EPHEMERAL_ABOVE_RDP, ec2.TrafficDirection.INGRESS),
        )
        for entry_id, rule_number, acl_cidr, traffic, direction in entries:
            self.acl.add_entry(
                entry_id,
                cidr=acl_cidr,
                rule_number=rule_number,
                traffic=traffic,
                direction=direction,
                rule_action=ec2.Action.ALLOW,
            )
        acknowledge(
            self,
            nag=["AwsSolutions-VPC3"],
            reason="The network ACL is deliberate: the requirements ask for NACLs as a stateless second "
            "layer behind the security groups, and its five entries are the reviewed minimum for HTTPS "
            "to the VPC endpoints and its return traffic.",
        )
