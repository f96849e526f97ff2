"""Load against a stage at 100,000 predictions/day rates (``nox -s load``; see ``tests/load/run.py``).

Users: the real-time API (``POST /predict``), the stream path (``POST /predict/stream`` then the
read-back) and feedback (a prediction, then ``POST /feedback``). Payloads are rows of the model's
own data set; a share of requests (``LOAD_REPEAT_SHARE``, default 0.2) repeats a small pool of
rows, so the API function's answer cache is exercised.

Shapes (``LOAD_SHAPE``), rates in requests/s (100,000/day = 1.16/s):

- ``steady``: 1.16/s for ``LOAD_SECONDS``;
- ``diurnal``: a day compressed into ``LOAD_SECONDS``, a sine between 0.25x and 4x the average;
- ``spike``: the average, then 10x for a sixth of the run, then the average;
- ``ramp``: from the average up in steps until ``LOAD_MAX_RPS`` (find the knee; read it off the
  report's per-step latency).

The arrival rate is set by the shape: every user waits ``users / rate`` seconds between tasks.
SLO gates (``LOAD_P99_MS``, ``LOAD_MAX_ERROR_RATIO``) are checked when the run ends: the exit
code is 1 and the message names the SLO that broke.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from locust import FastHttpUser, LoadTestShape, events, task

from model.data import load_dataset
from tests.load.shapes import AVERAGE_RPS, target_rps

SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
MAX_RPS = float(os.environ.get("LOAD_MAX_RPS", "150"))
REPEAT_SHARE = float(os.environ.get("LOAD_REPEAT_SHARE", "0.2"))
API_KEY = os.environ.get("LOAD_API_KEY", "")
USERS = int(os.environ.get("LOAD_USERS", "20"))

_dataset = load_dataset()
ROWS = [dict(zip(_dataset.feature_names, r, strict=True)) for r in _dataset.train.features.tolist()]
POOL = ROWS[:10]  # the repeated payloads
_rate = {"rps": AVERAGE_RPS}


def row() -> dict[str, float]:
    source = POOL if random.random() < REPEAT_SHARE else ROWS  # noqa: S311 - load mix, not security
    return dict(random.choice(source))  # noqa: S311


class StageUser(FastHttpUser):
    abstract = True

    def on_start(self) -> None:
        # users start together; without a random first wait they would fire in lock-step bursts
        time.sleep(self.wait_time())  # cooperative: locust patches time.sleep with gevent

    def wait_time(self) -> float:
        users = max(1, self.environment.runner.user_count if self.environment.runner else 1)
        return users / max(_rate["rps"], 0.01) * random.uniform(0.0, 2.0)  # noqa: S311 - spread arrivals

    def post(self, path: str, body: dict[str, Any], name: str | None = None) -> Any:
        return self.client.post(path, json=body, headers={"x-api-key": API_KEY}, name=name or path)


class PredictUser(StageUser):
    weight = 8

    @task
    def predict(self) -> None:
        self.post("/predict", {"instances": [row()]})


class StreamUser(StageUser):
    weight = 1

    @task
    def stream_and_read_back(self) -> None:
        answer = self.post("/predict/stream", {"instances": [row()]})
        if answer.status_code != 202:
            return
        prediction_id = answer.json()["predictionIds"][0]
        deadline = time.monotonic() + 10
        while True:
            # "not stored yet" (404) is the expected answer while the consumer works: not an error
            with self.client.get(
                f"/predictions/{prediction_id}",
                headers={"x-api-key": API_KEY},
                name="/predictions/{id} (stream read-back)",
                catch_response=True,
            ) as read:
                if read.status_code == 200:
                    read.success()
                    return
                if read.status_code != 404 or time.monotonic() > deadline:
                    read.failure(f"not stored within 10 s (last answer {read.status_code})")
                    return
                read.success()
            time.sleep(0.2)


class FeedbackUser(StageUser):
    weight = 1

    @task
    def predict_then_feedback(self) -> None:
        answer = self.post("/predict", {"instances": [row()]}, name="/predict (feedback)")
        if answer.status_code == 200:
            prediction = answer.json()["predictions"][0]
            self.post("/feedback", {"predictionId": prediction["predictionId"], "label": prediction["label"]})


class Shape(LoadTestShape):
    """Holds ``LOAD_USERS`` users and varies their pace to follow ``LOAD_SHAPE``'s request rate."""

    def tick(self) -> tuple[int, float] | None:
        rps = target_rps(os.environ.get("LOAD_SHAPE", "steady"), self.get_run_time(), SECONDS, MAX_RPS)
        if rps is None:
            return None
        _rate["rps"] = rps
        return USERS, USERS  # all users at once; their start is spread by the wait time


def slo_gate(environment: Any, **_kwargs: Any) -> None:
    total = environment.stats.total
    p99 = total.get_response_time_percentile(0.99) or 0.0
    limit_ms = float(os.environ.get("LOAD_P99_MS", "1000"))
    max_errors = float(os.environ.get("LOAD_MAX_ERROR_RATIO", "0.01"))
    broken = []
    if total.num_requests == 0:
        broken.append("no requests were made")
    if p99 > limit_ms:
        broken.append(f"p99 latency {p99:.0f} ms > {limit_ms:.0f} ms")
    if total.fail_ratio > max_errors:
        broken.append(f"error ratio {total.fail_ratio:.3%} > {max_errors:.1%}")
    summary = (
        f"{total.num_requests} requests, {total.total_rps:.2f}/s, p99 {p99:.0f} ms, "
        f"errors {total.fail_ratio:.3%}"
    )
    if broken:
        print(f"SLO BREACH: {'; '.join(broken)} ({summary})", flush=True)
        environment.process_exit_code = 1
    else:
        print(f"SLOs met: {summary}", flush=True)
        environment.process_exit_code = 0


events.quitting.add_listener(slo_gate)  # registered by call: the decorator form is untyped
