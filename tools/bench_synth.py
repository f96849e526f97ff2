"""Benchmark: synth time of every environment (each alone and all together), written as JSON + Markdown.

Also the size of the Lambda packages (code asset and dependencies layer, unzipped and zipped),
and the wall time of the default test run when ``nox -s bench`` measured it
(``--record-test-run SECONDS``). Figures are written, never asserted: targets are compared in
the report (synth of all stages <= 30 s, default test run <= 6 min warm, on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from shared.config import ENVIRONMENTS
from shared.infra.python_function import build_dependencies, locked_requirements, python_files
from stacks.inference.stack import RUNTIME_SOURCES
from tools.bench_report import measurement_context, write_figures

TARGETS = {"synth_all_seconds": 30.0, "default_test_run_seconds": 360.0}
ROOT = Path(__file__).resolve().parent.parent


def _timed_synth(environments: list[str] | None) -> float:
    """Synth in a fresh interpreter, as `cdk synth` would: imports and jsii start-up included."""
    with tempfile.TemporaryDirectory() as out:
        args = [sys.executable, "-m", "tools.synth", str(Path(out) / "cdk.out")]
        if environments:
            args.append(f"--environments={','.join(environments)}")
        started = time.perf_counter()
        subprocess.run(args, check=True, cwd=ROOT, capture_output=True)
        return time.perf_counter() - started


def _zipped_bytes(files: list[Path], root: Path) -> int:
    """Size of a deflate zip of ``files`` (what Lambda receives, as ``cdk deploy`` zips assets)."""
    with tempfile.TemporaryDirectory() as work:
        archive = Path(work) / "asset.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
            for path in files:
                out.write(path, path.relative_to(root))
        return archive.stat().st_size


def lambda_package_sizes() -> dict[str, int]:
    """Unzipped and zipped bytes of the functions' code asset and of the dependencies layer."""
    layer = build_dependencies(locked_requirements())
    layer_files = [p for p in layer.rglob("*") if p.is_file()]
    code_files = [ROOT / f for f in python_files(RUNTIME_SOURCES)]
    return {
        "code_bytes": sum(p.stat().st_size for p in code_files),
        "code_zipped_bytes": _zipped_bytes(code_files, ROOT),
        "layer_bytes": sum(p.stat().st_size for p in layer_files),
        "layer_zipped_bytes": _zipped_bytes(layer_files, layer),
    }


def measure() -> dict[str, Any]:
    per_env = {name: round(_timed_synth([name]), 2) for name in ENVIRONMENTS}
    return {
        **measurement_context(),
        "synth_seconds_per_environment": per_env,
        "synth_all_seconds": round(_timed_synth(None), 2),
        # Lambda limits: 250 MB unzipped for function + layers, 50 MB zipped per direct upload
        "lambda_package": lambda_package_sizes(),
        "targets": TARGETS,
    }


def markdown(figures: dict[str, Any]) -> str:
    rows = [
        "| figure | seconds | target |",
        "|---|---|---|",
    ]
    for env, seconds in figures["synth_seconds_per_environment"].items():
        rows.append(f"| synth `{env}` (fresh process) | {seconds} | |")
    rows.append(
        f"| synth all stages (fresh process) | {figures['synth_all_seconds']} "
        f"| <= {TARGETS['synth_all_seconds']:.0f} |"
    )
    if "default_test_run_seconds" in figures:
        rows.append(
            f"| default test run (`nox -R`, warm) | {figures['default_test_run_seconds']} "
            f"| <= {TARGETS['default_test_run_seconds']:.0f} |"
        )
    if "lambda_package" in figures:
        package = figures["lambda_package"]
        mib = 1024 * 1024
        rows.append(
            f"| Lambda code asset (unzipped / zipped MiB) | {package['code_bytes'] / mib:.2f} / "
            f"{package['code_zipped_bytes'] / mib:.2f} | |"
        )
        rows.append(
            f"| Lambda dependencies layer (unzipped / zipped MiB) | {package['layer_bytes'] / mib:.1f} / "
            f"{package['layer_zipped_bytes'] / mib:.1f} | <= 250 unzipped (with code) |"
        )
    machine = figures["machine"]
    header = f"Measured {figures['measured_at']} on {machine['cpus']} CPUs, Python {machine['python']}."
    return "\n".join([header, "", *rows]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("output", type=Path, help="JSON file; a .md table is written beside it")
    parser.add_argument("--record-test-run", type=float, help="add the measured default test run seconds")
    args = parser.parse_args(argv)
    if args.record_test_run is not None:
        figures = json.loads(args.output.read_text())
        figures["default_test_run_seconds"] = round(args.record_test_run, 1)
    else:
        figures = measure()
    write_figures(args.output, figures, markdown(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
