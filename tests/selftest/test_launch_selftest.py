"""`cptkit launch selftest` and the job-script points of issue 17: HyperPod GRES optional and the job-start network
check, TSUBAME's `qsub -g` and system modules (overridable), the Swallow environment variables."""

from __future__ import annotations

import argparse
import subprocess

import pytest

from cptkit.cli import main
from cptkit.errors import UserError
from cptkit.launch import render
from cptkit.launch.profile import load_profile
from cptkit.launch.targets import TARGETS
from cptkit.launch.validate import load_plan, resolve_nodes
from tests.launch.launchtest_util import ROOT, SITE_ENV, UNSET


@pytest.fixture
def site(monkeypatch):
    for k, v in SITE_ENV.items():
        monkeypatch.setenv(k, v)
    for k in UNSET:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(ROOT)


def selftest_jobs(profile_name: str, tmp_path, nodes=(1, 2), walltime=None, recipe=None):
    profile = load_profile(ROOT / "launch" / f"{profile_name}.yaml")
    args = argparse.Namespace(nodes=list(nodes), recipe=recipe, work_dir=str(tmp_path), walltime=walltime)
    w = walltime or profile.default_walltime or profile.max_walltime
    return TARGETS["selftest"].build(args, profile, walltime=w, workdir="/home/user/cptkit").jobs


def bash_n(script: str) -> int:
    return subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode


def test_selftest_jobs_on_one_and_two_nodes(site, tmp_path):
    jobs = selftest_jobs("hyperpod", tmp_path, recipe="recipes/swallowcode_exp1.yaml")
    assert [j.kind for j in jobs] == ["selftest-1n", "selftest-2n"]
    one, two = (j.script for j in jobs)
    for s in (one, two):
        assert bash_n(s) == 0
        assert "#SBATCH --time=00:30:00" in s  # short by default, not the profile's 48 h
        assert "cptkit selftest network" in s  # EFA checked before the GPU checks
        assert f"cptkit selftest --workdir {tmp_path}/" in s and "--recipe recipes/swallowcode_exp1.yaml" in s
        assert "export RANK=$SLURM_PROCID" in s  # one rank per GPU, as the training job
    assert "#SBATCH --nodes=1" in one and "#SBATCH --nodes=2" in two
    assert bash_n(two.replace("\nfi\n", "\n", 1)) != 0  # the syntax check is not blind


def test_selftest_with_mpirun_and_walltime(site, tmp_path):
    (job,) = selftest_jobs("tsubame4", tmp_path, nodes=(2,), walltime="01:00:00")
    assert "#$ -l node_f=2" in job.script and "#$ -l h_rt=01:00:00" in job.script
    assert (
        'mpirun -np "$NUM_GPUS" --npernode "$GPUS_PER_NODE"' in job.script and "cptkit selftest --workdir" in job.script
    )
    assert bash_n(job.script) == 0


def test_selftest_bad_nodes(site, tmp_path):
    with pytest.raises(UserError, match="--nodes"):
        selftest_jobs("hyperpod", tmp_path, nodes=(0,))
    with pytest.raises(UserError, match="repeat"):
        selftest_jobs("hyperpod", tmp_path, nodes=(2, 2))
    with pytest.raises(UserError, match="torchrun launcher runs on one node"):
        selftest_jobs("local", tmp_path, nodes=(2,))
    assert len(selftest_jobs("local", tmp_path, nodes=(1,))) == 1


def test_tsubame_group_on_qsub_command_line_and_modules(site, monkeypatch, capsys):
    assert main(["launch", "train", "recipes/swallowcode_exp1.yaml", "--cluster", "launch/tsubame4.yaml",
                 "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "qsub -terse -g tga-example " in out and "#$ -g" not in out
    assert "module load cuda/12.1.0 cudnn/9.0.0 nccl/2.20.5 openmpi/5.0.2-gcc\n" in out and "hpcx/2.17.1" not in out
    assert 'export TORCH_NCCL_AVOID_RECORD_STREAMS="1"' in out and 'export UB_SKIPMC="1"' in out
    assert "-x TORCH_NCCL_AVOID_RECORD_STREAMS -x UB_SKIPMC" in out  # passed on to every rank
    monkeypatch.setenv("TSUBAME_MODULES", "cuda/12.8.0 openmpi/5.0.7-gcc")
    assert main(["launch", "train", "recipes/swallowcode_exp1.yaml", "--cluster", "launch/tsubame4.yaml",
                 "--dry-run"]) == 0  # fmt: skip
    assert "module load cuda/12.8.0 openmpi/5.0.7-gcc\n" in capsys.readouterr().out


def _train(profile_name: str) -> str:
    profile = load_profile(ROOT / "launch" / f"{profile_name}.yaml")
    plan = load_plan(ROOT / "recipes" / "swallowcode_exp1.yaml", [])
    nodes = resolve_nodes(plan, profile, None)
    return render.render_train(plan, profile, nodes=nodes, walltime="48:00:00", workdir="/w",
                               recipe_arg="recipes/swallowcode_exp1.yaml", overrides=[]).script  # fmt: skip


def test_hyperpod_gres_is_optional(site, monkeypatch):
    assert "--gpus-per-node" not in _train("hyperpod")  # off by default, as in the Swallow script
    monkeypatch.setenv("HYPERPOD_GRES", "--gpus-per-node=8")
    s = _train("hyperpod")
    assert "#SBATCH --ntasks-per-node=8\n#SBATCH --gpus-per-node=8\n#SBATCH --exclusive" in s


def test_hyperpod_network_check_and_host_venv_mode(site):
    image = _train("hyperpod")
    assert ('srun --ntasks="$NODES" --ntasks-per-node=1 --container-image=/fsx/images/cptkit.sqsh '
            "--container-mounts=/fsx:/fsx cptkit selftest network") in image  # fmt: skip
    assert image.index("cptkit selftest network") < image.index("    cptkit train recipes")  # before training starts
    assert "LD_LIBRARY_PATH=" not in image  # the image's own EFA libraries
    venv = _train("hyperpod-venv")
    assert "source /home/user/cptkit/.venv/bin/activate" in venv and "mpirun -np" in venv
    assert 'mpirun -np "$NODES" --npernode 1 --hostfile "$HOSTFILE"' in venv and "selftest network" in venv
    assert 'export LD_LIBRARY_PATH="/opt/amazon/efa/lib:' in venv
    assert "network" not in _train("abci3")  # only profiles that expect a network plugin check it
