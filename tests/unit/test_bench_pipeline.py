"""The pipeline benchmark's pure parts: statistics, payloads, the open-loop pacing, the knee, CPU and
profile accounting, the report. No stage and no timing assertions: the figures are measured by
``nox -s bench``, never asserted."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from tools import bench_pipeline as bench
from tools.bench_pipeline import Sample, StepResult


def _step(rate: float, p99: float, errors: int = 0, requests: int = 100) -> StepResult:
    return StepResult(
        offered_rps=rate,
        seconds=8.0,
        requests=requests,
        errors=errors,
        achieved_rps=rate,
        p50_ms=p99 / 4,
        p99_ms=p99,
        max_ms=p99 * 2,
        mean_ms=p99 / 3,
        send_lag_p99_ms=1.0,
        cpu_cores={"stage": 0.5, "model_servers": 0.1, "generator": 0.1, "machine": 0.9, "other": 0.2},
    )


# -- statistics ------------------------------------------------------------------------------


def test_percentiles_interpolate_between_ranks():
    samples = [float(v) for v in range(1, 101)]  # 1..100
    assert bench.percentile(samples, 0.5) == pytest.approx(50.5)
    assert bench.percentile(samples, 0.99) == pytest.approx(99.01)
    assert bench.percentile(samples, 1.0) == 100.0
    assert bench.percentile([7.0], 0.99) == 7.0
    assert bench.percentile([3.0, 1.0, 2.0], 0.5) == 2.0  # unsorted input
    with pytest.raises(ValueError, match="no samples"):
        bench.percentile([], 0.5)


def test_a_summary_has_the_centiles_max_and_mean():
    summary = bench.summarize([10.0, 20.0, 30.0, 40.0])
    assert summary == {"p50_ms": 25.0, "p99_ms": 39.7, "max_ms": 40.0, "mean_ms": 25.0}


# -- payloads --------------------------------------------------------------------------------


def test_payload_rows_are_unique_and_within_the_range_of_the_source_rows():
    source = [{"a": 1.0, "b": 10.0}, {"a": 3.0, "b": 30.0}, {"a": 2.0, "b": 50.0}]
    rows = bench.unique_rows(source, 500)
    assert len(rows) == 500
    assert len({json.dumps(r, sort_keys=True) for r in rows}) == 500
    for row in rows:
        assert set(row) == {"a", "b"}
        assert 1.0 <= row["a"] <= 3.0
        assert 10.0 <= row["b"] <= 50.0
    assert bench.unique_rows(source, 20, seed=1) == bench.unique_rows(source, 20, seed=1)
    assert bench.unique_rows(source, 20, seed=1) != bench.unique_rows(source, 20, seed=2)


def test_payload_rows_need_two_rows_to_mix():
    with pytest.raises(ValueError, match="two rows"):
        bench.unique_rows([{"a": 1.0}], 3)


# -- the open-loop generator -----------------------------------------------------------------


def test_paced_requests_do_not_wait_for_the_earlier_ones():
    """Open loop: every request is sent while none has been answered (a closed loop would stall)."""
    count = 8
    started: list[int] = []

    async def scenario() -> list[Sample]:
        everyone_sent = asyncio.Event()

        async def send(index: int) -> tuple[bool, str | None]:
            started.append(index)
            if len(started) == count:
                everyone_sent.set()
            await asyncio.wait_for(everyone_sent.wait(), timeout=10)
            return True, "v1"

        return await bench.paced(send, rate=400.0, count=count)

    samples = asyncio.run(scenario())
    assert sorted(started) == list(range(count))
    assert len(samples) == count
    assert all(s.ok and s.version == "v1" for s in samples)
    dues = [s.due for s in samples]
    assert dues == sorted(dues)
    assert dues[-1] - dues[0] == pytest.approx((count - 1) / 400.0)


def test_paced_latency_runs_from_the_due_time_and_failures_are_errors():
    clock = iter([100.0, *[100.0 + i for i in range(1, 40)]])

    def fake_clock() -> float:
        return next(clock)

    async def send(index: int) -> tuple[bool, str | None]:
        if index == 1:
            raise OSError("connection refused")
        return index != 2, None

    samples = asyncio.run(bench.paced(send, rate=1000.0, count=3, clock=fake_clock))
    assert [s.ok for s in samples] == [True, False, False]
    for sample in samples:
        assert sample.latency_ms > sample.send_lag_ms >= 0  # answered after it was sent, late or not


# -- steps and the knee ----------------------------------------------------------------------


def test_a_step_counts_errors_in_its_latency_and_its_achieved_rate():
    samples = [Sample(due=i * 0.1, send_lag_ms=0.5, latency_ms=20.0, ok=i != 3) for i in range(10)]
    step = bench.step_result(10.0, samples, {"stage": 0.5})
    assert (step.requests, step.errors) == (10, 1)
    assert step.error_ratio == pytest.approx(0.1)
    assert step.seconds == pytest.approx(0.92)  # first due to last answer
    assert step.achieved_rps == pytest.approx(9 / 0.92, abs=0.1)
    assert step.p50_ms == 20.0
    assert step.stage_cpu_ms_per_request == pytest.approx(0.5 * 1000 / step.achieved_rps, abs=0.01)
    assert step.as_dict()["error_ratio"] == 0.1
    with pytest.raises(ValueError, match="without requests"):
        bench.step_result(10.0, [], {})


def test_the_knee_is_the_last_rate_before_the_first_broken_step():
    steps = [_step(25, 40), _step(50, 60), _step(75, 140), _step(100, 80)]
    assert bench.find_knee(steps, 100.0) == 50  # a later good step does not count
    assert bench.find_knee([_step(25, 40), _step(50, 60, errors=1)], 100.0) == 25
    assert bench.find_knee([_step(25, 400)], 100.0) is None
    assert bench.find_knee([_step(25, 40), _step(50, 99)], 100.0) == 50
    assert bench.find_knee([], 100.0) is None


# -- CPU accounting --------------------------------------------------------------------------


def test_cpu_ticks_of_the_machine_and_a_process():
    proc_stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\nintr 1 2 3\n"
    assert bench.cpu_ticks(proc_stat) == (160, 1000)  # busy = total - idle - iowait
    pid_stat = "4242 (python -m x (y)) S 1 4242 4242 0 -1 4194304 100 0 0 0 321 45 0 0 20 0 9 0 1"
    assert bench.process_ticks(pid_stat) == 321 + 45
    with pytest.raises(ValueError, match="no aggregate"):
        bench.cpu_ticks("cpu0 1 2 3 4\n")


def test_cpu_split_gives_cores_per_group_and_the_rest_of_the_machine(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    before = {"stage": 100, "model_servers": 10, "generator": 5}
    after = {"stage": 180, "model_servers": 20, "generator": 15}
    # 200 jiffies of all CPUs = 100 per core; 150 busy
    split = bench.cpu_split(before, after, ((1000, 5000), (1150, 5200)))
    assert split == {"stage": 0.8, "model_servers": 0.1, "generator": 0.1, "machine": 1.5, "other": 0.5}
    assert bench.cpu_split(before, after, ((1000, 5000), (1000, 5000))) == {}


# -- the profile -----------------------------------------------------------------------------


RAW_PROFILE = [
    'process 10:"python -m tools.bench_pipeline serve-stage";thread (11): AnyIO worker thread;'
    "handler (stacks/inference/runtime/api/handler.py:110);_make_api_call (botocore/client.py:960) 6\n",
    'process 10:"python -m tools.bench_pipeline serve-stage";thread (12): Thread-3;'
    "DomainDispatcherApplication.__call__ (moto/moto_server/werkzeug_app.py:260);"
    "put_item (moto/dynamodb/models/table.py:500) 3\n",
    'process 10:"python -m tools.bench_pipeline serve-stage";thread (13): api;'
    "LocalRestApi.handle (local/api_gateway.py:600) 1\n",
    'process 10:"python -m tools.bench_pipeline serve-stage";process 20:"python -m model.server";'
    "thread (20): MainThread;predict_fn (model/inference.py:40) 4\n",
    "\n",
]


def test_a_py_spy_profile_is_aggregated_per_process_and_component():
    stage, model = bench.aggregate_profile(RAW_PROFILE, possible_samples=20)
    assert stage.process.startswith("process 10:")
    assert stage.samples == 10
    assert stage.gil_busy_fraction == 0.5
    assert stage.inclusive["handlers (stacks/inference/runtime)"] == 0.6
    assert stage.inclusive["botocore (boto3 clients)"] == 0.6
    assert stage.inclusive["moto DynamoDB"] == 0.3
    assert stage.inclusive["moto (other services, request dispatch)"] == 0.3
    assert stage.leaf == {
        "botocore (boto3 clients)": 0.6,
        "moto DynamoDB": 0.3,
        "API Gateway emulation (local/api_gateway.py)": 0.1,
    }
    assert stage.top_functions[0] == ("_make_api_call (botocore/client.py)", 0.6)
    assert model.process.startswith("process 20:")  # a child is its own process, not its parent's
    assert model.samples == 4
    assert model.leaf == {"model schema and server (model/)": 1.0}


def test_frames_parse_with_and_without_line_numbers():
    assert bench.parse_frame("Thread.run (threading.py:982)") == ("Thread.run", "threading.py")
    assert bench.parse_frame("<module> (model/server.py)") == ("<module>", "model/server.py")
    assert bench.parse_frame("weird frame") == ("weird frame", "")


def test_gc_pauses_are_summarized_with_the_full_collections_apart():
    summary = bench.gc_summary([(0, 0.001), (2, 0.25), (1, 0.004)])
    assert summary == {
        "collections": 3,
        "total_ms": 255.0,
        "max_ms": 250.0,
        "full_collections": 1,
        "full_max_ms": 250.0,
    }
    assert bench.gc_summary([])["max_ms"] == 0.0


def test_the_gc_recorder_times_each_collection_and_resets_on_dump(tmp_path):
    recorder = bench.GcPauses(tmp_path / "gc.json")
    recorder.callback("start", {"generation": 2})
    recorder.callback("stop", {"generation": 2})
    recorder.dump()
    first = json.loads((tmp_path / "gc.json").read_text())
    assert (first["collections"], first["full_collections"]) == (1, 1)
    recorder.dump()
    assert json.loads((tmp_path / "gc.json").read_text())["collections"] == 0


# -- the report ------------------------------------------------------------------------------


def _figures(knee: float | None, overhead: float) -> dict[str, Any]:
    steps = [_step(25, 40).as_dict(), _step(50, 60).as_dict(), _step(75, 150, errors=2).as_dict()]
    return {
        "measured_at": "2026-11-24T00:00:00+00:00",
        "machine": {"cpus": 2, "python": "3.11.7", "platform": "Linux"},
        "targets": bench.TARGETS,
        "model_only": {"offered_rps": 11.6, "requests": 290, "p50_ms": 4.0, "p99_ms": 9.0, "errors": 0},
        "end_to_end": {
            "offered_rps": 11.6,
            "requests": 290,
            "errors": 0,
            "p50_ms": 4.0 + overhead,
            "p99_ms": 60.0,
            "overhead_p50_ms": overhead,
            "overhead_ratio": round((4.0 + overhead) / 4.0, 2),
        },
        "knee": {"rps": knee, "broken_at_rps": 75.0, "step_seconds": 8.0, "steps": steps},
        "stream": {"records": 100, "records_per_second": 20.0, "seconds": 5.0, "lost": 0},
        "other_benchmarks": {"synth of all stages (see synth.md)": "7.6 s"},
        "profile": {
            "seconds": 8,
            "offered_rps": 60.0,
            "processes": [
                {
                    "process": 'process 10:"serve-stage"',
                    "gil_busy_fraction": 0.8,
                    "inclusive": {"moto DynamoDB": 0.3},
                }
            ],
        },
    }


def test_the_markdown_table_says_whether_each_target_is_met():
    missed = bench.markdown(_figures(knee=50.0, overhead=14.0))
    assert "| end-to-end p50 overhead over the floor | 14.0 ms (4.5x the floor) | <= 10 ms | no |" in missed
    assert "| 50 req/s | >= 100 req/s | no |" in missed
    assert "| 75 | 75 | 37.5 | 150 | 300 | 2 (2.0%) |" in missed
    assert "synth of all stages (see synth.md) | 7.6 s" in missed
    assert "moto DynamoDB 30%" in missed
    met = bench.markdown(_figures(knee=125.0, overhead=6.0))
    assert "| <= 10 ms | yes |" in met
    assert "| 125 req/s | >= 100 req/s | yes |" in met
    assert "below the first step" in bench.markdown(_figures(knee=None, overhead=6.0))


def test_the_chart_is_a_png(tmp_path):
    output = tmp_path / "pipeline.png"
    bench.chart(_figures(knee=50.0, overhead=14.0), output)
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_other_benchmarks_headlines_are_read_from_their_json(tmp_path):
    (tmp_path / "handlers.json").write_text(json.dumps({"cold_init_ms": {"api": {"median": 238.8}}}))
    (tmp_path / "synth.json").write_text(json.dumps({"synth_all_seconds": 7.59}))
    assert bench._other_benchmarks(tmp_path) == {
        "handler cold init, api (see handlers.md)": "238.8 ms",
        "synth of all stages (see synth.md)": "7.59 s",
    }
    assert bench._other_benchmarks(tmp_path / "missing") == {}
