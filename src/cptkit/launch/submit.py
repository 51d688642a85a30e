"""Submit rendered jobs and record them in `WORK_DIR/jobs.jsonl` (one JSON object per submitted job).

Scripts are written under `WORK_DIR/launch/` first (atomically), so what ran is always on disk next to the run.
A training chain of K jobs is K submissions of the same script, each depending on the one before
(`--dependency=afterany`, `-W depend=afterany`, `-hold_jid`); a job that starts after the run completed exits at once.
On the `local` scheduler jobs run now, in the foreground, one array index after another.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from pathlib import Path

from cptkit.launch import schedulers
from cptkit.launch.profile import Profile
from cptkit.launch.render import Job
from cptkit.util.atomic import write_text

JOBS_FILE = "jobs.jsonl"


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")


def write_scripts(jobs: list[Job], work_dir: Path) -> dict[str, Path]:
    stamp = _stamp()
    out = {}
    for job in jobs:
        path = work_dir / "launch" / f"{job.kind}-{stamp}.sh"
        write_text(path, job.script)
        path.chmod(0o755)
        out[job.kind] = path
    return out


def submit_commands(jobs: list[Job], scripts: dict[str, Path], profile: Profile) -> list[list[str]]:
    """The commands `--dry-run` shows; `PREV`/`<kind>` stand for job ids known only after submitting."""
    sched = schedulers.get(profile.scheduler)
    cmds = []
    for job in jobs:
        for i in range(job.chain):
            dep = "<previous>" if i else (f"<{job.after}>" if job.after else None)
            cmds.append(
                sched.submit_command(
                    str(scripts[job.kind]),
                    depends_on=dep,
                    ok=job.after is not None and i == 0,
                    extra=profile.submit_args,
                )
            )
    return cmds


def record(work_dir: Path, entry: dict) -> None:
    path = work_dir / JOBS_FILE
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    write_text(path, old + json.dumps(entry) + "\n")


def read_jobs(work_dir: Path) -> list[dict]:
    path = Path(work_dir) / JOBS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def submit(jobs: list[Job], scripts: dict[str, Path], profile: Profile, work_dir: Path, log_dir: Path) -> list[dict]:
    """Submit every job (chains and dependencies included); returns the recorded entries."""
    sched = schedulers.get(profile.scheduler)
    log_dir.mkdir(parents=True, exist_ok=True)  # SLURM and PBS do not create the log directory
    ids: dict[str, str] = {}
    entries = []
    for job in jobs:
        previous = ids.get(job.after) if job.after else None
        for i in range(job.chain):
            cmd = sched.submit_command(
                str(scripts[job.kind]),
                depends_on=previous,
                ok=job.after is not None and i == 0,
                extra=profile.submit_args,
            )
            job_id, rc = sched.submit(cmd, kind=job.kind, array_size=job.array_size, log_dir=log_dir)
            entry = {
                "job_id": job_id,
                "kind": job.kind,
                "name": job.name,
                "scheduler": profile.scheduler,
                "profile": profile.name,
                "script": str(scripts[job.kind]),
                "depends_on": previous,
                "chain_index": i,
                "chain_length": job.chain,
                "array_size": job.array_size,
                "submit_command": shlex.join(cmd),
                "submitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            if rc is not None:
                entry["exit_code"] = rc
            record(work_dir, entry)
            entries.append(entry)
            previous = ids[job.kind] = job_id
    return entries
