"""Run a function in N fresh processes joined by gloo, and collect what each rank returns. For tests.

    results = run_spawned(fn, 2, arg1, arg2)   # fn(rank, world_size, arg1, arg2) in 2 processes

`fn` must be importable (a module-level function). Each process gets RANK/WORLD_SIZE/MASTER_* set, the CPU backend
enabled and torch.distributed initialised (gloo) before `fn` runs; `fn` sets up megatron's parallel groups itself
(`cptkit.backend.dist.initialize_model_parallel`). A rank that raises fails the whole call with its traceback.
Ranks die with the caller (`cptkit.util.children.die_with_parent`): a `kill -9` of the caller leaves no gloo rank
waiting for its peers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
import traceback
from collections.abc import Callable
from typing import Any

from cptkit.backend.dist import free_port
from cptkit.util.children import die_with_parent


def _worker(fn, rank: int, world_size: int, port: int, threads: int, args: tuple, results, parent: int) -> None:
    die_with_parent(parent)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS=str(threads),
    )
    try:
        import torch

        torch.set_num_threads(threads)
        from cptkit.backend.dist import destroy, init_distributed

        init_distributed(backend="gloo")
        try:
            out = fn(rank, world_size, *args)
        finally:
            destroy()
        results.put((rank, "ok", out))
    except BaseException:
        results.put((rank, "error", traceback.format_exc()))


def run_spawned(fn: Callable[..., Any], world_size: int, *args: Any, timeout_s: float = 600, threads: int = 1) -> list:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_worker, args=(fn, r, world_size, port, threads, args, results, os.getpid()), daemon=False)
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    out: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < world_size:
            try:
                rank, status, value = results.get(timeout=1.0)
            except queue.Empty:
                # A rank that died without reporting (killed, segfault, os._exit) must fail the call, not hang it.
                dead = [(r, p.exitcode) for r, p in enumerate(procs) if r not in out and p.exitcode is not None]
                if dead:
                    time.sleep(2.0)  # its result may still be in the pipe
                    if results.empty():
                        raise RuntimeError(
                            f"spawned rank(s) exited without a result (rank, exit code): {dead}"
                        ) from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"spawned ranks did not finish within {timeout_s} s") from None
                continue
            if status == "error":
                raise RuntimeError(f"rank {rank} failed:\n{value}")
            out[rank] = value
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return [out[r] for r in range(world_size)]
