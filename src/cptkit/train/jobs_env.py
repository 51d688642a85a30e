"""The run's record of where and with what it ran: one JSON line per training job in `RUN_DIR/logs/jobs_env.jsonl`.

Written by the trainer at the start of every job (first run and each resume), once torch.distributed is up, so the
model card (`cptkit release`) states hardware and software versions from what the jobs saw instead of from memory:

    {"time": "2026-12-02T11:40:00+00:00", "job_id": "123456", "cluster": "tsubame4", "start_iteration": 0,
     "world_size": 64, "nodes": 8, "hosts": ["r1n1", ...], "gpu": {"model": "NVIDIA H100", "count": 64,
     "memory_gib": 93.1}, "transformer_engine_used": true,
     "versions": {"cptkit": "0.1.0", "torch": "2.6.0", "megatron_core": "0.16.1", "transformer_engine": "2.1.0",
                  "cuda": "12.6", "nccl": "2.21.5", "python": "3.11.9"}}

`cluster` is `CPTKIT_CLUSTER`, which the job scripts `cptkit launch` renders export (the profile's name); `job_id` is
the scheduler's (CPTKIT_JOB_ID from the job script, else SLURM_JOB_ID, PBS_JOBID, Grid Engine's JOB_ID). Every rank contributes its host and GPU name (one
all-gather of a few bytes); rank 0 appends the line. Reading it back: `read_jobs_env(run_dir)`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

JOBS_ENV = "logs/jobs_env.jsonl"
JOB_ID_VARS = ("CPTKIT_JOB_ID", "SLURM_JOB_ID", "PBS_JOBID", "JOB_ID")  # ours (job scripts), SLURM, PBS Pro, SGE


def _gpu_name() -> tuple[str | None, float | None]:
    import torch

    if not torch.cuda.is_available():
        return None, None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return props.name, round(props.total_memory / 1024**3, 1)


def job_env_record(start_iteration: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    """This job's record (collective when distributed: every rank calls it and gets the same record)."""
    import socket

    import torch

    from cptkit import __version__
    from cptkit.model.build import te_available
    from cptkit.selftest.probe import versions

    env = dict(os.environ if env is None else env)
    mine = {"host": socket.gethostname(), **dict(zip(("gpu", "memory_gib"), _gpu_name(), strict=True))}
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    every = [mine] * world
    if world > 1:
        every = [None] * world
        torch.distributed.all_gather_object(every, mine)
    hosts = sorted({r["host"] for r in every})
    gpus = [r for r in every if r["gpu"]]
    names = sorted({r["gpu"] for r in gpus})
    v = versions()
    return {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "job_id": next((env[k] for k in JOB_ID_VARS if env.get(k)), None),
        "cluster": env.get("CPTKIT_CLUSTER") or None,
        "start_iteration": start_iteration,
        "world_size": world,
        "nodes": len(hosts),
        "hosts": hosts,
        # One model per job in practice; a mixed job names them all ("A / B") rather than picking one.
        "gpu": (
            {"model": " / ".join(names), "count": len(gpus), "memory_gib": max(r["memory_gib"] for r in gpus)}
            if gpus
            else None
        ),
        "transformer_engine_used": te_available(),
        "versions": {
            "cptkit": __version__,
            "torch": v["torch"],
            "megatron_core": v["megatron_core"],
            "transformer_engine": v["transformer_engine"],
            "cuda": v["cuda"],
            "nccl": v["nccl"],
            "python": v["python"],
        },
    }


def record_job_env(run_dir: str | Path, start_iteration: int, *, rank0: bool) -> dict[str, Any]:
    """Gather this job's record (collective) and append it to RUN_DIR/logs/jobs_env.jsonl on rank 0.

    One `write` of one line with O_APPEND: a line is whole or absent, and readers skip a torn last line."""
    record = job_env_record(start_iteration)
    if rank0:
        path = Path(run_dir) / JOBS_ENV
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (json.dumps(record, sort_keys=False) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    return record


def read_jobs_env(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every job's record, oldest first; [] for a run made before this record existed. Torch-free."""
    path = Path(run_dir) / JOBS_ENV
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if isinstance(rec, dict):
            out.append(rec)
    return out
