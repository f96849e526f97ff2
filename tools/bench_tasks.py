"""Benchmark of the Nx task graph (measured, never asserted): cold, warm, and a one-layer change.

In one run, with the cache of this ref kind (``tools.affected.cache_directory``):

1. cold: ``nx run-many -t TARGETS`` into an empty cache directory of its own (every task runs and is
   stored; ``--skip-nx-cache`` would run them too, but Nx 24 then stores nothing);
2. warm, no change: the same command without ``--skip-nx-cache`` (every task restored);
3. a change confined to one layer's runtime (a comment appended to ``--change-file``, restored
   afterwards): which tasks ran and which were restored.

Writes ``OUT.json`` and ``OUT.md`` (``reports/bench/tasks``): wall time, Nx's cache hits, and the
tasks that ran in each step.

    python -m tools.bench_tasks reports/bench/tasks [--targets synth test test-infra guard] [--projects ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.affected import ROOT, nx_command, nx_environment

DEFAULT_TARGETS = ("synth", "guard", "test", "test-infra")
DEFAULT_CHANGE = "stacks/batch/runtime/layout.py"
TASK_LINE = re.compile(r"^\s*>\s+nx run (\S+)(.*)$")
CACHED_MARKS = ("[local cache]", "[existing outputs match the cache", "[remote cache]")


def run_many(targets: Sequence[str], *extra: str) -> dict[str, Any]:
    command = [*nx_command(), "run-many", "-t", *targets, "--outputStyle=static", *extra]
    environment = nx_environment()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    ran: list[str] = []
    restored: list[str] = []
    for line in done.stdout.splitlines():
        match = TASK_LINE.match(line)
        if match:
            (restored if any(m in match.group(2) for m in CACHED_MARKS) else ran).append(match.group(1))
    return {
        "command": " ".join(["nx", *command[1:]]),
        "exit_code": done.returncode,
        "seconds": round(seconds, 1),
        "cache_hits": len(restored),  # Nx's own "Cache: N/M" counts only the cacheable tasks it looked up
        "tasks": len(ran) + len(restored),
        "ran": sorted(ran),
        "restored": sorted(restored),
        "log_tail": done.stdout.splitlines()[-15:] if done.returncode else [],
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Nx task graph, measured {result['measured_at']} on this machine "
        f"(targets: {', '.join(result['targets'])}; projects: {result['projects']}).",
        "",
        "| step | wall time | cache hits | tasks run |",
        "|---|---:|---:|---|",
    ]
    for name, step in result["steps"].items():
        ran = ", ".join(step["ran"]) or "none"
        lines.append(f"| {name} | {step['seconds']:.1f} s | {step['cache_hits']}/{step['tasks']} | {ran} |")
    cold, warm = result["steps"]["cold"]["seconds"], result["steps"]["warm, no change"]["seconds"]
    lines += ["", f"Warm with no change / cold: {warm / cold:.3f} ({warm:.1f} s / {cold:.1f} s)."]
    lines.append(f"Changed file in step 3: `{result['change_file']}` (a comment appended, then restored).")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="output path without suffix (writes .json and .md)")
    parser.add_argument("--targets", nargs="+", default=list(DEFAULT_TARGETS))
    parser.add_argument("--change-file", default=DEFAULT_CHANGE, help="a file of one layer's runtime")
    parser.add_argument("--projects", nargs="+", help="only these projects (default: all)")
    args = parser.parse_args(argv)
    cache = ROOT / ".nx" / "cache" / f"bench-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    os.environ["NX_CACHE_DIRECTORY"] = str(cache)  # empty: the first run is cold
    select = [f"--projects={','.join(args.projects)}"] if args.projects else []
    steps: dict[str, dict[str, Any]] = {"cold": run_many(args.targets, *select)}
    steps["warm, no change"] = run_many(args.targets, *select)
    changed = ROOT / args.change_file
    original = changed.read_bytes()
    try:
        changed.write_bytes(original + b"\n# bench_tasks: a change confined to this layer's runtime\n")
        steps["one-layer runtime change"] = run_many(args.targets, *select)
    finally:
        changed.write_bytes(original)
    result = {
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "targets": args.targets,
        "projects": args.projects or "all",
        "cache_directory": str(cache.relative_to(ROOT)),
        "change_file": args.change_file,
        "steps": {name: steps[name] for name in ("cold", "warm, no change", "one-layer runtime change")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render(result))
    print(render(result))
    return max(int(step.get("exit_code", 0)) for step in steps.values())


if __name__ == "__main__":
    sys.exit(main())
