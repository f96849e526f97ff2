"""Run a load shape against a stage and gate on its SLOs (``nox -s load -- --shape steady --seconds 60``).

Target: the local stage (started here, in this process, and stopped after) or a deployed stage
(``--stage dev``: URL and key from its stack outputs). locust runs headless in its own process;
its CSV and HTML reports go to ``reports/load/{shape}``. The SLO gates come from the stage's
config (``slo``); the exit code is locust's (1 on a breach, with the SLO named).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings
from pathlib import Path

import boto3
import httpx

from shared.config import get_config
from shared.outputs import InferenceOutputs

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def warm_up(host: str, key: str) -> None:
    """One request per path first: the handlers' cold start (measured by ``nox -s bench``) is not load.

    In a deployed stage the functions are warm after their first minutes of traffic; locally the
    first request also imports the handlers into the stage's process.
    """
    from local.smoke import sample_rows  # noqa: PLC0415

    body = {"instances": sample_rows(1)}
    with httpx.Client(base_url=host, headers={"x-api-key": key}, timeout=30) as api:
        api.post("/predict", json=body).raise_for_status()
        api.post("/predict/stream", json=body).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shape", default="steady", choices=["steady", "diurnal", "spike", "ramp"])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the run")
    parser.add_argument("--stage", default="local", help="local (started here) or a deployed stage")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--max-rps", type=float, default=150.0, help="the ramp's last step")
    parser.add_argument("--reports", type=Path, default=ROOT / "reports" / "load")
    args = parser.parse_args(argv)
    config = get_config(args.stage)
    stage = None
    if args.stage == "local":
        from local.stage import LocalStage  # noqa: PLC0415 - only the local target needs it

        warnings.filterwarnings("ignore", module="moto")
        stage = LocalStage(log=lambda _line: None)
        info = stage.start()
        host, key = info.api_url, info.api_key
        print(f"local stage ready in {info.started_in_seconds} s: {host}", flush=True)
        warm_up(host, key)
    else:
        session = boto3.session.Session(region_name=config.region)
        stack = session.client("cloudformation").describe_stacks(StackName=config.stack_name("inference"))
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Stacks"][0].get("Outputs", [])}
        host = outputs[InferenceOutputs.API_URL].rstrip("/")
        key = session.client("apigateway").get_api_key(
            apiKey=outputs[InferenceOutputs.API_KEY_ID], includeValue=True
        )["value"]
    try:
        out = args.reports / args.shape
        out.parent.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            "LOAD_SHAPE": args.shape,
            "LOAD_SECONDS": str(args.seconds),
            "LOAD_USERS": str(args.users),
            "LOAD_MAX_RPS": str(args.max_rps),
            "LOAD_API_KEY": key,
            "LOAD_P99_MS": str(config.slo.p99_latency_ms),
            "LOAD_MAX_ERROR_RATIO": str(config.slo.max_error_ratio),
        }
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--host",
                host,
                "--csv",
                str(out),
                "--html",
                f"{out}.html",
                "--only-summary",
            ],
            env=environment,
            cwd=ROOT,
            check=False,
        )
        return result.returncode
    finally:
        if stage is not None:
            stage.stop()


if __name__ == "__main__":
    sys.exit(main())
