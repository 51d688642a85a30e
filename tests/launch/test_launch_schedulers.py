"""On a real SLURM and a real Grid Engine on localhost (`.ci/schedulers/run-scheduler-tests` starts them):
submit a training run, pre-empt it mid-run with a signal, let the scheduler resume it (SLURM: requeue; Grid Engine:
the next job of a `-hold_jid` chain), and check it ends on the same final loss as an uninterrupted run.

    sudo bash .ci/schedulers/run-scheduler-tests      # installs, starts, runs these, stops

Also: a tokenization array job then its merge, and a two-stage curation pipeline (`cptkit launch curate`) as an
array job whose output is checked complete.

The training tests run twice: with the stand-in trainer `fake_cptkit.py` (same save-on-signal / resume / COMPLETED
contract, seconds) and with the real `cptkit train` on the tiny CPU recipe (2 ranks, gloo).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobscript_util import (
    FAKE,
    curate_output_problems,
    last_loss,
    times_started,
    uninterrupted_loss,
    write_curate_pipeline,
    write_recipe,
    write_tiny_training,
)
from launchtest_util import ROOT

pytestmark = pytest.mark.scheduler
VENV = Path(sys.executable).parent.parent
TIMEOUT = 300  # seconds for one whole run on a busy 2-core machine
REAL_ITERS = 40  # long enough that the signal lands well before the end
HAVE_SLURM = shutil.which("sbatch") is not None
HAVE_SGE = shutil.which("qsub") is not None and shutil.which("qconf") is not None


def sh(*cmd: str, check: bool = True) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd}: {r.stdout} {r.stderr}")
    return r.stdout


def job_log(run: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((run / "logs" / "jobs").glob("*")))


def wait_for(predicate, what: str, run: Path, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; job logs:\n{job_log(run)[-6000:]}")
        time.sleep(0.5)


class Trainer:
    """What a test run trains with: the stand-in (fast) or the real `cptkit train`."""

    def __init__(self, kind: str, tmp_path: Path, real_data: Path | None = None):
        self.kind, self.tmp, self.run = kind, tmp_path, tmp_path / "run"
        env = {**os.environ, "CPTKIT_VENV": str(VENV), "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"}
        if kind == "stand-in":
            self.recipe = write_recipe(tmp_path, self.run, train_iters=60)
            # Grid Engine passes no environment on: the job gets everything from the profile and this command.
            env["CPTKIT_BIN"] = f"env FAKE_SECONDS_PER_ITER=0.2 {sys.executable} {FAKE}"
        else:
            self.recipe = write_tiny_training(real_data, self.run, train_iters=REAL_ITERS)
            env.pop("CPTKIT_BIN", None)  # the venv's `cptkit`
        self.overrides = ["parallel.num_gpus=2"]
        if kind == "real":
            self.overrides += ["checkpoint.interval_iters=5", "eval.interval_iters=null"]
        self.env = env

    def launch(self, profile: str, *extra: str) -> list[dict]:
        cmd = [str(VENV / "bin" / "cptkit"), "launch", "train", str(self.recipe), *self.overrides, "--cluster",
               str(ROOT / "launch" / profile), *extra, "--submit"]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in (self.run / "jobs.jsonl").read_text().splitlines()]

    def status(self) -> str:
        cmd = [str(VENV / "bin" / "cptkit"), "status", str(self.run)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def first_checkpoint(self) -> bool:
        return (self.run / "checkpoints" / "latest_checkpointed_iteration.txt").exists()

    def saved_on_signal(self) -> int:
        return int((self.run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text())

    def final_loss(self) -> float:
        if self.kind == "stand-in":
            return json.loads((self.run / "COMPLETED").read_text())["loss"]
        return last_loss(self.run)

    def reference_loss(self, reference: Path | None) -> float:
        if self.kind == "stand-in":
            return uninterrupted_loss(self.tmp, train_iters=60)
        return last_loss(reference)


@pytest.fixture(scope="module")
def real_reference(tmp_path_factory):
    """The real trainer's uninterrupted run: torchrun, 2 ranks (what the jobs run, minus the scheduler)."""
    root = tmp_path_factory.mktemp("real")
    recipe = write_tiny_training(root / "data", root / "reference", train_iters=REAL_ITERS)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(VENV / "bin" / "torchrun"), "--standalone", "--nproc-per-node=2", "--no-python",
           str(VENV / "bin" / "cptkit"), "train", str(recipe), "parallel.num_gpus=2", "checkpoint.interval_iters=5",
           "eval.interval_iters=null"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return {"data": root / "data", "run": root / "reference"}


def make_trainer(kind: str, tmp_path: Path, request) -> tuple[Trainer, Path | None]:
    if kind == "stand-in":
        return Trainer(kind, tmp_path), None
    ref = request.getfixturevalue("real_reference")
    return Trainer(kind, tmp_path, ref["data"]), ref["run"]


@pytest.mark.skipif(not HAVE_SLURM, reason="no SLURM here (see .ci/schedulers)")
@pytest.mark.parametrize("kind", ["stand-in", "real"])
def test_slurm_preempted_job_requeues_and_finishes_with_same_loss(kind, tmp_path, request):
    t, reference = make_trainer(kind, tmp_path, request)
    (job,) = t.launch("test-slurm.yaml")
    status = t.status()  # asks squeue
    assert f"{job['job_id']:<14} train" in status and (" running" in status or " pending" in status), status
    wait_for(t.first_checkpoint, "the first checkpoint", t.run)
    # SLURM's warning before the time limit (--signal=B:USR1@N): USR1 to the batch shell.
    sh("scancel", "--signal=USR1", "--batch", job["job_id"])
    wait_for(lambda: "requeueing job" in job_log(t.run) or (t.run / "COMPLETED").exists(), "the requeue", t.run)
    assert "requeueing job" in job_log(t.run), "the run finished before the signal landed:\n" + job_log(t.run)
    # The requeued job starts again by itself (slurm-up sets cred_expire=10 s, the hold before a requeued job).
    wait_for(lambda: (t.run / "COMPLETED").exists(), "COMPLETED", t.run)
    wait_for(lambda: "COMPLETED" in t.status() and " finished" in t.status(), "squeue to forget the job", t.run)
    log = job_log(t.run)
    assert "got SIGUSR1" in log and log.count(f"job {job['job_id']} on") >= 2, log
    resumed_from = int(log.split("resuming from iteration ")[2].split()[0])
    assert 0 < resumed_from < (60 if kind == "stand-in" else REAL_ITERS), log  # really pre-empted mid-run
    if kind == "stand-in":
        env1 = json.loads((t.run / "env" / "rank-1.json").read_text())
        assert env1["RANK"] == "1" and env1["WORLD_SIZE"] == "2" and env1["MASTER_PORT"] == "29511"
    assert times_started(t.run) == 1, log[-6000:]  # resumed, not restarted
    assert t.final_loss() == t.reference_loss(reference), log[-6000:]


@pytest.mark.skipif(not HAVE_SGE, reason="no Grid Engine here (see .ci/schedulers)")
@pytest.mark.parametrize("kind", ["stand-in", "real"])
def test_sge_preempted_chain_resumes_and_finishes_with_same_loss(kind, tmp_path, request):
    t, reference = make_trainer(kind, tmp_path, request)
    jobs = t.launch("test-sge.yaml", "--chain", "3")
    assert [j["depends_on"] for j in jobs] == [None, jobs[0]["job_id"], jobs[1]["job_id"]]
    assert t.status().count("queued/running") == 3  # asked qstat about the chain
    wait_for(t.first_checkpoint, "the first checkpoint", t.run)
    # What Grid Engine's s_rt / -notify (and cptkit's own walltime watchdog) do: SIGUSR1 to the job's shell.
    pids = sh("pgrep", "-f", f"job_scripts/{jobs[0]['job_id']}$").split()
    assert pids, "job script process not found"
    for pid in pids:
        os.kill(int(pid), 10)
    wait_for(lambda: (t.run / "COMPLETED").exists(), "COMPLETED", t.run)
    wait_for(lambda: job_log(t.run).count("cptkit: job ") + job_log(t.run).count("nothing to do") >= 3,
             "the rest of the chain", t.run)  # fmt: skip
    wait_for(lambda: "COMPLETED exists; nothing to do" in job_log(t.run), "the last job of the chain", t.run)
    log = job_log(t.run)
    assert "got SIGUSR1" in log and "the next job of the chain resumes" in log, log
    resumed_from = int(log.split("resuming from iteration ")[2].split()[0])
    assert 0 < resumed_from < (60 if kind == "stand-in" else REAL_ITERS), log
    if kind == "stand-in":
        env1 = json.loads((t.run / "env" / "rank-1.json").read_text())
        assert env1["RANK"] == "1" and env1["WORLD_SIZE"] == "2"
    assert times_started(t.run) == 1, log[-6000:]  # resumed, not restarted
    assert t.final_loss() == t.reference_loss(reference), log[-6000:]


@pytest.mark.parametrize(
    "profile",
    [
        pytest.param("test-slurm.yaml", marks=pytest.mark.skipif(not HAVE_SLURM, reason="no SLURM here")),
        pytest.param("test-sge.yaml", marks=pytest.mark.skipif(not HAVE_SGE, reason="no Grid Engine here")),
    ],
)
def test_tokenize_array_job_then_merge(profile, tmp_path):
    """One array task per shard with the scheduler's index mapped to --shard-index 0..N-1, then the merge job."""
    record = tmp_path / "calls.jsonl"
    env = {
        **os.environ,
        "CPTKIT_VENV": str(VENV),
        "CPTKIT_BIN": f"env FAKE_CPTKIT_LOG={record} {sys.executable} {FAKE}",
    }
    work = tmp_path / "tok"
    cmd = [str(VENV / "bin" / "cptkit"), "launch", "tokenize", "data_mix/demo.yaml", "--num-shards", "3",
           "--cluster", str(ROOT / "launch" / profile), "--work-dir", str(work), "--submit"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stderr

    def calls() -> list[list[str]]:
        return [json.loads(line)["argv"] for line in record.read_text().splitlines()] if record.exists() else []

    deadline = time.monotonic() + TIMEOUT
    while len(calls()) < 4:
        assert time.monotonic() < deadline, (
            f"only {calls()}; logs: {[p.read_text() for p in (work / 'logs').glob('*')]}"
        )
        time.sleep(0.5)
    got = calls()
    shards = sorted(c[c.index("--shard-index") + 1] for c in got[:3])
    assert shards == ["0", "1", "2"] and all(c[c.index("--num-shards") + 1] == "3" for c in got[:3])
    assert got[3] == ["tokenize", "data_mix/demo.yaml", "--merge"]  # only after every shard


@pytest.mark.parametrize(
    "profile",
    [
        pytest.param("test-slurm.yaml", marks=pytest.mark.skipif(not HAVE_SLURM, reason="no SLURM here")),
        pytest.param("test-sge.yaml", marks=pytest.mark.skipif(not HAVE_SGE, reason="no Grid Engine here")),
    ],
)
def test_curate_array_job_end_to_end_and_rerun(profile, tmp_path):
    """`cptkit launch curate` on a real scheduler: the real `cptkit curate` (syntax, then the language filter) as a
    two-task array; every record is kept or rejected once and the last task writes the statistics. Submitting the
    array again (a rerun of every element) changes nothing: finished shards are skipped."""
    pipe = write_curate_pipeline(tmp_path)
    env = {
        **os.environ,
        "CPTKIT_VENV": str(VENV),
        # Grid Engine jobs inherit no environment: the profile's `cptkit` line points them at this checkout's code.
        "CPTKIT_BIN": f"env PYTHONPATH={ROOT / 'src'} {VENV / 'bin' / 'cptkit'}",
    }
    work = tmp_path / "work"
    cmd = [str(VENV / "bin" / "cptkit"), "launch", "curate", str(pipe), "--num-shards", "2",
           "--cluster", str(ROOT / "launch" / profile), "--work-dir", str(work), "--submit"]  # fmt: skip

    def submit() -> dict:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in (work / "jobs.jsonl").read_text().splitlines()][-1]

    def logs() -> str:
        return "".join(p.read_text(errors="replace") for p in sorted((work / "logs").glob("*")))

    def finished_tasks() -> int:
        # Each task's `cptkit curate` ends with one line: its shard count (JSON) or, for the task that completes the
        # output, "statistics: FILES" (the table above it has a "# Curation statistics: NAME" header: not counted).
        return len(re.findall(r'^(?:\{"tasks": .*"done": |statistics: )', logs(), flags=re.M))

    def wait(predicate, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; job logs:\n{logs()[-6000:]}"
            time.sleep(0.5)

    first = submit()
    assert first["kind"] == "curate" and first["array_size"] == 2
    (script,) = (work / "launch").glob("curate-*.sh")
    assert f"env PYTHONPATH={ROOT / 'src'} " in script.read_text()  # the jobs run this checkout's code
    wait(lambda: finished_tasks() >= 2 and (tmp_path / "out" / "curate_stats.json").exists(), "both tasks")
    log = logs()
    assert "curate task 0 of 2" in log and "curate task 1 of 2" in log, log
    assert curate_output_problems(tmp_path / "out") == [], log[-6000:]
    kept = sorted(p.read_bytes() for p in (tmp_path / "out" / "data").glob("*.jsonl.gz"))

    second = submit()
    assert second["job_id"] != first["job_id"]
    wait(lambda: finished_tasks() >= 4, "the rerun's tasks")
    # datatrove skipped both finished shards: no pipeline was started again.
    assert logs().count("tasks have already been completed") == 2, logs()[-6000:]
    assert logs().count("Launching pipeline for rank") == 2, logs()[-6000:]
    assert curate_output_problems(tmp_path / "out") == []
    assert sorted(p.read_bytes() for p in (tmp_path / "out" / "data").glob("*.jsonl.gz")) == kept
