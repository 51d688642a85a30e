"""No child process outlives a killed parent (issue #12, point 6): `kill -9` of `cptkit tokenize` (process workers),
of a caller of `run_spawned` (gloo ranks), of torchrun running trainer ranks: every child is gone within seconds.

Each test also runs the same process tree without `die_with_parent` and sees the orphans survive, so the check is
not blind (they are then killed by the test). Run on CPU: `.venv/bin/pytest tests/faults/test_fault_children.py -q`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "tokenize"))
from tokhelp import corpus, write_jsonl  # the tokenize tests' corpus builder

GRACE_S = 8.0  # "within seconds": PDEATHSIG is immediate, the non-Linux watchdog polls every second


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _wait_for(pred, timeout: float = 120.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out")


def _kill_and_count_survivors(parent: subprocess.Popen, children: set[int]) -> set[int]:
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.1)
    survivors = {c for c in children if _alive(c)}
    for c in survivors:  # never leave them behind, whatever the outcome
        os.kill(c, signal.SIGKILL)
    return survivors


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def test_killed_tokenize_leaves_no_worker_process(tmp_path):
    src = write_jsonl(tmp_path / "big.jsonl", corpus(6000))
    args = ["--input", str(src), "--output-prefix", str(tmp_path / "p"), "--tokenizer", "llama3", "--workers", "2"]
    parent = subprocess.Popen(
        [sys.executable, "-m", "cptkit.cli", "tokenize", *args, "--worker-kind", "process", "--no-progress"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = _wait_for(lambda: (d := _descendants(parent.pid)) and len(d) >= 2 and d)
    assert parent.poll() is None, "the run ended before it could be killed: make the corpus larger"
    assert _kill_and_count_survivors(parent, workers) == set()


_POOL = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from cptkit.util.children import die_with_parent
init = die_with_parent if sys.argv[1] == "fixed" else None
pool = ProcessPoolExecutor(2, mp_context=mp.get_context("fork"), initializer=init)
pool.submit(os.getpid).result()
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("variant", ["fixed", "unprotected"])
def test_process_pool_workers_die_with_their_parent(variant):
    """What the tokenizer's pool does, and the same pool without die_with_parent: its workers are orphaned."""
    parent = subprocess.Popen([sys.executable, "-c", _POOL, variant], env=_env(), stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    workers = _descendants(parent.pid)
    assert len(workers) >= 2
    survivors = _kill_and_count_survivors(parent, workers)
    if variant == "fixed":
        assert survivors == set()
    else:
        assert survivors, "an unprotected pool worker should outlive its parent (else this test proves nothing)"


_SPAWNED = """
import sys, time
from cptkit.backend.spawn import run_spawned
from test_fault_children import sleeping_rank
run_spawned(sleeping_rank, 2, sys.argv[1])
"""


def sleeping_rank(rank: int, world_size: int, ready_dir: str) -> None:
    Path(ready_dir, f"rank{rank}").write_text(str(os.getpid()))
    time.sleep(600)


@pytest.mark.slow  # two spawned ranks import torch and join gloo: ~20-60 s on 2 busy cores
def test_killed_caller_of_run_spawned_leaves_no_rank(tmp_path):
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env["PYTHONPATH"]])
    parent = subprocess.Popen([sys.executable, "-c", _SPAWNED, str(tmp_path)], env=env)
    _wait_for(lambda: len(list(tmp_path.glob("rank*"))) == 2, timeout=300)
    ranks = {int(p.read_text()) for p in tmp_path.glob("rank*")}
    assert _kill_and_count_survivors(parent, ranks | _descendants(parent.pid)) == set()


_RANK = """
import json, os, sys, time
if sys.argv[2] == "fixed":
    from cptkit.backend.dist import init_distributed
    init_distributed(backend="gloo")
open(os.path.join(sys.argv[1], f"rank{os.environ['RANK']}"), "w").write(str(os.getpid()))
time.sleep(600)
"""


@pytest.mark.slow  # torchrun + two ranks importing torch: ~20-45 s
@pytest.mark.parametrize("variant", ["fixed", "unprotected"])
def test_killed_torchrun_leaves_no_trainer_rank(tmp_path, variant):
    """torchrun starts ranks in their own sessions; ranks started through cptkit's init_distributed die with it."""
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    ready = tmp_path / "ready"
    ready.mkdir()
    torchrun = Path(sys.executable).with_name("torchrun")
    parent = subprocess.Popen(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", str(script), str(ready), variant],
        env={**_env(), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(lambda: len(list(ready.glob("rank*"))) == 2, timeout=300)
    ranks = {int(p.read_text()) for p in ready.glob("rank*")}
    survivors = _kill_and_count_survivors(parent, ranks)
    if variant == "fixed":
        assert survivors == set()
    else:
        assert survivors == ranks, "torchrun's ranks should outlive it unprotected (else this test proves nothing)"


_LOADER = """
import os, sys, time
import torch
from cptkit.train.data import Prefetcher
if sys.argv[1] == "trainer":  # what every trainer rank does first
    from cptkit.backend.dist import init_distributed
    init_distributed(backend="gloo")

class Samples(torch.utils.data.Dataset):
    def __len__(self):
        return 10**6
    def __getitem__(self, i):
        return {"tokens": torch.full((8,), i)}

it = iter(Prefetcher(Samples(), 2, consumed_samples=0, total_samples=10**6, micro_batch_size=1, dp_rank=0, dp_size=1))
next(it)
print("ready", flush=True)
time.sleep(600)  # "compute": the workers have prefetched and wait for the next index
"""


@pytest.mark.slow  # the trainer variant imports megatron-core (init_distributed): ~20-40 s on 2 busy cores
@pytest.mark.parametrize("variant", ["trainer", "torch-only"])
def test_killed_trainer_leaves_no_data_loader_worker(variant):
    """The trainer's own children are its DataLoader workers (`cptkit.train.data.Prefetcher`). A trainer rank
    (`init_distributed`) makes every fork die with it at once; torch alone relies on the workers' watchdog, which
    polls every 5 s (and misses a parent that died before the worker started), hence its longer grace."""
    global GRACE_S
    parent = subprocess.Popen([sys.executable, "-c", _LOADER, variant], env=_env(), stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    workers = _wait_for(lambda: (d := _descendants(parent.pid)) and len(d) >= 2 and d, timeout=60)
    saved, GRACE_S = GRACE_S, (3.0 if variant == "trainer" else 30.0)
    try:
        survivors = _kill_and_count_survivors(parent, workers)
        assert survivors == set(), f"DataLoader workers {sorted(survivors)} of {sorted(workers)} outlived the trainer"
    finally:
        GRACE_S = saved
