"""IAM for a service that places network interfaces in the project's VPC (Lambda, SageMaker)."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam


def allow_vpc_interfaces(
    role: iam.IRole,
    *,
    vpc: ec2.IVpc,
    security_groups: Sequence[ec2.ISecurityGroup],
    manage: Sequence[str],
    describe: Sequence[str],
) -> None:
    """Let ``role`` manage interfaces in ``vpc``'s isolated subnets and ``security_groups``.

    ``manage`` (create/delete/assign...) is scoped to this account's and region's network
    interfaces (their ids are chosen at run time), the subnets and the security groups.
    ``describe`` gets Resource "*": EC2 Describe* calls have no resource-level permissions.
    """
    stack = cdk.Stack.of(role)
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=list(manage),
            resources=[
                stack.format_arn(service="ec2", resource="network-interface", resource_name="*"),
                *(
                    stack.format_arn(service="ec2", resource="subnet", resource_name=subnet.subnet_id)
                    for subnet in vpc.isolated_subnets
                ),
                *(
                    stack.format_arn(
                        service="ec2", resource="security-group", resource_name=group.security_group_id
                    )
                    for group in security_groups
                ),
            ],
        )
    )
    # EC2 Describe* calls have no resource-level permissions: Resource "*" (acknowledged by callers)
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(describe), resources=["*"]))
