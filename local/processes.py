"""The local stage's child processes go when the stage goes, and SIGTERM/SIGINT stop it cleanly.

- ``die_with_parent`` (a ``preexec_fn``): the child asks Linux for ``SIGTERM`` when its parent
  dies (``prctl(PR_SET_PDEATHSIG)``), so a model server or a batch job does not outlive a stage
  that crashed or was killed with ``SIGKILL``; if the parent is already gone when the child starts,
  the child ends at once. Linux delivers it when the *thread* that forked the child ends: the stage
  starts its model servers on its main thread, and a batch job from the thread that waits for it.
  Where ``prctl`` is unavailable (not Linux) nothing is set, and only a clean stop ends the children.
- ``stop_on_signals``: SIGTERM and SIGINT both raise ``StopStage`` in the main thread, once (a
  second signal while stopping is ignored, so the clean-up runs to its end). SIGINT is installed
  explicitly: a process started in the background by a non-interactive shell (``cmd &``) inherits
  SIGINT ignored, and Python then leaves it ignored, so Ctrl-C's signal did not stop such a stage.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopStage(BaseException):
    """A stop signal arrived (``signum``): unwind and stop every part of the stage."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl: Callable[..., int] = libc.prctl
    return prctl


_PRCTL = _prctl()  # loaded before any fork: a preexec_fn should not load libraries


def die_with_parent(parent_pid: int | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess``: SIGTERM to the child when the parent (this process) dies."""
    expected = os.getpid() if parent_pid is None else parent_pid

    def preexec() -> None:
        if _PRCTL is None:
            return
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != expected:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


@contextmanager
def stop_on_signals(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Within the block, each of ``signals`` raises ``StopStage`` once; the old handlers come back after."""
    stopping = False

    def handle(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise StopStage(signum)

    previous = {s: signal.signal(s, handle) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
