"""`cptkit status RUN_DIR`: how far a run is, its latest checkpoint, and the jobs launched for it.

Reads only the run directory (the trainer's and the launcher's files) and, when the scheduler's client is on PATH,
asks it for the state of the recorded jobs. Never imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cptkit.errors import UserError
from cptkit.launch import schedulers
from cptkit.launch.submit import read_jobs


def _query(scheduler: str, job_id: str) -> str:
    """The job's state as its scheduler reports it, or "" if it cannot tell (an unknown scheduler name included)."""
    sched = schedulers.SCHEDULERS.get(scheduler)
    return sched.query_state(job_id) if sched else ""


def summarize(run_dir: str | Path, *, query: bool = True) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError("run directory not found", file=str(run_dir))
    ckpt = run_dir / "checkpoints"
    latest_file = ckpt / "latest_checkpointed_iteration.txt"
    latest = int(latest_file.read_text().strip()) if latest_file.exists() else None
    target = None
    resolved = run_dir / "recipe.resolved.yaml"
    if resolved.exists():
        raw = yaml.safe_load(resolved.read_text(encoding="utf-8")) or {}
        target = (raw.get("training") or {}).get("train_iters")
    last_metrics = None
    metrics = run_dir / "logs" / "metrics.jsonl"
    if metrics.exists():
        lines = [line for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
        if lines:
            last_metrics = json.loads(lines[-1])
    jobs = read_jobs(run_dir)
    if query:
        for job in jobs:
            job["state"] = _query(job.get("scheduler", ""), str(job["job_id"]))
    return {
        "run_dir": str(run_dir),
        "completed": (run_dir / "COMPLETED").exists(),
        "latest_checkpoint_iteration": latest,
        "latest_checkpoint": str(ckpt / f"iter_{latest:07d}") if latest is not None else None,
        "train_iters": target,
        "last_logged": last_metrics,
        "jobs": jobs,
    }


def format_status(s: dict) -> str:
    done = s["latest_checkpoint_iteration"]
    target = s["train_iters"]
    progress = f"{done if done is not None else 0}" + (f" / {target}" if target else "")
    lines = [
        f"run:         {s['run_dir']}",
        f"state:       {'COMPLETED' if s['completed'] else 'in progress'}",
        f"iterations:  {progress} saved",
        f"checkpoint:  {s['latest_checkpoint'] or 'none yet'}",
    ]
    last = s["last_logged"]
    if last:
        keys = [k for k in ("iteration", "loss", "lr", "consumed_tokens") if k in last]
        lines.append("last logged: " + ", ".join(f"{k} {last[k]}" for k in keys))
    lines.append(f"jobs:        {len(s['jobs'])}")
    for j in s["jobs"]:
        state = j.get("state") or ""
        chain = f" chain {j['chain_index'] + 1}/{j['chain_length']}" if j.get("chain_length", 1) > 1 else ""
        dep = f" after {j['depends_on']}" if j.get("depends_on") else ""
        lines.append(f"  {j['job_id']:<14} {j['kind']:<9} {j['submitted_at']}{chain}{dep} {state}".rstrip())
    return "\n".join(lines)
