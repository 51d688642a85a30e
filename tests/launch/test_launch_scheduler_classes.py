"""One class per scheduler: submit/dependency syntax, job-id and status parsing, and no name branches elsewhere.

The goldens (test_launch_render.py) pin what the classes put into scripts; this file pins what they do on the login
node, where a wrong flag costs a queue wait.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cptkit.errors import UserError
from cptkit.launch import schedulers
from cptkit.launch.profile import Profile

LAUNCH_SRC = Path(schedulers.__file__).parent


@pytest.mark.parametrize(
    ("name", "ok", "expected"),
    [
        ("slurm", False, ["sbatch", "--parsable", "--dependency=afterany:41", "-p", "gpu", "job.sh"]),
        ("slurm", True, ["sbatch", "--parsable", "--dependency=afterok:41", "-p", "gpu", "job.sh"]),
        ("pbs", False, ["qsub", "-W", "depend=afterany:41", "-p", "gpu", "job.sh"]),
        ("pbs", True, ["qsub", "-W", "depend=afterok:41", "-p", "gpu", "job.sh"]),
        ("sge", True, ["qsub", "-terse", "-hold_jid", "41", "-p", "gpu", "job.sh"]),
        ("local", True, ["bash", "job.sh"]),
    ],
)
def test_submit_command_and_dependency_syntax(name, ok, expected):
    sched = schedulers.get(name)
    assert sched.submit_command("job.sh", depends_on="41", ok=ok, extra=["-p", "gpu"]) == expected
    first = sched.submit_command("job.sh", extra=["-p", "gpu"])
    assert not any("41" in a for a in first)


@pytest.mark.parametrize(
    ("name", "stdout", "job_id"),
    [
        ("slurm", "1234\n", "1234"),
        ("slurm", "1234;cluster-a\n", "1234"),
        ("pbs", "5678.pbs01\n", "5678.pbs01"),
        ("sge", "91.1-4:1\n", "91"),
        ("sge", "warning: something\n92\n", "92"),
    ],
)
def test_job_id_parsing(name, stdout, job_id):
    assert schedulers.get(name).parse_job_id(stdout) == job_id


def test_no_job_id_is_a_one_line_error():
    with pytest.raises(UserError, match="sbatch printed no job id"):
        schedulers.get("slurm").parse_job_id("\n")


def test_status_parsing():
    slurm, pbs, sge = (schedulers.get(n) for n in ("slurm", "pbs", "sge"))
    assert slurm.status_command("7") == ["squeue", "-h", "-j", "7", "-o", "%T"]
    assert slurm.parse_status(0, "RUNNING\n") == "running" and slurm.parse_status(1, "") == "finished"
    assert slurm.parse_status(0, "") == "finished"
    assert pbs.parse_status(0, '{"Jobs": {"7.pbs01": {"job_state": "F"}}}') == "F"
    assert pbs.parse_status(0, "not json") == "" and pbs.parse_status(153, "") == ""
    assert sge.parse_status(0, "job_number: 7") == "queued/running" and sge.parse_status(1, "") == "finished"
    assert schedulers.get("local").status_command("local-1") is None
    assert schedulers.get("local").query_state("local-1") == ""


def test_array_and_walltime_directives():
    h = dict(job_name="j", log_dir="/l", walltime="01:00:00", array_size=4)
    assert schedulers.get("slurm").header(**h)[-2:] == ["--time=01:00:00", "--array=0-3"]
    assert schedulers.get("pbs").header(**h)[-2:] == ["-l walltime=01:00:00", "-J 0-3"]
    assert schedulers.get("sge").header(**h)[-2:] == ["-l h_rt=01:00:00", "-t 1-4"]  # SGE task ids start at 1
    assert schedulers.get("sge").array_index == "$((SGE_TASK_ID - 1))"
    assert schedulers.get("local").header(**h) == []
    assert schedulers.get("slurm").watchdog_seconds(3600, 300) is None  # --signal warns the job
    assert schedulers.get("pbs").watchdog_seconds(3600, 300) == 3300


def test_profile_scheduler_choices_are_the_classes():
    import typing

    assert set(typing.get_args(Profile.model_fields["scheduler"].annotation)) == set(schedulers.SCHEDULERS)
    assert all(s.name == key for key, s in schedulers.SCHEDULERS.items())


_NAME_BRANCH = re.compile(r"""(scheduler|\.name)\s*(==|!=|in)\s*[("']|["'](slurm|pbs|sge|local)["']\s*:""")


def _name_branches(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if _NAME_BRANCH.search(line)]


def test_nothing_outside_schedulers_py_branches_on_the_scheduler_name():
    files = [p for p in LAUNCH_SRC.rglob("*") if p.suffix in (".py", ".j2") and p.name != "schedulers.py"]
    assert len(files) > 8
    found = {str(p.relative_to(LAUNCH_SRC)): _name_branches(p.read_text()) for p in files}
    assert not {k: v for k, v in found.items() if v}
    # not blind: the branches this refactor removed are caught
    assert _name_branches('    if profile.scheduler == "local":\n{% if scheduler == "slurm" %}\n"pbs": 1,')
    assert len(_name_branches('{% elif scheduler == "sge" %}\nif self.name == "slurm":')) == 2


def test_unsupported_launcher_names_the_field(tmp_path, site_env):
    from launchtest_util import ROOT

    from cptkit.launch.profile import load_profile

    path = tmp_path / "p.yaml"
    path.write_text((ROOT / "launch" / "abci3.yaml").read_text().replace("kind: mpirun", "kind: srun"))
    with pytest.raises(UserError, match=r"scheduler 'pbs' cannot start launcher.kind 'srun'; use mpirun, torchrun"):
        load_profile(path)
