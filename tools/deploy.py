"""Deploy one stage stack by stack, in the order of the synthesized deployment plan.

GitOps: CI runs this on ``main`` for each environment in turn (``dev``, then ``prod``). It
uses the CDK CLI pinned in package.json (``npx cdk``) against the already synthesized
``cdk.out``, so what is deployed is exactly what passed the gates. A stack that fails stops
the run; CloudFormation rolls that stack back and the stacks after it are not touched.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from tools.deploy_plan import deployment_plan


def commands(cdk_out: Path, stage: str) -> list[list[str]]:
    plan = deployment_plan(cdk_out)
    if stage not in plan:
        raise SystemExit(f"stage {stage!r} is not in {cdk_out}; stages: {', '.join(plan)}")
    return [
        [
            "npx",
            "--no-install",
            "cdk",
            "deploy",
            "--app",
            str(cdk_out),
            "--exclusively",
            "--require-approval=never",
            "--ci",
            stack.display_name,
        ]
        for stack in plan[stage]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("stage")
    parser.add_argument("--cdk-out", type=Path, default=Path("cdk.out"))
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    for command in commands(args.cdk_out, args.stage):
        print("+", " ".join(command), flush=True)
        if not args.dry_run:
            subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
