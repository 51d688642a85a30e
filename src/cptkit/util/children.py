"""Child processes that die with their parent.

A parent killed by SIGKILL (the OOM killer, `scancel --signal=KILL`, a pre-emption) runs no cleanup, and children
that wait on a pipe it shares with them (ProcessPoolExecutor workers, gloo ranks waiting for a peer) would wait
forever, holding memory, GPUs and file locks. So every process cptkit forks or spawns calls `die_with_parent()` first:

    ProcessPoolExecutor(n, initializer=die_with_parent)
    ctx.Process(target=f)  # and f calls die_with_parent() as its first line

On Linux it asks the kernel for SIGKILL when the parent dies (`prctl(PR_SET_PDEATHSIG)`), then checks the parent is
still the one it was started by (it may have died before the prctl). Elsewhere a daemon thread polls `getppid()`
every second. Caveat of PDEATHSIG: it fires when the parent *thread* that forked the child ends; cptkit forks from
the main thread (the tokenizer's pool is created before any other thread exists).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process exit (SIGKILL) as soon as its parent dies. `parent_pid`: the expected parent, if known."""
    expected = os.getppid() if parent_pid is None else parent_pid
    if sys.platform.startswith("linux") and _prctl_pdeathsig(signal.SIGKILL):
        if os.getppid() != expected:  # the parent died before the prctl took effect
            os._exit(1)
        return
    threading.Thread(target=_watch_parent, args=(expected,), name="cptkit-parent-watchdog", daemon=True).start()


def _prctl_pdeathsig(sig: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(expected: int) -> None:
    while True:
        if os.getppid() != expected:
            os._exit(1)
        time.sleep(1.0)
