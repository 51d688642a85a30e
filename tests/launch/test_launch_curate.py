"""`cptkit launch curate`: the array job of a curation pipeline — resources by pipeline kind, the checks made on the
login node, and the `local` profile running every shard end to end (the real schedulers: test_launch_schedulers.py).

    .venv/bin/pytest -q tests/launch/test_launch_curate.py
"""

from __future__ import annotations

import gzip
import json
import os
import sys

import pytest
from jobscript_util import curate_output_problems, write_curate_pipeline
from launchtest_util import ROOT
from test_launch_render import curate_job

from cptkit.cli import main
from cptkit.launch.profile import load_profile


def launch(*argv: str) -> int:
    return main(["launch", "curate", *argv])


def test_cpu_pipelines_get_cpu_resources_llm_pipelines_a_gpu_node(site_env):
    """Stages 1-2 on the profile's CPU resources; an LLM stage on GPUs (one GPU: `eval`; more: one `train` node)."""
    logs = "/scratch/logs"
    abci = load_profile(ROOT / "launch" / "abci3.yaml")
    cpu = curate_job(abci, "data_curation/swallowcode_exp3.yaml", logs).script
    gpu = curate_job(abci, "data_curation/swallowmath.yaml", logs).script  # TP 8
    one = curate_job(abci, "data_curation/swallowmath.yaml", logs, gpus=1).script
    assert "#PBS -q rt_HC" in cpu and "ngpus" not in cpu and "#PBS -J 0-63" in cpu
    assert "#PBS -q rt_HF" in gpu and "#PBS -l select=1:ncpus=192:ngpus=8" in gpu  # one node, not the train's 8
    assert "#PBS -q rt_HG" in one and "ngpus=1" in one
    for script, pipeline in ((cpu, "swallowcode_exp3"), (gpu, "swallowmath")):
        assert (
            f'curate data_curation/{pipeline}.yaml \\\n    --shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"'
            in script
        )
    # The pipeline's `${VAR}`s travel with the command (Grid Engine jobs inherit no environment).
    assert "env CURATE_ROOT=/scratch/curated RAW_ROOT=/scratch/raw cptkit curate" in cpu
    assert "env CURATE_ROOT=/scratch/curated MODEL_ROOT=/scratch/models RAW_ROOT=/scratch/raw cptkit curate" in gpu
    ts = load_profile(ROOT / "launch" / "tsubame4.yaml")
    assert "#$ -l cpu_160=1" in curate_job(ts, "data_curation/swallowcode_exp4.yaml", logs).script
    ts_gpu = curate_job(ts, "data_curation/swallowcode.yaml", logs).script  # TP 4 = one node_f
    assert "#$ -l node_f=1" in ts_gpu and "#$ -t 1-64" in ts_gpu and "ARRAY_INDEX=$((SGE_TASK_ID - 1))" in ts_gpu
    sge = load_profile(ROOT / "launch" / "test-sge.yaml")
    assert "#$ -pe mpi 2" in curate_job(sge, "data_curation/swallowcode.yaml", logs, gpus=2).script  # {world_size}
    hp = curate_job(load_profile(ROOT / "launch" / "hyperpod.yaml"), "data_curation/swallowcode.yaml", logs).script
    assert "#SBATCH --array=0-63" in hp and "#SBATCH --exclusive" in hp and "--nodes=1" in hp
    assert "srun --ntasks=1 --container-image=/fsx/images/cptkit.sqsh" in hp  # the pyxis image runs the shard


def test_dry_run_prints_the_array_and_writes_nothing(tmp_path, site_env, capsys, monkeypatch):
    pipe = write_curate_pipeline(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert launch(str(pipe), "--cluster", str(ROOT / "launch" / "test-slurm.yaml")) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-1" in out and "#SBATCH --cpus-per-task=1" in out  # tasks: 2 from the YAML
    assert f"cptkit curate {pipe} \\\n    --shard-index" in out and "### submit\nsbatch --parsable" in out
    assert "runs/curate-pipe/launch/curate-<timestamp>.sh" in out
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
    assert launch(str(pipe), "--num-shards", "1", "--cluster", str(ROOT / "launch" / "test-sge.yaml")) == 0
    out = capsys.readouterr().out
    assert "#$ -t" not in out and "\nARRAY_INDEX=0\nNUM_TASKS=1\n" in out  # one shard: a plain job, index 0


@pytest.mark.parametrize(
    ("change", "extra", "message"),
    [
        ("none", ["--num-shards", "3"], "--num-shards: 3 shards but only 2 input file(s)"),
        ("none", ["--num-shards", "0"], "--num-shards: must be at least 1"),
        ("no-input", [], "input.paths[0]: no file matches"),
        ("bad-stage", [], "stages.1"),
        (
            "wide-engine",
            [],
            "stages.engine.tensor_parallel_size: an LLM stage uses tensor_parallel_size 4, more than the 2",
        ),
        ("earlier-run", [], "was made by a different pipeline (changed: tasks) (it used 1 shards)"),
    ],
)
def test_bad_input_fails_at_launch_with_one_line(change, extra, message, tmp_path, site_env, capsys, monkeypatch):
    """What would fail in every queued task fails now: exit 2, one line naming the file or flag, nothing submitted."""
    pipe = write_curate_pipeline(tmp_path)
    text = pipe.read_text()
    if change == "no-input":
        pipe.write_text(text.replace("/in/*.jsonl", "/nothing/*.jsonl"))
    elif change == "bad-stage":
        pipe.write_text(text.replace("kind: language", "kind: languages"))
    elif change == "wide-engine":
        pipe.write_text(text + f"  - kind: scor\n    engine: {{model: {tmp_path}, tensor_parallel_size: 4}}\n")
    elif change == "earlier-run":  # what `cptkit curate --num-shards 1` recorded
        from cptkit.curate.config import load_pipeline
        from cptkit.curate.run import check_plan, plan

        check_plan(tmp_path / "out", plan(load_pipeline(pipe), str(pipe), 1), str(pipe))
        earlier = (tmp_path / "out" / ".curate" / "plan.json").read_text()
    monkeypatch.chdir(tmp_path)
    rc = launch(str(pipe), *extra, "--cluster", str(ROOT / "launch" / "test-slurm.yaml"))
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if change == "earlier-run":  # the output is left as it was; the same shard count is accepted
        assert (tmp_path / "out" / ".curate" / "plan.json").read_text() == earlier
        assert launch(str(pipe), "--num-shards", "1", "--cluster", str(ROOT / "launch" / "test-slurm.yaml")) == 0


def test_local_submit_runs_every_shard_and_the_last_writes_statistics(tmp_path, site_env, monkeypatch, capsys):
    """The `local` profile runs the rendered array script once per index: the whole output, accounted for."""
    pipe = write_curate_pipeline(tmp_path)
    monkeypatch.setenv("PATH", f"{sys.prefix}/bin{os.pathsep}{os.environ['PATH']}")  # this venv's `cptkit`
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    rc = launch(str(pipe), "--cluster", str(ROOT / "launch" / "local.yaml"), "--work-dir", str(work), "--submit")
    assert rc == 0, capsys.readouterr().err
    (entry,) = [json.loads(line) for line in (work / "jobs.jsonl").read_text().splitlines()]
    assert entry["kind"] == "curate" and entry["array_size"] == 2 and entry["exit_code"] == 0
    logs = "".join(p.read_text() for p in sorted((work / "logs").glob("*.out")))
    assert "curate task 0 of 2" in logs and "curate task 1 of 2" in logs
    out = tmp_path / "out"
    assert curate_output_problems(out) == []
    # Not blind: a lost rejected record, a kept record that should have been dropped, missing statistics.
    (rejected,) = [p for p in (out / "rejected" / "language").glob("*.jsonl.gz") if gzip.decompress(p.read_bytes())]
    rejected.unlink()
    with gzip.open(next((out / "data").glob("*.jsonl.gz")), "at") as f:
        f.write(json.dumps({"id": "syntax-9", "text": "def f(:\n"}) + "\n")
    (out / "curate_stats.json").unlink()
    problems = curate_output_problems(out)
    assert any("not each input record once" in p for p in problems), problems
    assert "syntax-9 kept" in problems and "no curate_stats.json" in problems
