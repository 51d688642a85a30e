"""PBS Pro is not packaged here: run ABCI 3.0's rendered script with the PBS environment set, `mpirun` replaced by a
recorder that checks its arguments and starts the stand-in trainer, and the walltime watchdog pre-empting each job.
The chain of jobs must end on the same loss as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

from jobscript_util import FAKE, cptkit_stub, stub, times_started, uninterrupted_loss, write_recipe
from launchtest_util import ROOT

from cptkit.launch import render
from cptkit.launch.profile import load_profile
from cptkit.launch.validate import load_plan, validate_train

MPIRUN = r"""
echo "$@" >> "$RECORD"
# Open MPI's mpirun forwards SIGUSR1 to the ranks; play rank 0 of the job.
trap 'kill -USR1 $child 2>/dev/null' USR1
while [[ $1 == -* ]]; do
  case $1 in -x) export "$2=${!2}"; shift 2 ;; -np|--npernode|--hostfile|-bind-to|-map-by) shift 2 ;; *) shift ;; esac
done
OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_LOCAL_RANK=0 OMPI_COMM_WORLD_SIZE=16 "$@" &
child=$!
while ! wait $child; do kill -0 $child 2>/dev/null || break; done
wait $child
"""


def test_abci3_script_chain_under_emulated_pbs(tmp_path, site_env, monkeypatch):
    run = tmp_path / "run"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text("export CPTKIT_VENV_ACTIVE=1\n")
    monkeypatch.setenv("CPTKIT_VENV", str(venv))
    recipe = write_recipe(tmp_path, run, global_batch_size=32)
    profile = load_profile(ROOT / "launch" / "abci3.yaml").model_copy(update={"checkpoint_lead_seconds": 1})
    view = load_plan(recipe, ["parallel.num_gpus=16"])
    validate_train(view, profile, 2, "00:00:03")
    job = render.render_train(view, profile, nodes=2, walltime="00:00:03", workdir=str(tmp_path),
                              recipe_arg=str(recipe), overrides=["parallel.num_gpus=16"])  # fmt: skip
    script = tmp_path / "train.sh"
    script.write_text(job.script)
    assert "(sleep 2 && kill -USR1 $$) 2>/dev/null &" in job.script  # walltime 3 s - lead 1 s

    bin_dir = tmp_path / "bin"
    cptkit_stub(bin_dir)
    stub(bin_dir, "mpirun", MPIRUN)
    stub(bin_dir, "module", 'echo "module $*" >> "$RECORD"\n')
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("".join(f"{h}\n" for h in ["hf0001"] * 8 + ["hf0002"] * 8))  # PBS lists a host per slot
    record = tmp_path / "record.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record), "PBS_NODEFILE": str(nodefile),
           "PBS_O_WORKDIR": str(tmp_path), "PBS_JOBNAME": "fake", "FAKE_SECONDS_PER_ITER": "0.25"}  # fmt: skip

    outputs = []
    # The jobs of a `-W depend=afterany` chain, one after another; on a loaded machine (startup eats most of the
    # 3 s walltime) a chain needs more of them, as it would on a cluster.
    for n in range(1, 41):
        env["PBS_JOBID"] = f"{n}.pbs1"
        r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == 0, outputs[-1]
        if (run / "COMPLETED").exists():
            break
    jobs_run = n
    assert jobs_run >= 2, "the watchdog never pre-empted the job: " + outputs[0]
    assert "checkpoint saved (exit 0); the next job of the chain resumes" in outputs[0]
    assert times_started(run) == 1  # every job resumed; none started over
    final = json.loads((run / "COMPLETED").read_text())["loss"]
    assert final == uninterrupted_loss(tmp_path)
    # Not blind: a job that ignored the checkpoint and started over would end on the same stand-in loss, but
    # times_started catches it.
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    shutil.rmtree(broken / "checkpoints")
    (broken / "COMPLETED").unlink()
    subprocess.run([sys.executable, str(FAKE), "train", str(recipe), f"run_dir={broken}"], check=True,
                   env={**env, "FAKE_SECONDS_PER_ITER": "0"}, capture_output=True)  # fmt: skip
    assert json.loads((broken / "COMPLETED").read_text())["loss"] == final and times_started(broken) == 2

    # a job of the chain that starts after completion does nothing
    env["PBS_JOBID"] = "99.pbs1"
    r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "COMPLETED exists; nothing to do" in r.stdout

    calls = record.read_text().splitlines()
    assert calls[0] == "module load hpcx/2.20 cuda/12.6/12.6.1 cudnn/9.5/9.5.1 nccl/2.23/2.23.4-1"
    argv = shlex.split(calls[1])
    assert argv[:6] == ["-np", "16", "--npernode", "8", "--hostfile", str(run / "launch" / "hostfile.1.pbs1")]
    assert (run / "launch" / "hostfile.1.pbs1").read_text() == "hf0001 slots=8\nhf0002 slots=8\n"
    assert {"MASTER_ADDR", "MASTER_PORT", "PATH", "LD_LIBRARY_PATH"} <= {
        argv[i + 1] for i, a in enumerate(argv) if a == "-x"
    }
    assert argv[-4:] == ["cptkit", "train", str(recipe), "parallel.num_gpus=16"]
    env0 = json.loads((run / "env" / "rank-0.json").read_text())
    assert env0["MASTER_ADDR"] == "hf0001" and env0["MASTER_PORT"] == "29500" and env0["OMPI_COMM_WORLD_SIZE"] == "16"


def test_wrong_node_count_fails_fast(tmp_path, site_env, monkeypatch):
    """A broken hostfile (1 node where 2 were asked for) stops the job before launching anything."""
    run = tmp_path / "run"
    recipe = write_recipe(tmp_path, run, global_batch_size=32)
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text("")
    monkeypatch.setenv("CPTKIT_VENV", str(tmp_path / "venv"))
    profile = load_profile(ROOT / "launch" / "abci3.yaml")
    view = load_plan(recipe, ["parallel.num_gpus=16"])
    job = render.render_train(view, profile, nodes=2, walltime="01:00:00", workdir=str(tmp_path),
                              recipe_arg=str(recipe), overrides=[])  # fmt: skip
    bin_dir = tmp_path / "bin"
    stub(bin_dir, "mpirun", 'echo launched >> "$RECORD"\n')
    stub(bin_dir, "module", "true\n")
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("hf0001\n" * 8)
    record = tmp_path / "record.txt"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORD": str(record),
           "PBS_NODEFILE": str(nodefile), "PBS_JOBID": "7.pbs1"}  # fmt: skip
    r = subprocess.run(["bash", "-c", job.script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "expected 2 nodes, the scheduler gave 1: hf0001" in r.stderr
    assert not record.exists()
