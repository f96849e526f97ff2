"""Map the config's removal policy onto CDK's."""

from __future__ import annotations

import aws_cdk as cdk

from shared.config import RemovalPolicy


def to_cdk(policy: RemovalPolicy) -> cdk.RemovalPolicy:
    return {
        RemovalPolicy.RETAIN: cdk.RemovalPolicy.RETAIN,
        RemovalPolicy.DESTROY: cdk.RemovalPolicy.DESTROY,
    }[policy]
