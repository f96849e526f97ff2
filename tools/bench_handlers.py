"""Benchmark: the inference handlers' cold init and warm per-request overhead, written as JSON + Markdown.

Figures are written, never asserted; the report compares them with the targets of issue 3:

- **cold init**: wall time of importing a handler module in a fresh interpreter with the
  environment Lambda gives the function (X-Ray tracing on, as deployed), median of ``--runs``;
  target <= 300 ms. Measured with this virtualenv's bytecode cache, and once more with no
  bytecode cache at all (``-X pycache_prefix`` pointing at an empty directory): a Lambda layer
  installed without ``__pycache__`` compiles every module it imports on each cold start (the
  second figure is an upper bound: the standard library is compiled too, which Lambda's runtime
  ships compiled);
- **import breakdown**: the marginal import time of the main dependencies, in import order;
- **warm overhead**: the API handler's time per ``POST /predict`` (one row, 30 features) with
  in-process, zero-latency fakes for SSM, S3, the SageMaker runtime and DynamoDB, so everything
  but AWS calls and the model: parsing, validation, Powertools logging/tracing/metrics (EMF
  written to /dev/null), the record build; p50 and p99 of ``--requests`` after ``--warmup``;
  target <= 2 ms for both. Run in a fresh interpreter with the Lambda environment too.

``python -m tools.bench_handlers reports/bench/handlers.json`` writes the JSON and a ``.md`` table
beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

from tools.bench_report import measurement_context, write_figures

ROOT = Path(__file__).resolve().parent.parent
HANDLERS = {
    "api": "stacks.inference.runtime.api.handler",
    "stream": "stacks.inference.runtime.stream.handler",
}
BREAKDOWN = (
    "pydantic",
    "boto3",
    "aws_xray_sdk.core",
    "aws_lambda_powertools.event_handler",
    "stacks.inference.runtime.api.service",
    "stacks.inference.runtime.api.handler",
)
TARGETS = {"cold_init_ms": 300.0, "warm_overhead_us": 2000.0}
FEATURES = 30

# What the Lambda runtime and the inference stack put in the function's environment (the
# credentials are dummy values: nothing here calls AWS)
LAMBDA_ENVIRONMENT = {
    "AWS_LAMBDA_FUNCTION_NAME": "ml-pipeline-api-bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "LAMBDA_TASK_ROOT": str(ROOT),
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
    "POWERTOOLS_METRICS_NAMESPACE": "MlPipeline",
    "ENDPOINT_NAME": "ml-pipeline-endpoint-bench",
    "MODEL_BUCKET": "ml-pipeline-models-bench",
    "MODEL_PARAMETERS_PATH": "/ml-pipeline/bench/models",
    "PREDICTIONS_TABLE": "ml-pipeline-predictions-bench",
    "STREAM_NAME": "ml-pipeline-predictions-bench",
    "PREDICTION_TTL_DAYS": "30",
}


# ----- measurements in fresh interpreters -----


def _run_child(code: str, *, bytecode: bool = True, sampled: bool = False) -> str:
    """Run ``code`` in a fresh interpreter with the Lambda environment; its last stdout line."""
    env = {"PATH": os.environ.get("PATH", ""), **LAMBDA_ENVIRONMENT}
    if sampled:
        env["_X_AMZN_TRACE_ID"] = env["_X_AMZN_TRACE_ID"].replace("Sampled=0", "Sampled=1")
    with tempfile.TemporaryDirectory() as empty_cache:
        args = [sys.executable]
        if not bytecode:
            args += ["-X", f"pycache_prefix={empty_cache}"]
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        result = subprocess.run(
            [*args, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def _import_ms(modules: tuple[str, ...]) -> str:
    return (
        "import importlib, json, time\n"
        "figures = {}\n"
        f"for name in {list(modules)!r}:\n"
        "    started = time.perf_counter()\n"
        "    importlib.import_module(name)\n"
        "    figures[name] = (time.perf_counter() - started) * 1000\n"
        "print(json.dumps(figures))\n"
    )


def cold_init_ms(module: str, runs: int, *, bytecode: bool = True) -> dict[str, Any]:
    """Median and runs of the import time of ``module`` in a fresh interpreter (one unmeasured run first)."""
    code = _import_ms((module,))
    if bytecode:
        _run_child(code)  # writes any bytecode this virtualenv lacks, so every measured run finds it
    samples = [json.loads(_run_child(code, bytecode=bytecode))[module] for _ in range(runs)]
    return {"median": round(statistics.median(samples), 1), "runs": [round(s, 1) for s in samples]}


def import_breakdown_ms(runs: int) -> dict[str, float]:
    """Median marginal import time of each of ``BREAKDOWN``, imported in that order."""
    samples = [json.loads(_run_child(_import_ms(BREAKDOWN))) for _ in range(runs)]
    return {name: round(statistics.median(s[name] for s in samples), 1) for name in BREAKDOWN}


def warm_overhead_us(requests: int, warmup: int, *, sampled: bool = False) -> dict[str, Any]:
    """p50/p99 of the API handler's time per request (``warm_samples`` in a fresh interpreter).

    ``sampled``: whether X-Ray samples the requests (then the SDK sends each trace's subsegments
    to the daemon's UDP port, which nothing reads here, as in Lambda); under load most are not.
    """
    code = (
        "import json\n"
        "from tools.bench_handlers import warm_samples\n"
        f"print(json.dumps(warm_samples({requests}, {warmup})))\n"
    )
    line = _run_child(code, sampled=sampled)
    samples: list[float] = json.loads(line)
    centiles = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "requests": requests,
        "warmup": warmup,
        "rows_per_request": 1,
        "features_per_row": FEATURES,
        "p50": round(statistics.median(samples), 1),
        "p99": round(centiles[98], 1),
        "mean": round(statistics.fmean(samples), 1),
    }


# ----- the warm loop (runs in the child) -----


class _FakeStore:
    """SSM, S3, Kinesis and the DynamoDB table and client in one zero-latency object."""

    name = LAMBDA_ENVIRONMENT["PREDICTIONS_TABLE"]

    def __init__(self, schema_json: bytes) -> None:
        self.schema_json = schema_json
        self.meta = SimpleNamespace(client=self)
        self.writes = 0

    def get_parameter(self, **_: Any) -> dict[str, Any]:
        return {"Parameter": {"Value": "v1"}}

    def get_object(self, **_: Any) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.schema_json)}

    def transact_write_items(self, **_: Any) -> dict[str, Any]:
        self.writes += 1
        return {}

    def put_item(self, **_: Any) -> dict[str, Any]:  # one-row requests
        self.writes += 1
        return {}

    def query(self, **_: Any) -> dict[str, Any]:
        return {"Items": []}

    def put_record(self, **_: Any) -> dict[str, Any]:
        return {"SequenceNumber": "1", "ShardId": "shardId-000000000000"}


class _FakeEndpoint:
    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def invoke_endpoint(self, **_: Any) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.answer), "InvokedProductionVariant": "ModelA"}


class _Context:
    function_name = LAMBDA_ENVIRONMENT["AWS_LAMBDA_FUNCTION_NAME"]
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    aws_request_id = "00000000-0000-0000-0000-000000000000"


def _predict_event(body: str) -> dict[str, Any]:
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "requestContext": {"requestId": "bench", "stage": "bench", "httpMethod": "POST", "path": "/predict"},
        "body": body,
        "isBase64Encoded": False,
    }


def warm_samples(requests: int, warmup: int) -> list[float]:
    """Microseconds per ``POST /predict`` through the API handler, the service on zero-latency fakes."""
    from model.schema import build_schema  # noqa: PLC0415 - imported where measured, not by the parent
    from stacks.inference.runtime.api import handler as api  # noqa: PLC0415
    from stacks.inference.runtime.api import service  # noqa: PLC0415

    names = [f"feature_{index:02d}" for index in range(FEATURES)]
    schema = build_schema(names, [[0.0] * FEATURES, [100.0] * FEATURES])
    store = _FakeStore(schema.to_json().encode())
    answer = json.dumps({"predictions": [{"label": 1, "probability": 0.93}], "model_version": "v1"})
    built = service.PredictionService(
        service.ApiSettings.model_validate(LAMBDA_ENVIRONMENT),
        ssm=store,
        s3=store,
        runtime=_FakeEndpoint(answer.encode()),
        table=store,
        kinesis=store,
    )
    event = _predict_event(json.dumps({"instances": [{name: 50.0 + i / 10 for i, name in enumerate(names)}]}))
    context = _Context()
    samples: list[float] = []

    def current() -> service.PredictionService:
        return built

    with (
        mock.patch.object(service, "current", current),
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
    ):
        for _ in range(warmup):
            api.handler(event, context)
        for _ in range(requests):
            started = time.perf_counter_ns()
            response = api.handler(event, context)
            samples.append((time.perf_counter_ns() - started) / 1000)
            if response["statusCode"] != 200:
                raise RuntimeError(f"the benchmark request failed: {response['body']}")
    if store.writes != warmup + requests:
        raise RuntimeError(f"expected {warmup + requests} writes, the fake saw {store.writes}")
    return samples


# ----- the report -----


def measure(runs: int = 5, requests: int = 2000, warmup: int = 200) -> dict[str, Any]:
    return {
        **measurement_context(),
        "cold_init_ms": {name: cold_init_ms(module, runs) for name, module in HANDLERS.items()},
        "cold_init_without_bytecode_ms": {
            name: cold_init_ms(module, runs, bytecode=False) for name, module in HANDLERS.items()
        },
        "import_breakdown_ms": import_breakdown_ms(runs),
        "warm_api_overhead_us": {
            "trace_not_sampled": warm_overhead_us(requests, warmup),
            "trace_sampled": warm_overhead_us(requests, warmup, sampled=True),
        },
        "targets": TARGETS,
    }


def _met(value: float, target: float) -> str:
    return "yes" if value <= target else "no"


def markdown(figures: dict[str, Any]) -> str:
    cold_target = figures["targets"]["cold_init_ms"]
    warm_target = figures["targets"]["warm_overhead_us"]
    rows = ["| figure | value | target | met |", "|---|---|---|---|"]
    for name, cold in figures["cold_init_ms"].items():
        runs = len(cold["runs"])
        rows.append(
            f"| cold init, {name} handler (import, median of {runs}) | {cold['median']} ms "
            f"| <= {cold_target:.0f} ms | {_met(cold['median'], cold_target)} |"
        )
    for name, cold in figures["cold_init_without_bytecode_ms"].items():
        rows.append(
            f"| cold init, {name} handler, no bytecode cache (upper bound) | {cold['median']} ms "
            f"| <= {cold_target:.0f} ms | {_met(cold['median'], cold_target)} |"
        )
    for tracing, warm in figures["warm_api_overhead_us"].items():
        for centile in ("p50", "p99"):
            rows.append(
                f"| warm overhead per `POST /predict`, {tracing.replace('_', ' ')}, {centile} "
                f"({warm['requests']} requests) | {warm[centile]} µs | <= {warm_target:.0f} µs "
                f"| {_met(warm[centile], warm_target)} |"
            )
    breakdown = ["| module (imported in this order) | marginal import ms |", "|---|---|"]
    breakdown += [f"| `{name}` | {ms} |" for name, ms in figures["import_breakdown_ms"].items()]
    machine = figures["machine"]
    header = (
        f"Measured {figures['measured_at']} on {machine['cpus']} CPUs, Python {machine['python']}, "
        "with the Lambda function's environment (X-Ray tracing on)."
    )
    return "\n".join([header, "", *rows, "", *breakdown]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("output", type=Path, help="JSON file; a .md table is written beside it")
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per cold-init figure")
    parser.add_argument("--requests", type=int, default=2000, help="measured warm requests")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured warm requests first")
    args = parser.parse_args(argv)
    figures = measure(runs=args.runs, requests=args.requests, warmup=args.warmup)
    write_figures(args.output, figures, markdown(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
