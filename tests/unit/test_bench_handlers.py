"""The handler benchmark runs and writes its report (shape only: timings are figures, not assertions)."""

from __future__ import annotations

import json

from tools import bench_handlers


def test_the_warm_loop_answers_every_request_through_the_fakes():
    samples = bench_handlers.warm_samples(requests=5, warmup=2)
    assert len(samples) == 5
    assert all(sample > 0 for sample in samples)


def test_the_cli_writes_json_and_a_markdown_table(tmp_path):
    output = tmp_path / "bench" / "handlers.json"
    assert bench_handlers.main([str(output), "--runs", "1", "--requests", "3", "--warmup", "1"]) == 0
    figures = json.loads(output.read_text())
    assert set(figures) == {
        "measured_at",
        "machine",
        "cold_init_ms",
        "cold_init_without_bytecode_ms",
        "import_breakdown_ms",
        "warm_api_overhead_us",
        "targets",
    }
    for key in ("cold_init_ms", "cold_init_without_bytecode_ms"):
        assert set(figures[key]) == {"api", "stream"}
        for cold in figures[key].values():
            assert len(cold["runs"]) == 1
            assert cold["median"] == cold["runs"][0]
    assert list(figures["import_breakdown_ms"]) == list(bench_handlers.BREAKDOWN)
    assert set(figures["warm_api_overhead_us"]) == {"trace_not_sampled", "trace_sampled"}
    for warm in figures["warm_api_overhead_us"].values():
        assert warm["requests"] == 3
        assert warm["warmup"] == 1
        assert {"p50", "p99", "mean"} <= set(warm)
    assert figures["targets"] == {"cold_init_ms": 300.0, "warm_overhead_us": 2000.0}

    table = output.with_suffix(".md").read_text().splitlines()
    assert "| figure | value | target | met |" in table
    figure_rows = [row for row in table if row.startswith(("| cold init", "| warm overhead"))]
    assert len(figure_rows) == 2 + 2 + 2 * 2
    assert all(row.rstrip(" |").endswith(("yes", "no")) for row in figure_rows)
    assert "| `boto3` |" in "\n".join(table)
