"""Golden files of every profile's rendered scripts (train, tokenize array + merge, convert, eval array with vLLM on one
GPU and on a whole node, curate array on CPU and on GPU, release), and `bash -n`.

The goldens were reviewed by eye once; a change to a template shows up here as a diff. To regenerate them after an
intended change: `CPTKIT_UPDATE_GOLDENS=1 .venv/bin/pytest tests/launch/test_launch_render.py`, then review `git diff`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from launchtest_util import PROFILES, ROOT

from cptkit.launch import render
from cptkit.launch.profile import load_profile
from cptkit.launch.validate import load_plan, resolve_nodes, validate_train

GOLDEN = Path(__file__).parent / "golden"
WORKDIR = "/home/user/cptkit"
RECIPE = {"local": "recipes/tiny_cpu.yaml", "test-slurm": "recipes/tiny_cpu.yaml", "test-sge": "recipes/tiny_cpu.yaml"}
OVERRIDES = {"test-slurm": ["parallel.num_gpus=2"], "test-sge": ["parallel.num_gpus=2"]}


def render_all(name: str) -> dict[str, str]:
    profile = load_profile(ROOT / "launch" / f"{name}.yaml")
    recipe_arg = RECIPE.get(name, "recipes/swallowcode_exp1.yaml")
    overrides = OVERRIDES.get(name, [])
    plan = load_plan(ROOT / recipe_arg, overrides)
    recipe = plan.recipe
    nodes = resolve_nodes(plan, profile, None)
    walltime = profile.default_walltime or profile.max_walltime
    validate_train(plan, profile, nodes, walltime)
    train = render.render_train(
        plan,
        profile,
        nodes=nodes,
        walltime=walltime,
        workdir=WORKDIR,
        recipe_arg=recipe_arg,
        overrides=overrides,
        chain=3,
    )
    logs = "/scratch/cptkit/logs"
    tok, merge = render.render_tokenize(
        "data_mix/swallowcode_exp1.yaml", profile, num_shards=16, workdir=WORKDIR, log_dir=logs, walltime="04:00:00"
    )
    conv = render.render_convert(
        ["mcore-to-hf", f"{recipe.run_dir}/checkpoints/iter_0012500", "/scratch/hf/out"],
        profile,
        workdir=WORKDIR,
        log_dir=logs,
        walltime="02:00:00",
    )
    ev = render.render_eval(
        recipe.run_dir, "ja", profile, num_iterations=5, workdir=WORKDIR, log_dir=logs, walltime="04:00:00"
    )
    # vLLM tensor-parallel over a whole node per checkpoint (`cptkit launch eval --tensor-parallel-size node`)
    ev_node = render.render_eval(
        recipe.run_dir, "future_code_ja", profile, num_iterations=5, workdir=WORKDIR, log_dir=logs,
        walltime="04:00:00", tensor_parallel_size=profile.gpus_per_node,
    )  # fmt: skip
    rel = render.render_release(
        recipe.run_dir,
        profile,
        out=None,
        iteration=None,
        push="tokyotech-llm",
        private=False,
        revision_per_checkpoint=False,
        hub_env={},
        workdir=WORKDIR,
        log_dir=logs,
        walltime="04:00:00",
    )
    cur = curate_job(profile, "data_curation/swallowcode_exp3.yaml", logs)
    # The GPU form: an LLM engine on 4 GPUs (all of them on a smaller node; one GPU takes the `eval` resources).
    cur_gpu = curate_job(profile, "data_curation/swallowcode.yaml", logs, gpus=min(4, profile.gpus_per_node))
    return {
        "curate": cur.script,
        "curate-gpu": cur_gpu.script,
        "train": train.script,
        "tokenize": tok.script,
        "merge": merge.script,
        "convert": conv.script,
        "eval": ev.script,
        "eval-node": ev_node.script,
        "release": rel.script,
    }


def curate_job(profile, pipeline: str, logs: str, gpus: int | None = None) -> render.Job:
    from cptkit.curate.config import load_pipeline
    from cptkit.launch.targets import pipeline_env

    pipe = load_pipeline(ROOT / pipeline)
    return render.render_curate(
        pipeline,
        profile,
        name=pipe.name,
        output=pipe.output,
        stages=[s.label for s in pipe.stages],
        gpus_per_shard=pipe.gpus_per_shard if gpus is None else gpus,
        num_shards=64,
        workdir=WORKDIR,
        log_dir=logs,
        walltime="04:00:00",
        pipeline_env=pipeline_env(ROOT / pipeline),
    )


def bash_n(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("name", PROFILES)
def test_rendered_scripts_match_goldens_and_parse(name, site_env):
    scripts = render_all(name)
    for kind, text in scripts.items():
        r = bash_n(text)
        assert r.returncode == 0, f"{name}/{kind}: bash -n: {r.stderr}"
        path = GOLDEN / f"{name}.{kind}.sh"
        if os.environ.get("CPTKIT_UPDATE_GOLDENS"):
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"no golden {path}; run with CPTKIT_UPDATE_GOLDENS=1 and review it"
        assert text == path.read_text(), f"{name}/{kind} differs from {path} (regenerate with CPTKIT_UPDATE_GOLDENS=1)"


def test_every_profile_has_goldens():
    have = {p.name.split(".")[0] for p in GOLDEN.glob("*.sh")}
    assert have == set(PROFILES)


def test_bash_n_catches_a_broken_script(site_env):
    """The syntax check is not blind: drop one `fi` from a real script and bash -n fails."""
    text = render_all("tsubame4")["train"]
    assert bash_n(text).returncode == 0
    assert bash_n(text.replace("\nfi\n", "\n", 1)).returncode != 0


def test_scheduler_specific_lines(site_env):
    """The points a cluster user checks first, per scheduler (the goldens pin the rest)."""
    s = render_all("tsubame4")
    assert "#$ -l node_f=16" in s["train"] and "-g tga-example" not in s["train"]  # `qsub -g` (submit_args)
    assert "awk '!seen[$1]++ {print $1}' \"$PE_HOSTFILE\"" in s["train"]
    assert "#$ -t 1-16" in s["tokenize"] and "ARRAY_INDEX=$((SGE_TASK_ID - 1))" in s["tokenize"]
    a = render_all("abci3")
    assert "#PBS -l select=8:ncpus=192:ngpus=8" in a["train"] and "#PBS -P gab00000" in a["train"]
    assert 'sort -u "$PBS_NODEFILE"' in a["train"] and "#PBS -J 0-15" in a["tokenize"]
    assert "(sleep 172200 && kill -USR1 $$) 2>/dev/null &" in a["train"]  # 48 h default walltime - 600 s lead
    h = render_all("hyperpod")
    assert "#SBATCH --signal=B:USR1@600" in h["train"] and "#SBATCH --requeue" in h["train"]
    assert "--container-image=/fsx/images/cptkit.sqsh" in h["train"]
    assert 'export FI_PROVIDER="efa"' in h["train"]
    assert "LD_LIBRARY_PATH=" not in h["train"]  # the image's own EFA/aws-ofi-nccl, not the host's
    assert "--gpus-per-node" not in h["train"]  # GRES is optional (HYPERPOD_GRES)
    assert 'scontrol requeue "$SLURM_JOB_ID"' in h["train"]
    assert '--shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"' in h["tokenize"]
    assert '--iteration-index "$ARRAY_INDEX"' in h["eval"]
    # the vLLM path: one GPU per checkpoint on the eval resources, or a whole node when tensor-parallel
    assert "--backend vllm --model-args tensor_parallel_size=1" in h["eval"] and "#SBATCH --nodes=1" in h["eval"]
    assert "--model-args tensor_parallel_size=4" in s["eval-node"] and "#$ -l node_f=1" in s["eval-node"]
    assert "#$ -l node_q=1" in s["eval"]
    assert "#PBS -l select=1:ncpus=192:ngpus=8" in a["eval-node"] and "tensor_parallel_size=8" in a["eval-node"]
    assert "#PBS -l select=1:ncpus=24:ngpus=1" in a["eval"]
    assert "tokenize data_mix/swallowcode_exp1.yaml --merge" in h["merge"]


def test_apptainer_and_torchrun_limits(site_env):
    """Containers wrap the trainer (mpirun starts apptainer per rank); torchrun is refused for more than one node."""
    from cptkit.errors import UserError
    from cptkit.launch.profile import Environment, Launcher

    p = load_profile(ROOT / "launch" / "tsubame4.yaml")
    p = p.model_copy(update={"environment": Environment(kind="apptainer", image="/apps/cptkit.sif", binds=["/gs/bs"])})
    line = render.launch_command(p, 2, "recipes/x.yaml")
    assert line.endswith("apptainer exec --nv --bind /gs/bs /apps/cptkit.sif cptkit train recipes/x.yaml"), line
    p = p.model_copy(update={"launcher": Launcher(kind="torchrun")})
    with pytest.raises(UserError, match="torchrun launcher runs on one node, not 2"):
        render.launch_command(p, 2, "recipes/x.yaml")


def test_train_banner_is_the_plans_layout(site_env):
    """The banner's numbers come from the Plan: a token-budget recipe shows the iterations the trainer will run."""
    profile = load_profile(ROOT / "launch" / "hyperpod.yaml")
    plan = load_plan(ROOT / "recipes" / "llama31_8b.yaml")
    job = render.render_train(plan, profile, nodes=8, walltime="24:00:00", workdir=WORKDIR,
                              recipe_arg="recipes/llama31_8b.yaml", overrides=[])  # fmt: skip
    line = "# 8 node(s) x 8 GPUs = 64 GPUs; TP 2 PP 1 CP 1 DP 32; global batch 1024, micro batch 1, 5961 iterations"
    assert f"{line} = 50.00B tokens\n" in job.script
    half = load_plan(ROOT / "recipes" / "llama31_8b.yaml", ["training.train_tokens=25B"])
    assert "2981 iterations = 25.01B tokens" in half.layout()  # not blind: the budget changes the line
