"""Child processes that die with their parent.

A parent killed by SIGKILL (the OOM killer, `scancel --signal=KILL`, a pre-emption) runs no cleanup, and children
that wait on a pipe it shares with them (ProcessPoolExecutor workers, gloo ranks waiting for a peer) would wait
forever, holding memory, GPUs and file locks. So every process cptkit forks or spawns calls `die_with_parent()` first:

    ProcessPoolExecutor(n, initializer=die_with_parent)
    ctx.Process(target=f)  # and f calls die_with_parent() as its first line

A process whose forks come from libraries (the trainer: DataLoader workers) calls `forks_die_with_this_process()`
once instead: an `os.register_at_fork` hook does the same in every child it forks. torch's own DataLoader watchdog
is not enough: a worker that starts after its parent died takes the new parent (init) for its manager and never stops.

On Linux it asks the kernel for SIGKILL when the parent dies (`prctl(PR_SET_PDEATHSIG)`), then checks the parent is
still the one it was started by (it may have died before the prctl). Elsewhere a daemon thread polls `getppid()`
every second. Caveat of PDEATHSIG: it fires when the parent *thread* that forked the child ends; cptkit forks from
the main thread (the tokenizer's pool is created before any other thread exists).
"""

from __future__ import annotations

import ctypes
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


_forker: int | None = None
_registered = False


def forks_die_with_this_process() -> None:
    """From now on, every child this process forks (os.fork, multiprocessing "fork") dies with it. Idempotent."""
    global _registered
    if not _registered:
        _registered = True
        os.register_at_fork(before=_note_forker, after_in_child=_child_dies_with_forker)


def _note_forker() -> None:
    global _forker
    _forker = os.getpid()


def _child_dies_with_forker() -> None:
    die_with_parent(_forker)


def _prctl_pdeathsig(sig: int) -> bool:
    try:
        # The symbols already loaded into this process (libc's prctl): no library search, which would run
        # `ldconfig` in a subprocess, in every freshly forked child.
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(expected: int) -> None:
    while True:
        if os.getppid() != expected:
            os._exit(1)
        time.sleep(1.0)
