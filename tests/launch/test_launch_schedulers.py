"""On a real SLURM and a real Grid Engine on localhost (`.ci/schedulers/run-scheduler-tests` starts them):
submit a training chain, pre-empt it mid-run with a signal, let the scheduler resume it, and check it ends on the
same final loss as an uninterrupted run.

    sudo bash .ci/schedulers/run-scheduler-tests      # installs, starts, runs these, stops

The trainer is the stand-in `fake_cptkit.py` (same save-on-signal / resume / COMPLETED contract) and, once the real
trainer is installed (`cptkit.train.loop`), also `cptkit train recipes/tiny_cpu.yaml`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobscript_util import FAKE, uninterrupted_loss, write_recipe
from launchtest_util import ROOT

pytestmark = pytest.mark.scheduler
VENV = Path(sys.executable).parent.parent
TIMEOUT = 240  # seconds for one whole chain on a busy 2-core machine


def sh(*cmd: str, check: bool = True) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd}: {r.stdout} {r.stderr}")
    return r.stdout


def launch(recipe: Path, profile: str, env: dict, *extra: str) -> list[dict]:
    cmd = [str(VENV / "bin" / "cptkit"), "launch", str(recipe), "parallel.num_gpus=2", "--cluster",
           str(ROOT / "launch" / profile), *extra, "--submit"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    return r


def jobs_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "jobs.jsonl").read_text().splitlines()]


def wait_for(predicate, what: str, logs: Path, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            text = "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("*")) if p.is_file())
            raise AssertionError(f"timed out waiting for {what}; job logs:\n{text}")
        time.sleep(0.5)


def first_checkpoint(run: Path):
    return lambda: (run / "checkpoints" / "latest_checkpointed_iteration.txt").exists()


def env_for(tmp_path: Path, seconds_per_iter: str) -> dict:
    # Grid Engine does not pass the submitting environment on; everything the job needs is in the profile.
    bin_ = f"env FAKE_SECONDS_PER_ITER={seconds_per_iter} {sys.executable} {FAKE}"
    return {**os.environ, "CPTKIT_VENV": str(VENV), "CPTKIT_BIN": bin_, "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"}


@pytest.mark.skipif(shutil.which("sbatch") is None, reason="no SLURM here (see .ci/schedulers)")
def test_slurm_preempted_job_requeues_and_finishes_with_same_loss(tmp_path):
    run = tmp_path / "run"
    recipe = write_recipe(tmp_path, run, train_iters=60)
    launch(recipe, "test-slurm.yaml", env_for(tmp_path, "0.2"))
    (job,) = jobs_of(run)
    wait_for(first_checkpoint(run), "the first checkpoint", run / "logs" / "jobs")
    # Pre-emption as SLURM does it before the time limit (--signal=B:USR1@N): USR1 to the batch shell.
    sh("scancel", "--signal=USR1", "--batch", job["job_id"])
    wait_for(lambda: "requeueing job" in "".join(p.read_text() for p in (run / "logs" / "jobs").glob("*")),
             "the requeue", run / "logs" / "jobs")  # fmt: skip
    # SLURM holds a requeued job for ~2 minutes (BeginTime); release it at once to keep CI short.
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        info = sh("scontrol", "show", "job", job["job_id"], check=False)
        if "Restarts=0" not in info and "JobState=PENDING" not in info:
            break  # requeued and started again (or already finished)
        if "JobState=PENDING" in info:
            sh("scontrol", "update", f"JobId={job['job_id']}", "StartTime=now", check=False)
        time.sleep(0.5)
    wait_for(lambda: (run / "COMPLETED").exists(), "COMPLETED", run / "logs" / "jobs")
    log = "".join(p.read_text() for p in (run / "logs" / "jobs").glob("*"))
    saved = int(log.split("saved iteration ")[1].split()[0])
    assert 0 < saved < 60, log  # really pre-empted mid-run
    assert f"resuming from iteration {saved}" in log
    env0 = json.loads((run / "env" / "rank-1.json").read_text())
    assert env0["RANK"] == "1" and env0["WORLD_SIZE"] == "2" and env0["MASTER_PORT"] == "29511"
    assert json.loads((run / "COMPLETED").read_text())["loss"] == uninterrupted_loss(tmp_path, train_iters=60)


@pytest.mark.skipif(shutil.which("qsub") is None or shutil.which("qconf") is None, reason="no Grid Engine here")
def test_sge_preempted_chain_resumes_and_finishes_with_same_loss(tmp_path):
    run = tmp_path / "run"
    recipe = write_recipe(tmp_path, run, train_iters=60)
    launch(recipe, "test-sge.yaml", env_for(tmp_path, "0.2"), "--chain", "3")
    jobs = jobs_of(run)
    assert [j["depends_on"] for j in jobs] == [None, jobs[0]["job_id"], jobs[1]["job_id"]]
    wait_for(first_checkpoint(run), "the first checkpoint", run / "logs" / "jobs")
    # What Grid Engine's s_rt / -notify (and cptkit's own walltime watchdog) do: SIGUSR1 to the job's shell.
    pids = sh("pgrep", "-f", f"job_scripts/{jobs[0]['job_id']}$").split()
    assert pids, "job script process not found"
    for pid in pids:
        os.kill(int(pid), 10)
    wait_for(lambda: (run / "COMPLETED").exists(), "COMPLETED", run / "logs" / "jobs")
    wait_for(lambda: len(list((run / "logs" / "jobs").glob("*"))) == 3 and "nothing to do" in _log(run),
             "the rest of the chain", run / "logs" / "jobs")  # fmt: skip
    log = _log(run)
    saved = int(log.split("saved iteration ")[1].split()[0])
    assert 0 < saved < 60, log
    assert f"resuming from iteration {saved}" in log and "COMPLETED exists; nothing to do" in log
    env1 = json.loads((run / "env" / "rank-1.json").read_text())
    assert env1["RANK"] == "1" and env1["WORLD_SIZE"] == "2"
    assert json.loads((run / "COMPLETED").read_text())["loss"] == uninterrupted_loss(tmp_path, train_iters=60)


def _log(run: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((run / "logs" / "jobs").glob("*")))
