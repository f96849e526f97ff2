"""Batch throughput: a whole day's volume through the batch run on the local stage.

    python -m tools.bench_batch reports/bench/batch.json [--rows 100000]

Writes a CSV of ``--rows`` rows of the model's own held-out data (cycled), starts the local stage,
and runs the batch state machine for that file, as ``nox -s local -- --batch FILE`` does: the
file is larger than ``inline_max_bytes``, so the Choice sends it to AWS Batch, whose job runs the
job definition's command as a process on this machine against the emulated account (moto), the
SageMaker runtime router and the model servers. Records the run's wall time from StartExecution
to its end, rows/s, the route taken and the run manifest's counts; the target is the whole file
in 60 s or less on this machine.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from local.stage import LocalStage
from model.data import load_dataset
from shared.config import get_config
from tools.bench_report import measurement_context, write_figures

TARGET_SECONDS = 60.0


def write_input(path: Path, rows: int) -> int:
    """A CSV with a header of feature names and ``rows`` rows of the held-out split; returns bytes."""
    dataset = load_dataset()
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(dataset.feature_names)
        for row in itertools.islice(itertools.cycle(dataset.test.features.tolist()), rows):
            writer.writerow(row)
    return path.stat().st_size


def table(figures: dict[str, Any]) -> str:
    run = figures["run"]
    met = "met" if run["seconds"] <= TARGET_SECONDS else "not met"
    return "\n".join(
        [
            "| batch figure | value | target |",
            "|---|---|---|",
            f"| {figures['rows']:,} rows ({figures['input_mib']} MiB), route | {run['route']} | Batch |",
            f"| run wall time (StartExecution to end) | {run['seconds']} s "
            f"| ≤ {TARGET_SECONDS:.0f} s ({met}) |",
            f"| throughput | {run['rows_per_second']:,} rows/s | ≥ {figures['rows'] / TARGET_SECONDS:,.0f} |",
            f"| predicted / rejected / failed | {run['predicted']:,} / {run['rejected']:,} / "
            f"{run['failed']:,} | {figures['rows']:,} / 0 / 0 |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("output", type=Path, help="JSON file of figures (a .md table is written beside it)")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="moto")
    config = get_config("local")
    stage = LocalStage(log=lambda _line: None)
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / f"bench-{args.rows}.csv"
        size = write_input(source, args.rows)
        try:
            stage.start()
            result = stage.run_batch(source, timeout=1800)
        finally:
            stage.stop()
    if result["status"] != "SUCCEEDED":
        print(f"batch run {result['status']}: {result['error']}: {result['cause']}", file=sys.stderr)
        return 1
    (entry,) = result["manifest"]["inputs"]
    figures = {
        **measurement_context(),
        "rows": args.rows,
        "input_bytes": size,
        "input_mib": round(size / 2**20, 1),
        "inline_max_bytes": config.batch.inline_max_bytes,
        "job": config.batch.job.model_dump(),
        "run": {
            "route": entry["mode"],
            "seconds": result["seconds"],
            "rows_per_second": round(args.rows / result["seconds"]),
            "read": entry["read"],
            "predicted": entry["predicted"],
            "rejected": entry["rejected"],
            "failed": entry["failed"],
            "execution": result["execution"],
        },
        "target_seconds": TARGET_SECONDS,
    }
    write_figures(args.output, figures, table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
