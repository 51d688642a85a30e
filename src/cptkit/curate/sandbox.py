"""Run pylint over a batch of files in a sandboxed subprocess: a timeout per file, a memory limit, no network.

A pathological file (pylint/astroid inference that never ends, or eats all memory) must cost one timeout, not the
job: the worker (`cptkit.curate.pylint_worker`) announces each file before rating it, the parent waits at most
`timeout_s` for its result, and on a timeout kills the worker's process group, records that file as `timeout`, and
starts a new worker on the files after it. The memory limit is RLIMIT_AS on the worker; a worker that dies (OOM,
segfault) marks its current file `crashed` the same way. The network is cut by a new user + network namespace
(unshare), where the kernel allows it; whether it did is recorded (`isolated`).

    from cptkit.curate.sandbox import PylintSandbox
    print(PylintSandbox(timeout_s=60).rate(["x = 1\\n"]))
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


def _try_unshare_network() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0
    except (OSError, AttributeError):
        return False


def _die_with_parent() -> None:
    """A pipeline killed with SIGKILL cannot kill its worker: have the kernel do it (Linux PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


@dataclass
class PylintResult:
    score: float | None  # pylint's own score, before the comment penalty
    status: str  # ok | timeout | crashed | memory | crash: <Exception>


class PylintSandbox:
    def __init__(
        self,
        timeout_s: float = 120.0,
        memory_mb: int = 4096,
        isolate_network: bool = True,
        astroid_state: str = "fresh",
    ):
        self.astroid_state = astroid_state  # see cptkit.curate.pylint_worker
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.isolate_network = isolate_network
        self.isolated: bool | None = None  # learnt from the first worker

    def _preexec(self) -> None:
        os.setsid()  # own process group: a timeout kills pylint and anything it started
        _die_with_parent()
        if self.memory_mb > 0:
            limit = self.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        if self.isolate_network:
            _try_unshare_network()  # best effort: whether it works here is probed once (`isolated`)

    def rate(self, codes: list[str]) -> list[PylintResult]:
        results: list[PylintResult | None] = [None] * len(codes)
        start = 0
        while start < len(codes):
            start = self._run_worker(codes, start, results)
        return results  # type: ignore[return-value]

    def _run_worker(self, codes: list[str], first: int, results: list) -> int:
        """Rate codes[first:] in one worker; return the index to restart from (len(codes) when done)."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
            json.dump(codes[first:], f)
            batch_file = f.name
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "cptkit.curate.pylint_worker", batch_file, "--astroid-state", self.astroid_state],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=self._preexec,
        )
        if self.isolated is None:
            self.isolated = self.isolate_network and _probe_isolation_supported()
        current = first
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                buf = b""
                deadline = time.monotonic() + self.timeout_s + 30  # the first file also pays the pylint import
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not sel.select(timeout=remaining):
                        _kill(proc)
                        results[current] = PylintResult(None, "timeout")
                        return current + 1
                    chunk = os.read(proc.stdout.fileno(), 1 << 16)
                    if not chunk:  # worker ended
                        proc.wait()
                        if current < len(codes) and results[current] is None:
                            results[current] = PylintResult(None, "crashed")
                            return current + 1
                        return len(codes)
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        msg = json.loads(line)
                        if "start" in msg:
                            current = first + msg["start"]
                            deadline = time.monotonic() + self.timeout_s
                        else:
                            results[first + msg["i"]] = PylintResult(msg["score"], msg["status"])
                            current = first + msg["i"] + 1
        finally:
            _kill(proc)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(batch_file)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


_ISOLATION: bool | None = None


def _probe_isolation_supported() -> bool:
    """Whether unshare(NEWUSER|NEWNET) works here (probed once in a throwaway child)."""
    global _ISOLATION
    if _ISOLATION is None:
        code = "import sys; from cptkit.curate.sandbox import _try_unshare_network as u; sys.exit(0 if u() else 1)"
        _ISOLATION = subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    return _ISOLATION
