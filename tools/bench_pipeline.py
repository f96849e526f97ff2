"""Benchmark: the local stage's real-time and stream paths under paced load, written as JSON + Markdown + PNG.

One run, one machine, one local stage (``python -m tools.bench_pipeline reports/bench/pipeline.json``):

1. **model-only floor**: ``POST /invocations`` straight to the model servers, with the body the
   API path sends them (``{"instances": [row]}``), spread over the versions by the endpoint's
   current variant weights; p50/p99;
2. **end to end at the 10x peak rate** (100,000/day x 10 = 11.6 req/s): ``POST /predict`` with the
   API key through the API Gateway emulation, the API handler, the SageMaker runtime router, the
   model server and DynamoDB (moto); p50/p99 and the p50 overhead over the floor (ms and ratio);
3. **the knee**: the rate stepped up (``--steps``) until a step breaks p99 <= 100 ms or has an
   error; the knee is the highest rate before the first broken step. Per step: offered and
   achieved rate, p50/p99/max, error ratio, how late the generator sent, and the CPU each part
   used (stage process, model servers, this generator, everything else on the machine);
4. **stream path**: a burst of ``--stream-records`` ``POST /predict/stream`` requests; records/s
   from the first put until the last prediction is readable in DynamoDB;
5. optionally (``--profile``) a py-spy profile of the stage (GIL holders only) during a step at
   ``--profile-rps``: how busy the stage's GIL is and where that time goes, by component.

The load is **open loop**: request ``i`` of a step is due at ``start + i / rate`` whatever the
earlier ones are doing (each request is its own task), and its latency is counted from when it was
due, so a generator that falls behind shows up as latency instead of hiding it (no coordinated
omission). Payloads are rows of the model's own data set, each one unique (a convex mix of two
rows), so the API function's answer cache (keyed on the rows) never answers for the path being measured.

The stage runs in its own process (``serve-stage``: ``local.stage.LocalStage`` in a separate
working directory, as ``nox -s local`` runs it) and the generator (httpx, asyncio) in this one:
they do not share a GIL, but they do share the machine's cores, and so does anything else running
on it (the report gives each one's CPU). The stage process also records its garbage-collection
pauses per step (a full collection stops every thread of it). By default the stage runs exactly as
``nox -s local`` runs it, start-up objects frozen out of the collector (``gc.freeze()``);
``--no-gc-freeze`` measures it without that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.bench_report import measurement_context, write_figures

ROOT = Path(__file__).resolve().parent.parent
AVERAGE_RPS = 100_000 / 86_400  # 100,000 predictions a day
PEAK_RPS = round(AVERAGE_RPS * 10, 1)  # the 10x peak rate of issue 6: 11.6 req/s
DEFAULT_STEPS = (25.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0, 135.0, 150.0, 175.0, 200.0)
TARGETS = {
    "overhead_p50_ms": 10.0,  # end-to-end p50 over the model-only p50, at the 10x peak rate
    "knee_rps": 100.0,  # the highest rate with p99 <= knee_p99_ms and no errors
    "knee_p99_ms": 100.0,
}
REQUEST_TIMEOUT_SECONDS = 10.0

# py-spy frames, shortened to the package part of the file name: "function (package/module.py:line)"
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
# component of a profiled frame, by the file's package path (first match, in this order)
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("local/api_gateway.py", "API Gateway emulation (local/api_gateway.py)"),
    ("local/router.py", "SageMaker runtime router (local/router.py)"),
    ("local/kinesis_poller.py", "Kinesis poller (local/kinesis_poller.py)"),
    ("local/events.py", "EventBridge emulation (local/events.py)"),
    ("local/emulator/", "emulator extensions (local/emulator)"),
    ("stacks/inference/runtime/", "handlers (stacks/inference/runtime)"),
    ("shared/predictions.py", "handlers (stacks/inference/runtime)"),
    ("model/", "model schema and server (model/)"),
    ("aws_lambda_powertools/", "Powertools (logging, metrics, resolver)"),
    ("moto/dynamodb/", "moto DynamoDB"),
    ("moto/", "moto (other services, request dispatch)"),
    ("werkzeug_app.py", "moto (other services, request dispatch)"),
    ("werkzeug/", "werkzeug/flask (moto's HTTP server)"),
    ("flask/", "werkzeug/flask (moto's HTTP server)"),
    ("socketserver.py", "werkzeug/flask (moto's HTTP server)"),
    ("http/server.py", "werkzeug/flask (moto's HTTP server)"),
    ("botocore/", "botocore (boto3 clients)"),
    ("boto3/", "botocore (boto3 clients)"),
    ("jmespath/", "botocore (boto3 clients)"),
    ("urllib3/", "urllib3/http.client (boto3's HTTP)"),
    ("http/client.py", "urllib3/http.client (boto3's HTTP)"),
    ("email/", "urllib3/http.client (boto3's HTTP)"),
    ("httpx/", "httpx/httpcore (router -> model server)"),
    ("httpcore/", "httpx/httpcore (router -> model server)"),
    ("uvicorn/", "uvicorn/starlette (HTTP front ends)"),
    ("starlette/", "uvicorn/starlette (HTTP front ends)"),
    ("h11/", "uvicorn/starlette (HTTP front ends)"),
    ("anyio/", "uvicorn/starlette (HTTP front ends)"),
    ("asyncio/", "asyncio event loops"),
    ("selectors.py", "sockets and selectors"),
    ("socket.py", "sockets and selectors"),
    ("jsonschema/", "jsonschema (API request validation)"),
    ("referencing/", "jsonschema (API request validation)"),
    ("pydantic/", "pydantic"),
    ("json/", "json"),
    ("logging/", "logging"),
    ("threading.py", "threads and queues"),
    ("queue.py", "threads and queues"),
    ("sklearn/", "scikit-learn"),
    ("numpy/", "numpy"),
)


# ----- pure parts (unit-tested) -----


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``samples`` (linear interpolation between closest ranks)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50, p99, max and mean (ms, rounded) of the latencies of one measurement."""
    return {
        "p50_ms": round(percentile(latencies_ms, 0.50), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "max_ms": round(max(latencies_ms), 2),
        "mean_ms": round(statistics.fmean(latencies_ms), 2),
    }


def unique_rows(rows: Sequence[Mapping[str, float]], count: int, seed: int = 6) -> list[dict[str, float]]:
    """``count`` distinct rows, each a convex mix of two of ``rows`` (every feature stays in their range)."""
    if len(rows) < 2:
        raise ValueError("need at least two rows to mix")
    draw = random.Random(seed)  # noqa: S311 - load payloads, not security
    names = list(rows[0])
    seen: set[tuple[float, ...]] = set()
    mixed: list[dict[str, float]] = []
    while len(mixed) < count:
        first, second = draw.sample(range(len(rows)), 2)
        share = draw.random()
        row = {
            name: round(rows[first][name] + (rows[second][name] - rows[first][name]) * share, 6)
            for name in names
        }
        key = tuple(row.values())
        if key not in seen:
            seen.add(key)
            mixed.append(row)
    return mixed


@dataclass(frozen=True)
class Sample:
    """One request of a paced run: when it was due, how late it was sent, its latency from due time."""

    due: float
    send_lag_ms: float
    latency_ms: float
    ok: bool
    version: str | None = None


@dataclass
class StepResult:
    offered_rps: float
    seconds: float
    requests: int
    errors: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    send_lag_p99_ms: float
    cpu_cores: dict[str, float]
    stage_gc: dict[str, Any] = field(default_factory=dict)  # the stage's GC pauses during the step

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 1.0

    def passes(self, p99_limit_ms: float) -> bool:
        return self.requests > 0 and self.errors == 0 and self.p99_ms <= p99_limit_ms

    @property
    def stage_cpu_ms_per_request(self) -> float | None:
        """CPU time the stage process spent per answered request (less sensitive to other load)."""
        stage = self.cpu_cores.get("stage")
        if stage is None or not self.achieved_rps:
            return None
        return round(stage * 1000 / self.achieved_rps, 2)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "error_ratio": round(self.error_ratio, 4),
            "stage_cpu_ms_per_request": self.stage_cpu_ms_per_request,
        }


def step_result(offered_rps: float, samples: Sequence[Sample], cpu_cores: dict[str, float]) -> StepResult:
    """The figures of one paced step: latency over all requests (errors included), achieved rate."""
    if not samples:
        raise ValueError("a step without requests")
    latencies = [s.latency_ms for s in samples]
    first_due = min(s.due for s in samples)
    last_done = max(s.due + s.latency_ms / 1000 for s in samples)
    ok = sum(1 for s in samples if s.ok)
    seconds = max(last_done - first_due, 1e-9)
    summary = summarize(latencies)
    return StepResult(
        offered_rps=offered_rps,
        seconds=round(seconds, 2),
        requests=len(samples),
        errors=len(samples) - ok,
        achieved_rps=round(ok / seconds, 1),
        p50_ms=summary["p50_ms"],
        p99_ms=summary["p99_ms"],
        max_ms=summary["max_ms"],
        mean_ms=summary["mean_ms"],
        send_lag_p99_ms=round(percentile([s.send_lag_ms for s in samples], 0.99), 2),
        cpu_cores=cpu_cores,
    )


def find_knee(steps: Sequence[StepResult], p99_limit_ms: float) -> float | None:
    """The highest offered rate before the first step that breaks the limit or has an error."""
    knee = None
    for step in steps:
        if not step.passes(p99_limit_ms):
            break
        knee = step.offered_rps
    return knee


async def paced(
    send: Callable[[int], Awaitable[tuple[bool, str | None]]],
    rate: float,
    count: int,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Sample]:
    """Open-loop arrivals: call ``send(i)`` at ``start + i / rate`` for ``i < count``, each as its own task.

    ``send`` returns (ok, model version or None). A request is never held back by the ones before it;
    its latency runs from when it was due.
    """
    start = clock() + 0.01

    async def one(index: int, due: float) -> Sample:
        sent = clock()
        try:
            ok, version = await send(index)
        except Exception:  # a transport error or timeout is an error of the step, not of the benchmark
            ok, version = False, None
        done = clock()
        return Sample(
            due=due,
            send_lag_ms=(sent - due) * 1000,
            latency_ms=(done - due) * 1000,
            ok=ok,
            version=version,
        )

    tasks = []
    for index in range(count):
        due = start + index / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    return list(await asyncio.gather(*tasks))


def cpu_ticks(proc_stat: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from ``/proc/stat`` text (idle and iowait are not busy)."""
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            total = sum(values[:8])  # guest time is already counted in user/nice
            return total - idle, total
    raise ValueError("no aggregate cpu line in /proc/stat")


def process_ticks(pid_stat: str) -> int:
    """utime + stime jiffies from ``/proc/PID/stat`` text (the command may contain spaces and parens)."""
    fields = pid_stat[pid_stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted from field 3


def cpu_split(
    before: Mapping[str, int], after: Mapping[str, int], machine: tuple[tuple[int, int], tuple[int, int]]
) -> dict[str, float]:
    """CPU used in cores by each named process group between two readings, and by everything else.

    ``before``/``after``: group -> jiffies; ``machine``: (busy, total) jiffies before and after.
    """
    (busy0, total0), (busy1, total1) = machine
    cpus = os.cpu_count() or 1
    elapsed_cores = (total1 - total0) / cpus  # jiffies of wall time per core
    if elapsed_cores <= 0:
        return {}
    cores = {name: round((after[name] - before.get(name, 0)) / elapsed_cores, 2) for name in after}
    machine_busy = (busy1 - busy0) / elapsed_cores
    cores["machine"] = round(machine_busy, 2)
    cores["other"] = round(max(0.0, machine_busy - sum(v for k, v in cores.items() if k != "machine")), 2)
    return cores


def component(file: str) -> str:
    for prefix, name in COMPONENTS:
        if prefix in file:
            return name
    return "other"


@dataclass(frozen=True)
class Profile:
    """py-spy ``--gil`` samples of one process, aggregated."""

    process: str
    samples: int
    gil_busy_fraction: float | None  # samples / possible samples
    inclusive: dict[str, float]  # component -> share of samples with it anywhere in the stack
    leaf: dict[str, float]  # component -> share of samples whose innermost frame is in it
    top_functions: list[tuple[str, float]]  # innermost function (file) -> share, largest first


def parse_frame(frame: str) -> tuple[str, str]:
    """(function, file) of one py-spy frame."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match["function"], match["file"]


def aggregate_profile(
    raw: Iterable[str], *, possible_samples: int | None = None, top: int = 15
) -> list[Profile]:
    """py-spy ``record --format raw --gil --subprocesses --threads`` lines, aggregated per process.

    Each line is ``process P:"cmd";[process C:"cmd";]thread (T): name;frame;...;frame COUNT``
    (outermost frame first; a child process's lines name its parent first).
    """
    per_process: dict[str, list[tuple[list[str], int]]] = {}
    for text in raw:
        line = text.rstrip("\n")
        if not line.strip():
            continue
        stack_text, _, count_text = line.rpartition(" ")
        parts = stack_text.split(";")
        # with --subprocesses a child's stack starts with its parent's "process" part, then its own
        processes = [p for p in parts if p.startswith("process ")]
        process = processes[-1] if processes else "process"
        frames = [p for p in parts if not p.startswith(("process ", "thread "))]
        per_process.setdefault(process, []).append((frames, int(count_text)))
    profiles = []
    for process, stacks in per_process.items():
        total = sum(count for _, count in stacks)
        inclusive: Counter[str] = Counter()
        leaf: Counter[str] = Counter()
        functions: Counter[str] = Counter()
        for frames, count in stacks:
            parsed = [parse_frame(f) for f in frames]
            for name in {component(file) for _, file in parsed}:
                inclusive[name] += count
            if parsed:
                function, file = parsed[-1]
                leaf[component(file)] += count
                functions[f"{function} ({file})"] += count
        profiles.append(
            Profile(
                process=process,
                samples=total,
                gil_busy_fraction=round(total / possible_samples, 3) if possible_samples else None,
                inclusive={k: round(v / total, 3) for k, v in inclusive.most_common()},
                leaf={k: round(v / total, 3) for k, v in leaf.most_common()},
                top_functions=[(k, round(v / total, 3)) for k, v in functions.most_common(top)],
            )
        )
    return sorted(profiles, key=lambda p: -p.samples)


def _met(value: float | None, target: float, *, at_least: bool = False) -> str:
    if value is None:
        return "no"
    return "yes" if (value >= target if at_least else value <= target) else "no"


def markdown(figures: Mapping[str, Any]) -> str:
    """The summary table of one run (and the per-step table of the knee search)."""
    targets = figures["targets"]
    floor, e2e, knee, stream = (
        figures["model_only"],
        figures["end_to_end"],
        figures["knee"],
        figures["stream"],
    )
    rate = e2e["offered_rps"]
    rows = ["| figure | value | target | met |", "|---|---|---|---|"]
    rows.append(
        f"| model only (floor), p50 / p99 at {floor['offered_rps']:g} req/s ({floor['requests']} calls) "
        f"| {floor['p50_ms']} / {floor['p99_ms']} ms | | |"
    )
    rows.append(
        f"| end to end `POST /predict`, p50 / p99 at {rate:g} req/s ({e2e['requests']} requests, "
        f"{e2e['errors']} errors) | {e2e['p50_ms']} / {e2e['p99_ms']} ms | | |"
    )
    rows.append(
        f"| end-to-end p50 overhead over the floor | {e2e['overhead_p50_ms']} ms "
        f"({e2e['overhead_ratio']}x the floor) | <= {targets['overhead_p50_ms']:g} ms "
        f"| {_met(e2e['overhead_p50_ms'], targets['overhead_p50_ms'])} |"
    )
    knee_text = f"{knee['rps']:g} req/s" if knee["rps"] is not None else "below the first step"
    if knee["rps"] is not None and knee.get("broken_at_rps") is None:
        knee_text = f">= {knee_text} (no step broke)"
    rows.append(
        f"| knee: highest rate with p99 <= {targets['knee_p99_ms']:g} ms and no errors | {knee_text} "
        f"| >= {targets['knee_rps']:g} req/s | {_met(knee['rps'], targets['knee_rps'], at_least=True)} |"
    )
    rows.append(
        f"| stream: {stream['records']} records, put -> stored in DynamoDB "
        f"| {stream['records_per_second']} records/s ({stream['seconds']} s, {stream['lost']} lost) | | |"
    )
    for name, value in figures.get("other_benchmarks", {}).items():
        rows.append(f"| {name} | {value} | | |")
    steps = [
        "| offered req/s | achieved req/s | p50 ms | p99 ms | max ms | errors | generator lag p99 ms "
        "| CPU cores: stage / model servers / generator / other |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step in knee["steps"]:
        cpu = step["cpu_cores"]
        steps.append(
            f"| {step['offered_rps']:g} | {step['achieved_rps']:g} | {step['p50_ms']} | {step['p99_ms']} "
            f"| {step['max_ms']} | {step['errors']} ({step['error_ratio']:.1%}) | {step['send_lag_p99_ms']} "
            f"| {cpu.get('stage', 0):g} / {cpu.get('model_servers', 0):g} / {cpu.get('generator', 0):g} "
            f"/ {cpu.get('other', 0):g} |"
        )
    machine = figures["machine"]
    header = (
        f"Measured {figures['measured_at']} on {machine['cpus']} CPUs, Python {machine['python']}: the local "
        "stage in one process, its model servers in two more, the open-loop load generator (httpx) in a "
        "fourth, all on the same cores (the last column is whatever else the machine ran)."
    )
    parts = [
        header,
        "",
        *rows,
        "",
        f"Knee search (each step {knee['step_seconds']:g} s, open loop):",
        "",
        *steps,
    ]
    profile = figures.get("profile")
    if profile:
        parts += ["", profile_markdown(profile)]
    return "\n".join(parts) + "\n"


GENERIC_COMPONENTS = frozenset({"other", "threads and queues", "asyncio event loops"})  # in every stack


def profile_markdown(profile: Mapping[str, Any]) -> str:
    lines = [
        f"Profile (py-spy, GIL holders only, {profile['seconds']:g} s at {profile['offered_rps']:g} req/s; "
        "share of each process's GIL samples):",
        "",
        "| process | GIL held | components on the stack (inclusive) | innermost frame in (self) |",
        "|---|---|---|---|",
    ]
    for process in profile["processes"][:3]:
        busy = process["gil_busy_fraction"]
        inclusive = [(k, v) for k, v in process["inclusive"].items() if k not in GENERIC_COMPONENTS]
        leaf = list(process.get("leaf", {}).items())
        lines.append(
            f"| {process['process'][:60]} | {'' if busy is None else f'{busy:.0%}'} "
            f"| {', '.join(f'{k} {v:.0%}' for k, v in inclusive[:7])} "
            f"| {', '.join(f'{k} {v:.0%}' for k, v in leaf[:5])} |"
        )
    return "\n".join(lines)


def chart(figures: Mapping[str, Any], output: Path) -> None:
    """Latency (p50, p99) against the offered rate, with the floor, the p99 limit and the knee."""
    import matplotlib  # noqa: PLC0415 - only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    points = [figures["end_to_end"], *figures["knee"]["steps"]]
    rates = [p["offered_rps"] for p in points]
    figure, axis = plt.subplots(figsize=(8, 4.5))
    axis.plot(rates, [p["p50_ms"] for p in points], marker="o", label="end to end p50")
    axis.plot(rates, [p["p99_ms"] for p in points], marker="o", label="end to end p99")
    failed = [p for p in points if p["errors"]]
    if failed:
        axis.scatter(
            [p["offered_rps"] for p in failed],
            [p["p99_ms"] for p in failed],
            color="red",
            zorder=3,
            label="step with errors",
        )
    axis.axhline(figures["model_only"]["p50_ms"], color="grey", linestyle=":", label="model-only p50 (floor)")
    axis.axhline(figures["targets"]["knee_p99_ms"], color="red", linestyle="--", label="p99 limit")
    knee = figures["knee"]["rps"]
    if knee is not None:
        axis.axvline(knee, color="green", linestyle="--", label=f"knee {knee:g} req/s")
    axis.set_yscale("log")
    axis.set_xlabel("offered rate, requests/s (open loop)")
    axis.set_ylabel("latency, ms (log)")
    axis.set_title("Local stage: POST /predict latency vs rate (2 cores shared)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100)
    plt.close(figure)


# ----- the stage, in its own process -----


class GcPauses:
    """The stage process's garbage-collection pauses (``gc.callbacks``), read and reset on SIGUSR1.

    A collection stops every thread of the process (it holds the GIL), so its pauses add to the
    latency of every request in flight.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0

    def callback(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((int(info["generation"]), time.perf_counter() - self._started))

    def dump(self, *_: object) -> None:
        pauses, self.pauses = self.pauses, []
        self.out.write_text(json.dumps(gc_summary(pauses)) + "\n")


def gc_summary(pauses: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """Count, total and longest pause (ms) of collections, and the same for full (generation 2) ones."""
    full = [seconds for generation, seconds in pauses if generation == 2]
    return {
        "collections": len(pauses),
        "total_ms": round(sum(seconds for _, seconds in pauses) * 1000, 1),
        "max_ms": round(max((seconds for _, seconds in pauses), default=0.0) * 1000, 1),
        "full_collections": len(full),
        "full_max_ms": round(max(full, default=0.0) * 1000, 1),
    }


def serve_stage(work: Path, info_file: Path, *, gc_freeze: bool = True) -> int:
    """Start the local stage (working directory ``work``), write its info, serve until stdin closes.

    SIGUSR1 writes the GC pauses since the last one to ``work/gc.json``. ``gc_freeze``: the stage's
    own ``freeze_startup`` (start-up objects moved out of the collector's scans; on by default).
    """
    import gc  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    from local.stage import LocalStage  # noqa: PLC0415 - only this subcommand needs the stage

    warnings.filterwarnings("ignore", module="moto")
    stage = LocalStage(work=work, log=lambda _line: None, freeze_startup=gc_freeze)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    pauses = GcPauses(work / "gc.json")
    try:
        info = stage.start()
        gc.callbacks.append(pauses.callback)
        signal.signal(signal.SIGUSR1, pauses.dump)
        info_file.write_text(json.dumps({**asdict(info), "pid": os.getpid()}) + "\n")

        # serve until the benchmark closes our stdin (or SIGTERM)
        def wait_for_eof() -> None:
            sys.stdin.read()
            stopping.set()

        threading.Thread(target=wait_for_eof, daemon=True).start()
        while not stopping.wait(0.5):  # a timed wait: the main thread runs signal handlers
            pass
    finally:
        stage.stop()
    return 0


class StageProcess:
    """``serve-stage`` as a child process; its output (handler logs, EMF) goes to a file."""

    def __init__(self, work: Path, *, gc_freeze: bool = True) -> None:
        self.work = work
        self.gc_freeze = gc_freeze
        self.info_file = work / "bench-stage.json"
        self.output = work / "bench-stage.out"
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def start(self, timeout: float = 180.0) -> dict[str, Any]:
        self.work.mkdir(parents=True, exist_ok=True)
        self.info_file.unlink(missing_ok=True)
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tools.bench_pipeline",
                    "serve-stage",
                    str(self.work),
                    str(self.info_file),
                    *([] if self.gc_freeze else ["--no-gc-freeze"]),
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self.info_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"the stage exited ({self.process.returncode}); see {self.output}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stage was not ready within {timeout:.0f} s; see {self.output}")
            time.sleep(0.2)
        self.info = json.loads(self.info_file.read_text())
        return self.info

    @property
    def pid(self) -> int:
        assert self.process is not None  # noqa: S101 - started first
        return self.process.pid

    def children(self) -> list[int]:
        """The model server processes (the stage's children)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == self.pid:
                    found.append(int(entry.name))
        return found

    def gc_pauses(self) -> dict[str, Any]:
        """The stage's GC pauses since the last call (the first call only resets)."""
        out = self.work / "gc.json"
        out.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                summary: dict[str, Any] = json.loads(out.read_text())
            except (OSError, ValueError):  # not written yet, or half written
                time.sleep(0.02)
                continue
            return summary
        return {}

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


class CpuMeter:
    """CPU jiffies of the stage, its model servers, this process and the machine, read around a step."""

    def __init__(self, stage: StageProcess) -> None:
        self.stage = stage
        self.model_servers = stage.children()

    def read(self) -> tuple[dict[str, int], tuple[int, int]]:
        def ticks(pid: int) -> int:
            try:
                return process_ticks(Path(f"/proc/{pid}/stat").read_text())
            except (OSError, ValueError):
                return 0

        groups = {
            "stage": ticks(self.stage.pid),
            "model_servers": sum(ticks(pid) for pid in self.model_servers),
            "generator": ticks(os.getpid()),
        }
        return groups, cpu_ticks(Path("/proc/stat").read_text())


# ----- measurements -----


class Bench:
    def __init__(self, stage: StageProcess, rows: list[dict[str, float]]) -> None:
        import httpx  # noqa: PLC0415

        self.stage = stage
        self.info = stage.info
        self.rows = rows
        self.next_row = 0
        self.httpx = httpx
        self.cpu = CpuMeter(stage)
        self.weights: dict[str, float] = {}
        self.last_gc: dict[str, Any] = {}
        self.last_samples: list[Sample] = []

    def payload(self) -> bytes:
        row = self.rows[self.next_row % len(self.rows)]
        self.next_row += 1
        return json.dumps({"instances": [row]}).encode()

    def client(self) -> Any:
        limits = self.httpx.Limits(max_connections=512, max_keepalive_connections=512)
        return self.httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_SECONDS)

    def version_weights(self) -> dict[str, float]:
        """Model version -> the endpoint's current weight of the variant serving it (from the account)."""
        import boto3  # noqa: PLC0415

        sagemaker = boto3.client(
            "sagemaker",
            endpoint_url=self.info["moto_url"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the emulated account's dummy credentials
        )
        endpoint_name = self.info["outputs"]["ml-pipeline-inference-local"]["EndpointName"]
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        weights = {
            v["VariantName"]: float(v.get("CurrentWeight", 0.0)) for v in endpoint["ProductionVariants"]
        }
        config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        versions: dict[str, float] = {}
        for variant in config["ProductionVariants"]:
            model = sagemaker.describe_model(ModelName=variant["ModelName"])
            version = model["PrimaryContainer"]["Environment"]["MODEL_VERSION"]
            versions[version] = versions.get(version, 0.0) + weights.get(variant["VariantName"], 0.0)
        return versions

    def warm_up(self) -> None:
        """One request per path first: the handlers' first import and first clients are not load."""
        import httpx  # noqa: PLC0415

        from local.smoke import sample_rows  # noqa: PLC0415

        with httpx.Client(timeout=30) as warm:
            for row in sample_rows(3):
                for path in ("/predict", "/predict/stream"):
                    warm.post(
                        f"{self.info['api_url']}{path}",
                        json={"instances": [row]},
                        headers={"x-api-key": self.info["api_key"]},
                    ).raise_for_status()

    def step(self, rate: float, seconds: float, *, model_only: bool = False) -> StepResult:
        """A paced run at ``rate`` for ``seconds``: end to end (or straight to the model servers)."""
        run = self.model_only if model_only else self.end_to_end
        samples, cpu = run(rate, seconds)
        self.last_samples = samples
        result = step_result(rate, samples, cpu)
        result.stage_gc = self.last_gc
        return result

    async def _run(
        self, send: Callable[[Any, int], Awaitable[tuple[bool, str | None]]], rate: float, count: int
    ) -> tuple[list[Sample], dict[str, float]]:
        async with self.client() as client:
            self.stage.gc_pauses()
            before, machine0 = self.cpu.read()
            samples = await paced(lambda index: send(client, index), rate, count)
            after, machine1 = self.cpu.read()
            self.last_gc = self.stage.gc_pauses()
        return samples, cpu_split(before, after, (machine0, machine1))

    def model_only(self, rate: float, seconds: float) -> tuple[list[Sample], dict[str, float]]:
        weights = self.weights = self.version_weights()
        servers = {v: url for v, url in self.info["model_servers"].items() if weights.get(v, 0) > 0}
        names = sorted(servers)
        draw = random.Random(7)  # noqa: S311
        count = round(rate * seconds)
        chosen = draw.choices(names, weights=[weights[n] for n in names], k=count)
        bodies = [self.payload() for _ in range(count)]

        async def send(client: Any, index: int) -> tuple[bool, str | None]:
            version = chosen[index]
            answer = await client.post(
                f"{servers[version]}/invocations",
                content=bodies[index],
                headers={"content-type": "application/json", "accept": "application/json"},
            )
            return answer.status_code == 200, version

        return asyncio.run(self._run(send, rate, count))

    def end_to_end(self, rate: float, seconds: float) -> tuple[list[Sample], dict[str, float]]:
        count = round(rate * seconds)
        bodies = [self.payload() for _ in range(count)]
        url = f"{self.info['api_url']}/predict"
        headers = {"x-api-key": self.info["api_key"], "content-type": "application/json"}

        async def send(client: Any, index: int) -> tuple[bool, str | None]:
            answer = await client.post(url, content=bodies[index], headers=headers)
            if answer.status_code != 200:
                return False, None
            return True, str(answer.json().get("modelVersion"))

        return asyncio.run(self._run(send, rate, count))

    def stream(self, records: int, concurrency: int = 20, timeout: float = 120.0) -> dict[str, Any]:
        """A burst of ``records`` stream requests: records/s from the first put to the last one stored."""
        import boto3  # noqa: PLC0415

        table = boto3.resource(
            "dynamodb",
            endpoint_url=self.info["moto_url"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the emulated account's dummy credentials
        ).Table(self.info["outputs"]["ml-pipeline-data-local"]["PredictionsTableName"])
        bodies = [self.payload() for _ in range(records)]
        url = f"{self.info['api_url']}/predict/stream"
        headers = {"x-api-key": self.info["api_key"], "content-type": "application/json"}

        async def put_all() -> list[str]:
            gate = asyncio.Semaphore(concurrency)
            async with self.client() as client:

                async def put(body: bytes) -> str:
                    async with gate:
                        answer = await client.post(url, content=body, headers=headers)
                        answer.raise_for_status()
                        return str(answer.json()["predictionIds"][0])

                return list(await asyncio.gather(*(put(b) for b in bodies)))

        started = time.perf_counter()
        ids = asyncio.run(put_all())
        put_seconds = time.perf_counter() - started
        pending = list(ids)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            while pending:
                found = table.query(
                    KeyConditionExpression="predictionId = :id",
                    ExpressionAttributeValues={":id": pending[0]},
                    Limit=1,
                )["Items"]
                if not found:
                    break
                pending.pop(0)
            if pending:
                time.sleep(0.05)
        seconds = time.perf_counter() - started
        stored = records - len(pending)
        return {
            "records": records,
            "put_concurrency": concurrency,
            "put_seconds": round(put_seconds, 2),
            "puts_per_second": round(records / put_seconds, 1),
            "seconds": round(seconds, 2),
            "records_per_second": round(stored / seconds, 1),
            "lost": len(pending),
        }


def _by_version(samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
    versions = sorted({s.version for s in samples if s.ok and s.version})
    return {
        v: {
            "requests": sum(1 for s in samples if s.version == v and s.ok),
            **summarize([s.latency_ms for s in samples if s.version == v and s.ok]),
        }
        for v in versions
    }


def profile_step(bench: Bench, rate: float, seconds: float, output: Path) -> dict[str, Any] | None:
    """A step at ``rate`` with py-spy sampling the stage and its model servers (GIL holders only)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not installed (dependency group 'profile'): no profile", flush=True)
        return None
    sample_rate = 100
    raw = output.with_suffix(".txt")
    raw.parent.mkdir(parents=True, exist_ok=True)
    duration = max(1, math.floor(seconds))
    command = [
        spy,
        "record",
        "--pid",
        str(bench.stage.pid),
        "--subprocesses",
        "--gil",
        "--threads",
        "--nonblocking",
        "--rate",
        str(sample_rate),
        "--duration",
        str(duration),
        "--format",
        "raw",
        "--output",
        str(raw),
    ]
    with tempfile.TemporaryFile() as log:
        spying = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # py-spy attaches
        step = bench.step(rate, seconds)
        spying.wait(timeout=seconds + 30)
        log.seek(0)
        spy_output = log.read().decode(errors="replace")
    if spying.returncode != 0 or not raw.exists():
        print(f"py-spy failed ({spying.returncode}): {spy_output[-500:]}", flush=True)
        return None
    profiles = aggregate_profile(raw.read_text().splitlines(), possible_samples=sample_rate * duration)
    return {
        "offered_rps": rate,
        "seconds": duration,
        "sample_rate_hz": sample_rate,
        "raw_file": str(raw.relative_to(ROOT)) if raw.is_relative_to(ROOT) else str(raw),
        "processes": [asdict(p) for p in profiles],
        "step": step.as_dict(),
    }


def _other_benchmarks(directory: Path) -> dict[str, str]:
    """Headline figures of the handler and synth benchmarks of the same run, when their JSON is there."""
    figures: dict[str, str] = {}
    handlers, synth = directory / "handlers.json", directory / "synth.json"
    if handlers.exists():
        data = json.loads(handlers.read_text())
        cold = data.get("cold_init_ms", {})
        for name, value in cold.items():
            figures[f"handler cold init, {name} (see handlers.md)"] = f"{value['median']} ms"
    if synth.exists():
        data = json.loads(synth.read_text())
        if "synth_all_seconds" in data:
            figures["synth of all stages (see synth.md)"] = f"{data['synth_all_seconds']} s"
    return figures


def search_knee(bench: Bench, steps: Sequence[float], seconds: float) -> list[StepResult]:
    """Step the rate up until a step breaks the knee's criterion (that step is the last one)."""
    stepped: list[StepResult] = []
    for rate in steps:
        time.sleep(1.0)  # the previous step's stragglers drain
        step = bench.step(rate, seconds)
        stepped.append(step)
        print(
            f"step {rate:g} req/s: achieved {step.achieved_rps}, p50 {step.p50_ms} ms, p99 {step.p99_ms} ms, "
            f"errors {step.errors}/{step.requests}, cpu {step.cpu_cores}, stage gc {step.stage_gc}",
            flush=True,
        )
        if not step.passes(TARGETS["knee_p99_ms"]):
            break
    return stepped


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from model.data import load_dataset  # noqa: PLC0415

    dataset = load_dataset()
    base = [dict(zip(dataset.feature_names, r, strict=True)) for r in dataset.train.features.tolist()]
    steps = [float(s) for s in args.steps.split(",")]
    needed = round(PEAK_RPS * args.peak_seconds) * 2 + sum(round(r * args.step_seconds) for r in steps)
    needed += args.stream_records + round(args.profile_rps * args.step_seconds) + 100
    stage = StageProcess(args.work, gc_freeze=args.gc_freeze)
    started = time.perf_counter()
    context = measurement_context()
    try:
        info = stage.start()
        print(f"stage ready in {info['started_in_seconds']} s (pid {stage.pid})", flush=True)
        bench = Bench(stage, unique_rows(base, needed))
        bench.warm_up()
        floor = bench.step(PEAK_RPS, args.peak_seconds, model_only=True)
        print(f"model only at {PEAK_RPS} req/s: p50 {floor.p50_ms} ms, p99 {floor.p99_ms} ms", flush=True)
        floor_versions = _by_version(bench.last_samples)
        e2e = bench.step(PEAK_RPS, args.peak_seconds)
        e2e_versions = _by_version(bench.last_samples)
        print(f"end to end at {PEAK_RPS} req/s: p50 {e2e.p50_ms} ms, p99 {e2e.p99_ms} ms", flush=True)
        stepped = search_knee(bench, steps, args.step_seconds)
        time.sleep(1.0)
        stream = bench.stream(args.stream_records)
        print(f"stream: {stream}", flush=True)
        profile: dict[str, Any] | None = None
        if args.profile:
            time.sleep(1.0)
            profile = profile_step(
                bench, args.profile_rps, args.step_seconds, args.output.with_name("pipeline-profile")
            )
    finally:
        stage.stop()
    knee = find_knee(stepped, TARGETS["knee_p99_ms"])
    broken = next((s.offered_rps for s in stepped if not s.passes(TARGETS["knee_p99_ms"])), None)
    overhead = round(e2e.p50_ms - floor.p50_ms, 2)
    return {
        **context,
        "method": (
            "open-loop paced arrivals (request i due at start + i/rate, latency from its due time), "
            "httpx asyncio generator in its own process; unique payloads (the answer cache never answers); "
            "the stage (moto, API emulation, handlers, router) in one process, one model server process "
            "per version; all on the same cores"
        ),
        "stage_started_in_seconds": info["started_in_seconds"],
        "stage_gc_freeze": args.gc_freeze,
        "model_only": {**floor.as_dict(), "version_weights": bench.weights, "by_version": floor_versions},
        "end_to_end": {
            **e2e.as_dict(),
            "by_version": e2e_versions,
            "overhead_p50_ms": overhead,
            "overhead_ratio": round(e2e.p50_ms / floor.p50_ms, 2),
        },
        "knee": {
            "rps": knee,
            "broken_at_rps": broken,
            "criterion": f"p99 <= {TARGETS['knee_p99_ms']:g} ms and no errors",
            "step_seconds": args.step_seconds,
            "steps": [s.as_dict() for s in stepped],
        },
        "stream": stream,
        "profile": profile,
        "other_benchmarks": _other_benchmarks(args.output.parent),
        "targets": TARGETS,
        "met": {
            "overhead_p50_ms": overhead <= TARGETS["overhead_p50_ms"],
            "knee_rps": knee is not None and knee >= TARGETS["knee_rps"],
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve-stage"]:
        return serve_stage(Path(argv[1]), Path(argv[2]), gc_freeze="--no-gc-freeze" not in argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("output", type=Path, help="JSON file; .md and .png are written beside it")
    parser.add_argument(
        "--work",
        type=Path,
        default=ROOT / "build" / "bench" / "stage",
        help="the stage's working directory (its own, not build/local)",
    )
    parser.add_argument("--peak-seconds", type=float, default=25.0, help="floor and 10x-peak runs")
    parser.add_argument(
        "--steps", default=",".join(f"{s:g}" for s in DEFAULT_STEPS), help="req/s, comma-separated"
    )
    parser.add_argument("--step-seconds", type=float, default=8.0)
    parser.add_argument("--stream-records", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="also profile the stage with py-spy")
    parser.add_argument("--profile-rps", type=float, default=100.0)
    parser.add_argument(
        "--no-gc-freeze",
        dest="gc_freeze",
        action="store_false",
        help="run the stage without freezing its start-up objects out of the garbage collector",
    )
    args = parser.parse_args(argv)
    figures = measure(args)
    write_figures(args.output, figures, markdown(figures))
    chart(figures, args.output.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
