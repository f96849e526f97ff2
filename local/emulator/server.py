"""moto in server mode with the project's emulator extensions installed: the local stage's AWS account.

    python -m local.emulator.server -H 127.0.0.1 -p 5055

Takes moto_server's arguments. Before serving it adds the operations moto lacks (listed on start,
so an emulator gap is visible, not silent). Bind to 127.0.0.1: the emulated account has no auth.
"""

from __future__ import annotations

import sys

from moto import server as moto_server

from local.emulator import (
    apigateway,
    cfn_properties,
    cloudwatch,
    dispatch,
    dynamodb,
    events,
    glue,
    sagemaker,
    sagemaker_training,
    stepfunctions,
)


def install_all() -> tuple[str, ...]:
    return (
        *sagemaker.install(),
        *apigateway.install(),
        *cfn_properties.install(),
        *stepfunctions.install(),
        *sagemaker_training.install(),
        *dispatch.install(),
        *dynamodb.install(),
        *events.install(),
        *glue.install(),
        *cloudwatch.install(),
    )


def main(argv: list[str] | None = None) -> None:
    for gap in install_all():
        print(f"emulator gap patched: {gap}", flush=True)
    moto_server.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
