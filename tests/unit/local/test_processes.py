"""The stage's children die with it, and SIGTERM/SIGINT stop it even when SIGINT was ignored at start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from local.processes import die_with_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from local.processes import die_with_parent
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        preexec_fn=die_with_parent() if sys.argv[1] == "guarded" else None,
    )
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


@pytest.mark.parametrize("guarded", [True, False], ids=["die-with-parent", "without (control)"])
def test_a_child_dies_when_its_parent_is_killed(guarded):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, "guarded" if guarded else "plain"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        parent.kill()  # SIGKILL: the parent runs no clean-up at all (a crash)
        parent.wait()
        assert wait_gone(child, 5.0) is guarded
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_of_a_parent_that_is_already_gone_ends_at_once():
    preexec = die_with_parent(parent_pid=1)  # "my parent is pid 1": not the case, so the child ends
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=preexec)  # noqa: PLW1509
    assert child.wait(timeout=10) == -signal.SIGTERM


SERVE = textwrap.dedent(
    """
    import subprocess, sys, threading
    from local.processes import StopStage, die_with_parent, stop_on_signals
    with stop_on_signals():
        try:
            print("ready", flush=True)
            threading.Event().wait()
        except StopStage as stop:
            print("stopping", stop.args[0], flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signals_stop_a_process_started_with_sigint_ignored(signum):
    """As `cmd &` in a script starts it: SIGINT ignored, which Python would otherwise keep."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signum)
    assert process.wait(timeout=10) == 0
    assert process.stdout.read().strip() == f"stopping {signal.Signals(signum).name}"
