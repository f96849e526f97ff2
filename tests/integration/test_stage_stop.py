"""Stopping the local stage stops every process it started (issue 12, section 6).

Each case starts ``python -m local.stage`` as its own process (its own work directory and free
ports, next to the suite's stage), waits until it serves, records its process tree from ``/proc``,
then stops it: SIGTERM; SIGINT to a stage started as a script's ``cmd &`` starts it (SIGINT
ignored); SIGKILL (a crash: no clean-up runs, the children must still go). Local stage only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.stage import ROOT

READY = "serving until Ctrl-C"
START_SECONDS = 300
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(autouse=True)
def _local_only(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--stage") != "local":
        pytest.skip("starts its own local stage")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def descendants(root: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(stat[1], []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pids: set[int]) -> set[int]:
    return {pid for pid in pids if (stat := _stat(pid)) is not None and stat[0] != "Z"}


def start_stage(work: Path, *, ignore_sigint: bool) -> tuple[subprocess.Popen[bytes], Path]:
    output = work / "stdout.txt"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.stage", "--work", str(work / "stage")],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,  # noqa: PLW1509
        )
    deadline = time.monotonic() + START_SECONDS
    while READY not in output.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the stage did not start:\n{output.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)
    return process, output


@pytest.mark.parametrize(
    ("signum", "ignore_sigint", "clean"),
    [(signal.SIGTERM, False, True), (signal.SIGINT, True, True), (signal.SIGKILL, False, False)],
    ids=["SIGTERM", "SIGINT-started-in-background", "SIGKILL-crash"],
)
def test_a_stopped_stage_leaves_no_process_behind(tmp_path, signum, ignore_sigint, clean):
    stage, output = start_stage(tmp_path, ignore_sigint=ignore_sigint)
    children = descendants(stage.pid)
    try:
        servers = [pid for pid in children if "model.server" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(servers) == 2, "one model server per version"
        stage.send_signal(signum)
        code = stage.wait(timeout=60)
        deadline = time.monotonic() + 15
        while running(children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running(children) == set(), "every process the stage started is gone"
        if clean:
            assert code == 0
            text = output.read_text(errors="replace")
            assert f"stopping ({signal.Signals(signum).name})" in text
    finally:
        for pid in running(children):
            os.kill(pid, signal.SIGKILL)
        if stage.poll() is None:
            stage.kill()
