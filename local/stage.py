"""The local stage: the whole pipeline on this machine, on 127.0.0.1 only.

    python -m local.stage            # serve until Ctrl-C (``nox -s local``)
    python -m local.stage --smoke    # bring up, exercise, exit 0/1 (``nox -s local -- --smoke``)

What runs, all started here and stopped on exit:

1. **Emulated account**: moto in server mode in this process, with the operations it lacks added
   (``local.emulator``; listed at start-up).
2. **Deployment from the real templates**: the ``local`` environment is synthesized and its stacks
   created in moto in the manifest's order (``local.deploy``); what moto leaves out is applied
   through the service APIs and printed.
3. **Models**: v1 and v2 trained (or reused from ``build/models``), registered with ``mlpipe``'s
   registry, and the desired state reconciled by ``mlpipe``'s lifecycle; one model server per
   version (``model.server``, the SageMaker entry point), each its own process.
4. **SageMaker runtime**: ``local.router`` in front of the model servers, honouring the endpoint's
   live weights, the model each variant runs now, and ``TargetVariant``.
5. **Handlers in-process** (``local.lambda_runtime``): the API behind ``local.api_gateway`` (routes,
   API key, request validation and any stage cache from the template); the Kinesis consumer behind
   ``local.kinesis_poller`` (the mapping's settings from the emulated account).
6. **Events**: ``local.events`` drives the templates' EventBridge rules (desired-state changes
   and endpoint state changes invoke the deploy function; objects created under the batch input
   prefix start the batch state machine; ``rate(...)`` schedules run on the clock, any schedule
   on demand with ``mlpipe events run-schedule``).

Boto3 in this process reaches the emulated account through ``AWS_ENDPOINT_URL`` and the router
through ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, so every handler runs its production code path.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import uvicorn

from local import api_gateway, dynamodb_stream_poller, events
from local.deploy import StageDeployer
from local.dynamodb_stream_poller import DynamoDBStreamPoller
from local.emulator import apigateway as apigateway_emulator
from local.emulator import athena as athena_emulator
from local.emulator import cfn_resources
from local.emulator import cloudwatch as cloudwatch_emulator
from local.emulator import events as events_emulator
from local.emulator import firehose as firehose_emulator
from local.emulator import kinesis as kinesis_emulator
from local.emulator import sagemaker_training as sagemaker_training_emulator
from local.emulator import stepfunctions as stepfunctions_emulator
from local.emulator.server import install_all
from local.kinesis_poller import KinesisPoller
from local.lambda_runtime import LocalFunctions
from local.processes import StopStage, die_with_parent, stop_on_signals
from local.router import WeightSource, create_router
from mlpipe.batch import run_batch
from shared import training
from shared.config import LOCAL_ACCOUNT, get_config
from shared.outputs import AnalyticsOutputs, BatchOutputs, ObservabilityOutputs

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "local"
MODELS = ROOT / "build" / "models"
STAGE = "local"
REGION = "us-east-1"
VERSIONS = ("v1", "v2")
MODEL_VERSION_ENV = "MODEL_VERSION"
LIVE_CACHE_SECONDS = 1.0
Log = Callable[[str], None]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(interval)
    raise TimeoutError(f"{what} was not ready within {timeout:.0f} s")


# execution history events that carry a failure's error and cause
FAILURE_DETAILS = (
    "taskFailedEventDetails",
    "lambdaFunctionFailedEventDetails",
    "executionFailedEventDetails",
)


# the buckets the S3 rules name are listed this often (S3's events reach EventBridge within seconds)
S3_POLL_SECONDS = 1.0
# alarms are evaluated this often (their periods are minutes; the integration tests wait on it)
ALARM_EVALUATION_SECONDS = 10.0


class ThreadedServer(threading.Thread):
    """An ASGI app served by uvicorn on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any, port: int, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self) -> None:
        self.server.run()

    def start_and_wait(self) -> None:
        self.start()
        wait_until(lambda: bool(self.server.started), timeout=15, what=self.name)

    def stop(self) -> None:
        self.server.should_exit = True
        self.join(timeout=5)


class Poller(threading.Thread):
    """Calls ``poll`` every ``interval`` seconds until stopped; errors are logged, not fatal."""

    def __init__(self, name: str, poll: Callable[[], object], interval: float, log: Log) -> None:
        super().__init__(name=name, daemon=True)
        self.poll, self.interval, self.log = poll, interval, log
        self.stopped = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.poll()
            except Exception as err:
                self.errors += 1
                self.log(f"{self.name}: {type(err).__name__}: {err}")

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


class ModelServer:
    """One ``model.server`` process serving one version's archive."""

    def __init__(self, version: str, archive: Path, log_file: Path) -> None:
        self.version, self.archive, self.log_file = version, archive, log_file
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
                [
                    sys.executable,
                    "-m",
                    "model.server",
                    "--artifact",
                    str(self.archive),
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - only prctl; goes if the stage dies
            )
        wait_until(
            lambda: httpx.get(f"{self.url}/ping", timeout=1).status_code == 200,
            timeout=60,
            what=f"model server {self.version}",
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


class LiveVariants(Mapping[str, httpx.AsyncClient]):
    """Variant -> the model server of the version that variant runs now (read from the account)."""

    def __init__(self, sagemaker: Any, endpoint: str, clients: dict[str, httpx.AsyncClient]) -> None:
        self.sagemaker, self.endpoint, self.clients = sagemaker, endpoint, clients
        self._cached: tuple[float, dict[str, str]] | None = None
        self._lock = threading.Lock()

    def versions(self) -> dict[str, str]:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < LIVE_CACHE_SECONDS:
                return self._cached[1]
            endpoint = self.sagemaker.describe_endpoint(EndpointName=self.endpoint)
            config = self.sagemaker.describe_endpoint_config(
                EndpointConfigName=endpoint["EndpointConfigName"]
            )
            versions = {}
            for variant in config["ProductionVariants"]:
                model = self.sagemaker.describe_model(ModelName=variant["ModelName"])
                versions[variant["VariantName"]] = model["PrimaryContainer"]["Environment"][MODEL_VERSION_ENV]
            self._cached = (now, versions)
            return versions

    def __getitem__(self, variant: str) -> httpx.AsyncClient:
        version = self.versions()[variant]
        try:
            return self.clients[version]
        except KeyError:
            raise KeyError(
                f"{variant} runs {version}, which has no model server in the local stage"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.versions())

    def __len__(self) -> int:
        return len(self.versions())


@dataclass
class StageInfo:
    api_url: str
    api_key: str
    moto_url: str
    router_url: str
    model_servers: dict[str, str]
    outputs: dict[str, dict[str, str]]
    gaps: list[str]
    patches: list[str]
    events: list[str]
    api_routes: list[str]
    started_in_seconds: float = 0.0
    log_file: str = ""
    timings: dict[str, float] = field(default_factory=dict)


class LocalStage:
    def __init__(self, *, work: Path = WORK, log: Log | None = None, freeze_startup: bool = True) -> None:
        self.work = work
        self.freeze_startup = freeze_startup
        self.work.mkdir(parents=True, exist_ok=True)
        self.log_file = self.work / "stage.log"
        self._log = log or (lambda line: print(line, flush=True))
        self._stops: list[Callable[[], None]] = []
        self.model_servers: dict[str, ModelServer] = {}
        self.metrics = cloudwatch_emulator.MetricStore()
        self.info: StageInfo | None = None

    def log(self, line: str) -> None:
        with self.log_file.open("a") as out:
            out.write(line + "\n")
        self._log(line)

    # ----- start -----
    def start(self) -> StageInfo:
        started = time.monotonic()
        timings: dict[str, float] = {}

        def lap(name: str, since: float) -> float:
            now = time.monotonic()
            timings[name] = round(now - since, 2)
            return now

        self.log_file.write_text("")
        mark = time.monotonic()
        gaps, moto_url = self._start_emulated_account()
        mark = lap("emulated account", mark)
        cdk_out = self._synthesize()
        mark = lap("synth", mark)
        deployment = StageDeployer(self.session).deploy(cdk_out, STAGE)
        kinesis_emulator.detach_lambda_triggers(LOCAL_ACCOUNT, REGION)
        dynamodb_stream_poller.detach_lambda_triggers(LOCAL_ACCOUNT, REGION)
        mark = lap("deploy templates", mark)
        outputs = deployment.outputs
        inference = outputs[f"ml-pipeline-inference-{STAGE}"]
        self._start_model_servers()
        mark = lap("model servers", mark)
        router_url = self._start_router(inference["EndpointName"])
        self.batch_outputs = outputs[f"ml-pipeline-batch-{STAGE}"]
        self.analytics_outputs = outputs[f"ml-pipeline-analytics-{STAGE}"]
        self.observability_outputs = outputs[f"ml-pipeline-observability-{STAGE}"]
        self.training_outputs = outputs[f"ml-pipeline-training-{STAGE}"]
        functions = self._functions(inference, self.batch_outputs)
        self._register_and_reconcile()
        mark = lap("register and reconcile models", mark)
        templates = self._templates(cdk_out)
        api_routes, api_url = self._start_api(
            templates[f"ml-pipeline-inference-{STAGE}"], inference, functions
        )
        event_lines = self._start_events(templates, functions)
        self._start_alarms(templates)
        self._start_stream_consumer(inference, functions)
        self._start_history_tap(self.analytics_outputs, functions)
        self._attach_batch(functions)
        lap("handlers and events", mark)
        self.info = StageInfo(
            api_url=api_url,
            api_key=self._api_key(),
            moto_url=moto_url,
            router_url=router_url,
            model_servers={v: s.url for v, s in self.model_servers.items()},
            outputs=outputs,
            gaps=list(gaps),
            patches=deployment.patches,
            events=event_lines,
            api_routes=api_routes,
            started_in_seconds=round(time.monotonic() - started, 1),
            log_file=str(self.log_file),
            timings=timings,
        )
        (self.work / "stage.json").write_text(json.dumps(asdict(self.info), indent=2) + "\n")
        if self.freeze_startup:
            # What start-up left alive (the synth's objects, moto's deployed state, botocore's
            # models) stays alive: out of the collector's scans, a full collection under load
            # pauses every thread for ~0.2 s instead of ~0.7 s (measured by nox -s bench)
            gc.collect()
            gc.freeze()
        return self.info

    def _start_emulated_account(self) -> tuple[tuple[str, ...], str]:
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - only the local stage needs it

        gaps = install_all()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
        # moto's notes on skipped CloudFormation types: the deployer reports them, once, by type
        logging.getLogger("moto").setLevel(logging.ERROR)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        self._stops.append(server.stop)
        moto_url = f"http://127.0.0.1:{port}"
        # every boto3 client of this process (handlers included) talks to the emulated account
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL": moto_url,
                # moto's Step Functions interpreter calls the services back on this port
                "MOTO_PORT": str(port),
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        self.session = boto3.session.Session(region_name=REGION)
        wait_until(
            lambda: httpx.get(f"{moto_url}/moto-api/", timeout=1).status_code < 500,
            timeout=15,
            what="moto server",
        )
        gaps = (
            *gaps,
            kinesis_emulator.GAP,
            cfn_resources.GAP,
            dynamodb_stream_poller.GAP,
            firehose_emulator.install(),
            athena_emulator.GAP,
            *cloudwatch_emulator.GAPS,
            events_emulator.GAP,
        )
        for gap in gaps:
            self.log(f"emulator gap patched: {gap}")
        return gaps, moto_url

    def _synthesize(self) -> Path:
        from tools.synth import synthesize  # noqa: PLC0415 - imports CDK; only needed at start-up

        out = self.work / "cdk.out"
        seconds = synthesize(out, environments=[STAGE])
        self.log(f"synthesized the {STAGE} stage in {seconds:.1f} s")
        return out

    @staticmethod
    def _templates(cdk_out: Path) -> dict[str, dict[str, Any]]:
        from tools.deploy_plan import deployment_plan  # noqa: PLC0415

        return {
            p.stack_name: json.loads(p.template_file.read_text()) for p in deployment_plan(cdk_out)[STAGE]
        }

    def _start_model_servers(self) -> None:
        archives = {version: MODELS / version / "model.tar.gz" for version in VERSIONS}
        if not all(path.exists() for path in archives.values()):
            from model import train  # noqa: PLC0415 - training is only needed on a fresh machine

            self.log("training v1 and v2 into build/models (first start)")
            train.train(MODELS)
        for version, archive in archives.items():
            server = ModelServer(version, archive, self.log_file)  # one log for the whole stage
            server.start()
            self.model_servers[version] = server
            self._stops.append(server.stop)
            self.log(f"model server {version}: {server.url} ({archive.relative_to(ROOT)})")

    def _start_router(self, endpoint: str) -> str:
        sagemaker = self.session.client("sagemaker")
        clients = {v: httpx.AsyncClient(base_url=s.url, timeout=10) for v, s in self.model_servers.items()}
        self.live_variants = LiveVariants(sagemaker, endpoint, clients)
        router = create_router(
            {endpoint: self.live_variants}, WeightSource(sagemaker), record=self.metrics.record
        )
        server = ThreadedServer(router, free_port(), "sagemaker-runtime")
        server.start_and_wait()
        self._stops.append(server.stop)
        os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = server.url
        self.log(f"SageMaker runtime (router): {server.url}")
        return server.url

    def _functions(self, inference: dict[str, str], batch: dict[str, str]) -> LocalFunctions:
        names = [
            inference["ApiFunctionName"],
            inference["StreamFunctionName"],
            inference["DeployFunctionName"],
            batch[BatchOutputs.LIST_FUNCTION_NAME],
            batch[BatchOutputs.INLINE_FUNCTION_NAME],
            batch[BatchOutputs.REPORT_FUNCTION_NAME],
            self.analytics_outputs[AnalyticsOutputs.TAP_FUNCTION_NAME],
            # the drift monitor's hourly schedule runs on the events poller's clock
            self.observability_outputs[ObservabilityOutputs.DRIFT_FUNCTION_NAME],
            *self._training_functions(),
        ]
        functions = LocalFunctions(self.session.client("lambda"), names)
        functions.apply_environment()
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon locally
        self.functions = functions
        return functions

    def _register_and_reconcile(self) -> None:
        from mlpipe.artifact import read_artifact  # noqa: PLC0415
        from mlpipe.cli import build_lifecycle  # noqa: PLC0415
        from mlpipe.registry import ModelRegistry  # noqa: PLC0415
        from mlpipe.stage import DIRECT, registry_location  # noqa: PLC0415

        location = registry_location(self.session.client("cloudformation"), STAGE)
        registry = ModelRegistry(
            location=location, s3=self.session.client("s3"), ssm=self.session.client("ssm")
        )
        for version in VERSIONS:
            record, created = registry.register(
                read_artifact(MODELS / version / "model.tar.gz"), version, actor="local-stage"
            )
            self.log(
                f"model {version}: {'registered' if created else 'already registered'} ({record.sha256[:12]})"
            )
        # the start-up reconcile runs before the event dispatcher (as CloudFormation creates the
        # endpoint before a rule can fire), so nobody else acts on it: the direct path, by name
        lifecycle = build_lifecycle(self.session, registry, stage=STAGE, actor="local-stage", owner=DIRECT)
        verified = lifecycle.apply(lifecycle.desired())
        variants = ", ".join(f"{n}={v.version}@{v.weight:g}" for n, v in verified.variants.items())
        self.log(f"endpoint reconciled by mlpipe and verified: {variants}")

    def _api_key(self) -> str:
        keys = self.session.client("apigateway").get_api_keys(includeValues=True)["items"]
        return str(keys[0]["value"])

    def _start_api(
        self, template: dict[str, Any], inference: dict[str, str], functions: LocalFunctions
    ) -> tuple[list[str], str]:
        spec = api_gateway.api_spec(template)
        apigateway_client = self.session.client("apigateway")
        keys: dict[str, Any] = {"at": 0.0, "values": {}}

        def api_keys() -> dict[str, str]:
            """Enabled key value -> key id, from the emulated account (re-read every second)."""
            if time.monotonic() - keys["at"] > 1.0:
                items = apigateway_client.get_api_keys(includeValues=True)["items"]
                keys["values"] = {k["value"]: k["id"] for k in items if k.get("enabled")}
                keys["at"] = time.monotonic()
            values: dict[str, str] = keys["values"]
            return values

        api_function = inference["ApiFunctionName"]
        rest_api = api_gateway.LocalRestApi(
            spec,
            lambda event, _context: functions.invoke(api_function, event),
            api_keys,
            api_id=inference["RestApiId"],
        )
        self.rest_api = rest_api
        apigateway_emulator.listeners.append(rest_api.flush)
        server = ThreadedServer(rest_api.app(), free_port(), "api")
        server.start_and_wait()
        self._stops.append(server.stop)
        api_url = f"{server.url}/{spec.stage_name}"
        lines = spec.describe()
        for line in lines:
            self.log(f"API: {line}")
        return lines, api_url

    def _start_events(self, templates: dict[str, dict[str, Any]], functions: LocalFunctions) -> list[str]:
        rules = events.event_rules(templates)
        cloudformation = self.session.client("cloudformation")
        # (stack, logical id) -> physical id: a logical id is unique within its template only
        physical: dict[tuple[str, str], str] = {}
        for stack_name in templates:
            for resource in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]:
                if resource.get("LogicalResourceId"):  # moto lists types it skipped without one
                    physical[(stack_name, resource["LogicalResourceId"])] = resource.get(
                        "PhysicalResourceId", ""
                    )
        dispatcher = events.EventDispatcher(
            rules,
            ssm=self.session.client("ssm"),
            sagemaker=self.session.client("sagemaker"),
            s3=self.session.client("s3"),
            stepfunctions=self.session.client("stepfunctions"),
            invoke=functions.invoke,
            resolve=lambda stack, logical_id: physical[(stack, logical_id)],
            account=self.session.client("sts").get_caller_identity()["Account"],
            region=REGION,
            buckets=events.event_buckets(templates),
            s3_poll_seconds=S3_POLL_SECONDS,
            dead_letter=events.sqs_dead_letters(
                self.session.client("sqs"), lambda stack, logical_id: physical[(stack, logical_id)]
            ),
            log=self.log,
        )
        dispatcher.poll()  # the baseline: what exists now is not an event
        self.dispatcher = dispatcher
        poller = Poller("events", lambda: (dispatcher.poll(), dispatcher.run_due_schedules()), 0.25, self.log)
        poller.start()
        self._stops.append(poller.stop)
        lines = dispatcher.describe()
        for line in lines:
            self.log(f"events: {line}")
        return lines

    def _start_alarms(self, templates: dict[str, dict[str, Any]]) -> None:
        """The templates' alarms evaluated on the handlers' EMF and the router's metrics."""
        sns = self.session.client("sns")
        cloudformation = self.session.client("cloudformation")
        self.metrics.cloudwatch = self.session.client("cloudwatch")
        ids = {
            stack: {
                r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
                for r in cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
                if r.get("LogicalResourceId")
            }
            for stack in templates
        }
        exports = {e["Name"]: e["Value"] for e in cloudformation.list_exports()["Exports"]}
        cloudwatch_emulator.create_metric_alarms(
            self.metrics.cloudwatch, templates, ids=ids, exports=exports, account=LOCAL_ACCOUNT, region=REGION
        )
        self.alarms = cloudwatch_emulator.AlarmEvaluator(
            store=self.metrics,
            cloudwatch=self.session.client("cloudwatch"),
            publish=lambda topic, message: sns.publish(TopicArn=topic, Message=message),
            emit=self.dispatcher.emit,
            composites=cloudwatch_emulator.composite_alarms(templates, account=LOCAL_ACCOUNT, region=REGION),
            account=LOCAL_ACCOUNT,
            region=REGION,
        )
        sys.stdout = cloudwatch_emulator.EmfTee(sys.stdout, self.metrics)
        self._stops.append(lambda: setattr(sys, "stdout", sys.__stdout__))
        poller = Poller("alarms", self.alarms.evaluate, ALARM_EVALUATION_SECONDS, self.log)
        poller.start()
        self._stops.append(poller.stop)
        self.log(
            f"alarms: {len(self.alarms.metric_alarms())} metric and {len(self.alarms.composites)} composite "
            f"alarms evaluated every {ALARM_EVALUATION_SECONDS:g} s"
        )

    def _mapped_poller(
        self,
        kind: type[KinesisPoller],
        function: str,
        client: Any,
        stream: str | None,
        functions: LocalFunctions,
    ) -> tuple[dict[str, Any], str, KinesisPoller]:
        """A poller with ``function``'s one event source mapping's settings and failure queue."""
        lambda_client = self.session.client("lambda")
        (mapping,) = lambda_client.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
        sqs = self.session.client("sqs")
        destination = mapping["DestinationConfig"]["OnFailure"]["Destination"]
        queue_url = sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[-1])["QueueUrl"]
        poller = kind(
            kinesis=client,
            stream_name=stream or mapping["EventSourceArn"],
            handler=lambda event, _context: functions.invoke(function, event),
            on_failure=lambda failure: sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(failure)),
            batch_size=mapping["BatchSize"],
            maximum_retry_attempts=mapping["MaximumRetryAttempts"],
            bisect_on_error=mapping["BisectBatchOnFunctionError"],
        )
        return mapping, str(queue_url), poller

    def _start_stream_consumer(self, inference: dict[str, str], functions: LocalFunctions) -> None:
        function = inference["StreamFunctionName"]
        mapping, queue_url, poller = self._mapped_poller(
            KinesisPoller, function, self.session.client("kinesis"), inference["StreamName"], functions
        )
        self.kinesis_poller = poller
        thread = Poller("kinesis", poller.poll, 0.2, self.log)
        thread.start()
        self._stops.append(thread.stop)
        self.log(
            f"Kinesis mapping: {inference['StreamName']} -> {function} (batch {mapping['BatchSize']}, "
            f"retries {mapping['MaximumRetryAttempts']}, bisect {mapping['BisectBatchOnFunctionError']}, "
            f"on failure -> {queue_url})"
        )

    def _start_history_tap(self, analytics: dict[str, str], functions: LocalFunctions) -> None:
        """The tap's DynamoDB stream mapping (run by the poller) and the history's delivery timer."""
        function = analytics[AnalyticsOutputs.TAP_FUNCTION_NAME]
        mapping, queue_url, poller = self._mapped_poller(
            DynamoDBStreamPoller, function, self.session.client("dynamodbstreams"), None, functions
        )
        self.history_poller = poller
        for name, poll, interval in (
            ("history-tap", poller.poll, 0.5),
            ("history-delivery", firehose_emulator.DELIVERIES.flush_due, 1.0),
        ):
            thread = Poller(name, poll, interval, self.log)
            thread.start()
            self._stops.append(thread.stop)
        # what the buffers hold at shutdown is delivered, as Firehose does when a stream is deleted
        self._stops.append(firehose_emulator.DELIVERIES.close)
        self.log(
            f"DynamoDB stream mapping: {mapping['EventSourceArn']} -> {function} "
            f"(batch {mapping['BatchSize']}, retries {mapping['MaximumRetryAttempts']}, "
            f"on failure -> {queue_url}); history delivered on the delivery stream's buffering hints"
        )

    def _training_functions(self) -> list[str]:
        """The training layer's functions, by their configured names (the stack names them so)."""
        config = get_config(STAGE)
        return [config.resource_name(name) for name in training.FUNCTIONS]

    def _attach_batch(self, functions: LocalFunctions) -> None:
        """Lambda ``Invoke`` of the stage's functions (the state machines' Lambda tasks, an operator's
        ``mlpipe events run-schedule`` of a function target) calls the handlers here; the batch
        run's Batch jobs and the training runs' SageMaker jobs run as processes."""
        batch = self.batch_outputs
        stepfunctions_emulator.attach(
            functions=dict.fromkeys(functions.functions, functions.invoke), job_runner=self._run_job
        )
        self._stops.append(stepfunctions_emulator.detach)
        # SageMaker training jobs of any state machine run as local processes; their output goes to the log
        sagemaker_training_emulator.attach(log=self.log)
        self._stops.append(sagemaker_training_emulator.detach)
        self.log(f"batch: state machine {batch[BatchOutputs.STATE_MACHINE_ARN]}; jobs run as local processes")

    def _run_job(self, command: list[str], environment: dict[str, str], timeout: float | None) -> int:
        """A Batch job: the job definition's command, as the container would run it, on this machine.

        An attempt running past the job definition's timeout is stopped, as Batch stops it (exit 137).
        """
        if command[:1] == ["python"]:
            command = [sys.executable, *command[1:]]
        self.log(f"batch job {environment.get('AWS_BATCH_JOB_ID', '?')}: {' '.join(command)}")
        with self.log_file.open("a") as log:
            try:
                result = subprocess.run(  # noqa: S603 - the job definition's own command, from our template
                    command,
                    cwd=ROOT,
                    env={**os.environ, **environment},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                    timeout=timeout,
                    preexec_fn=die_with_parent(),
                )
            except subprocess.TimeoutExpired:
                self.log(f"batch job {environment.get('AWS_BATCH_JOB_ID', '?')}: stopped after {timeout} s")
                return 137
        return result.returncode

    def run_batch(self, source: Path, *, timeout: float = 900.0) -> dict[str, Any]:
        """Upload ``source`` under the input prefix and wait for the run the S3 rule starts for it."""
        result = run_batch(self.session, self.batch_outputs, source, timeout=timeout)
        self.log(f"batch run {result['execution']}: {result['status']} in {result['seconds']} s")
        return result

    # ----- faults (integration tests) -----
    def stop_model_server(self, version: str) -> None:
        self.model_servers[version].stop()

    def start_model_server(self, version: str) -> None:
        server = self.model_servers[version]
        if server.process is None:
            server.start()

    # ----- stop -----
    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as err:
                self._log(f"stopping: {type(err).__name__}: {err}")
        apigateway_emulator.reset()


def banner(info: StageInfo, example: dict[str, float]) -> str:
    row = json.dumps({"instances": [example]})
    timings = ", ".join(f"{name} {seconds}s" for name, seconds in info.timings.items())
    return "\n".join(
        [
            "",
            f"local stage ready in {info.started_in_seconds} s ({timings})",
            f"  API:      {info.api_url}",
            f"  API key:  {info.api_key}",
            f"  account:  {info.moto_url} (moto; AWS_ENDPOINT_URL for the AWS CLI and mlpipe)",
            f"  logs:     {info.log_file}",
            "",
            "  try:",
            f"    curl -s -H 'x-api-key: {info.api_key}' -H 'content-type: application/json' \\",
            f"      -d '{row}' {info.api_url}/predict",
            f"    curl -s -H 'x-api-key: {info.api_key}' {info.api_url}/predictions/PREDICTION_ID",
            f"    AWS_ENDPOINT_URL={info.moto_url} AWS_ACCESS_KEY_ID=testing \\",
            "      AWS_SECRET_ACCESS_KEY=testing uv run mlpipe --stage local models status",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the whole pipeline on this machine (127.0.0.1 only).")
    parser.add_argument("--smoke", action="store_true", help="bring up, exercise every path once, exit")
    parser.add_argument(
        "--batch",
        type=Path,
        metavar="FILE",
        help="run a batch of this CSV/JSON Lines file through the job, exit",
    )
    parser.add_argument(
        "--work", type=Path, default=WORK, help=f"synth output, log and stage.json (default: {WORK})"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="moto")
    stage = LocalStage(work=args.work)
    with stop_on_signals():  # SIGTERM and SIGINT (even when started with SIGINT ignored)
        return _serve(stage, args)


def _serve(stage: LocalStage, args: argparse.Namespace) -> int:
    try:
        info = stage.start()
        from local.smoke import sample_rows  # noqa: PLC0415

        print(banner(info, sample_rows(1)[0]), flush=True)
        if args.smoke:
            from local.smoke import run_smoke  # noqa: PLC0415

            return run_smoke(stage, info)
        if args.batch is not None:
            result = stage.run_batch(args.batch)
            print(json.dumps(result, indent=2, default=str), flush=True)
            return 0 if result["status"] == "SUCCEEDED" else 1
        print("serving until Ctrl-C", flush=True)
        threading.Event().wait()
    except (KeyboardInterrupt, StopStage) as stop:
        print(f"stopping ({stop.args[0] if isinstance(stop, StopStage) else 'SIGINT'})", flush=True)
    finally:
        stage.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
