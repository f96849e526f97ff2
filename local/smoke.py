"""``nox -s local -- --smoke``: every path of the local stage once, then exit (0 when all pass).

One sync prediction and one stream prediction, both read back; then ``mlpipe models promote``
and ``mlpipe models rollback`` through the event-driven path (the desired-state rule invokes the
deploy function, which reconciles, verifies and invalidates the answer cache), each checked by the
version the API serves afterwards. Every step prints what it saw.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from model.data import load_dataset

if TYPE_CHECKING:
    from local.stage import LocalStage, StageInfo


class SmokeFailureError(AssertionError):
    pass


def sample_rows(count: int) -> list[dict[str, float]]:
    dataset = load_dataset()
    return [
        dict(zip(dataset.feature_names, row, strict=True)) for row in dataset.test.features[:count].tolist()
    ]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailureError(message)


def read_back(api: httpx.Client, prediction_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """GET /predictions/{id} until it is stored (the stream path is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = api.get(f"/predictions/{prediction_id}")
        if answer.status_code == 200:
            record: dict[str, Any] = answer.json()
            return record
        _check(
            answer.status_code == 404, f"GET /predictions/{prediction_id}: {answer.status_code} {answer.text}"
        )
        if time.monotonic() > deadline:
            raise SmokeFailureError(f"{prediction_id} was not stored within {timeout:.0f} s")
        time.sleep(0.2)


def mlpipe(*command: str) -> str:
    """Run the real ``mlpipe`` CLI against the local stage (its deploy function reconciles)."""
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "mlpipe.cli",
            "--stage",
            "local",
            *command,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )
    _check(result.returncode == 0, f"mlpipe {' '.join(command)} exited {result.returncode}: {result.stderr}")
    return result.stdout.strip()


def served_version(api: httpx.Client, row: dict[str, float], variant: str | None) -> str:
    """The version that answers ``row`` on ``variant`` (None: wherever the endpoint's weights send it)."""
    params = {} if variant is None else {"variant": variant}
    answer = api.post("/predict", params=params, json={"instances": [row]})
    _check(answer.status_code == 200, f"POST /predict?variant={variant}: {answer.status_code} {answer.text}")
    version: str = answer.json()["modelVersion"]
    return version


def batch_run(rows: list[dict[str, float]]) -> str:
    """A small file through the batch state machine with ``mlpipe batch run``; its counts must add up."""
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / f"smoke-{uuid.uuid4().hex[:8]}.csv"
        with source.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        result = json.loads(mlpipe("--json", "batch", "run", str(source), "--timeout", "300"))
    totals = result["manifest"]["totals"]
    _check(
        (totals["read"], totals["predicted"], totals["failed"]) == (len(rows), len(rows), 0),
        f"batch run counts {totals} for {len(rows)} rows",
    )
    return f"mlpipe batch run of {len(rows)} rows: {totals['predicted']} predicted in {result['seconds']} s"


def run_smoke(stage: LocalStage, info: StageInfo) -> int:
    del stage  # the smoke test drives the stage from outside, as a client would
    row, other = sample_rows(2)
    steps: list[str] = []
    api = httpx.Client(base_url=info.api_url, headers={"x-api-key": info.api_key}, timeout=30)
    try:
        answer = api.post("/predict", json={"instances": [row]})
        _check(answer.status_code == 200, f"POST /predict: {answer.status_code} {answer.text}")
        sync = answer.json()
        sync_id = sync["predictions"][0]["predictionId"]
        steps.append(f"sync prediction {sync_id}: {sync['modelVersion']} on {sync['variant']}")

        queued = api.post("/predict/stream", json={"instances": [other]})
        _check(queued.status_code == 202, f"POST /predict/stream: {queued.status_code} {queued.text}")
        stream_id = queued.json()["predictionIds"][0]
        stored = read_back(api, stream_id)
        steps.append(f"stream prediction {stream_id}: stored by the consumer ({stored['modelVersion']})")
        again = read_back(api, sync_id)
        _check(again["modelVersion"] == sync["modelVersion"], f"read-back of {sync_id} differs: {again}")
        steps.append(f"read back {sync_id}")

        before = served_version(api, row, "ModelA")
        challenger = served_version(api, row, "ModelB")
        steps.append(f"ModelA serves {before}, ModelB {challenger}")
        steps.append(f"mlpipe models promote: {mlpipe('models', 'promote')}")
        # the promoted champion takes all traffic where it ran; the previous one waits at weight 0
        promoted = served_version(api, row, None)
        _check(
            promoted == challenger != before,
            f"after promote the endpoint serves {promoted}, expected {challenger} (a stale cached answer?)",
        )
        steps.append(f"all traffic served by {promoted} after promote")
        steps.append(f"mlpipe models rollback: {mlpipe('models', 'rollback')}")
        rolled_back = served_version(api, row, "ModelA")
        _check(rolled_back == before, f"after rollback ModelA serves {rolled_back}, expected {before}")
        steps.append(f"ModelA serves {rolled_back} after rollback")
        steps.append(batch_run(sample_rows(20)))
    except SmokeFailureError as failure:
        for step in steps:
            print(f"  ok   {step}", flush=True)
        print(f"  FAIL {failure}", flush=True)
        return 1
    finally:
        api.close()
    for step in steps:
        print(f"  ok   {step}", flush=True)
    print("smoke: every path worked", flush=True)
    return 0
