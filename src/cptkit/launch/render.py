"""Render job scripts from a profile and a job description (templates in `cptkit/launch/templates/`).

The scripts are plain bash a cluster user would write by hand: scheduler directives, `module load`/venv/container,
a hostfile, `MASTER_ADDR`/`MASTER_PORT`, one process per GPU, and signal handling so the trainer checkpoints before
the walltime ends or when the job is pre-empted. Rendering is pure (no clock, no environment reads) so the output can
be pinned by golden files.

    from cptkit.launch import render, validate
    from cptkit.launch.profile import load_profile
    profile = load_profile("launch/abci3.yaml")
    plan = validate.load_plan("recipes/swallowcode_exp1.yaml")
    job = render.render_train(plan, profile, nodes=8, walltime="48:00:00", workdir="/path/to/cptkit",
                              recipe_arg="recipes/swallowcode_exp1.yaml", overrides=[])
    print(job.script)
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from cptkit.errors import UserError
from cptkit.launch import schedulers
from cptkit.launch.profile import Profile, walltime_seconds
from cptkit.train.plan import Plan

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("cptkit.launch", "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
_ENV.filters["q"] = lambda v: shlex.quote(str(v))
# Profile `env` values may refer to the job's own variables (`$LD_LIBRARY_PATH`): double quotes keep `$` live.
_ENV.filters["dq"] = lambda v: '"' + re.sub(r'(["\\`])', r"\\\1", str(v)) + '"'


@dataclass(frozen=True)
class Job:
    """One script to submit. `after` names the job (by kind) it must wait for; `chain` is how many to submit."""

    kind: str  # train | tokenize | merge | convert | eval | curate | release | selftest-Nn
    name: str
    script: str
    array_size: int | None = None
    after: str | None = None
    chain: int = 1
    notes: list[str] = field(default_factory=list)


def _q(words: list[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


def _cptkit(profile: Profile) -> str:
    return profile.cptkit  # a command line as written in the profile, e.g. "cptkit" or "apptainer ... cptkit"


def _container(profile: Profile, gpu: bool) -> str:
    env = profile.environment
    if env.kind in ("apptainer", "singularity"):
        parts = [env.kind, "exec"] + (["--nv"] if gpu else [])
        if env.binds:
            parts += ["--bind", ",".join(env.binds)]
        return _q([*parts, env.image]) + " "
    return ""


def _task_prefix(profile: Profile, gpu: bool) -> str:
    """What runs a one-process job step in the profile's environment (pyxis containers need an srun step)."""
    if profile.environment.kind == "pyxis":
        return _q(["srun", "--ntasks=1", *_pyxis(profile)]) + " "
    return _container(profile, gpu)


def _pyxis(profile: Profile) -> list[str]:
    env = profile.environment
    if env.kind != "pyxis":
        return []
    out = [f"--container-image={env.image}"]
    if env.binds:
        out.append(f"--container-mounts={','.join(env.binds)}")
    return out


def _join(lines: list[str]) -> str:
    return " \\\n    ".join(line for line in lines if line)


def launch_command(profile: Profile, nodes: int, train_args: str, subcommand: str = "train") -> str:
    """The line that starts one trainer process per GPU (`subcommand`: another per-GPU cptkit command, `selftest`)."""
    launcher = profile.launcher
    extra = _q(launcher.extra_args)
    trainer = f"{_container(profile, gpu=True)}{_cptkit(profile)} {subcommand} {train_args}"
    if launcher.kind == "mpirun":
        exports = " ".join(
            f"-x {v}"
            for v in [
                "MASTER_ADDR",
                "MASTER_PORT",
                "PATH",
                "LD_LIBRARY_PATH",
                "CPTKIT_CLUSTER",
                "CPTKIT_JOB_ID",
                *launcher.export_env,
            ]
        )
        head = 'mpirun -np "$NUM_GPUS" --npernode "$GPUS_PER_NODE" --hostfile "$HOSTFILE"'
        return _join([head, exports, extra, trainer])
    if launcher.kind == "srun":
        head = 'srun --ntasks="$NUM_GPUS" --ntasks-per-node="$GPUS_PER_NODE" --kill-on-bad-exit=1'
        ranks = (
            "bash -c 'export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS; exec \"$@\"' rank"
        )
        return _join([head, _q(_pyxis(profile)), extra, ranks, trainer])
    if nodes != 1:
        raise UserError(
            f"the torchrun launcher runs on one node, not {nodes}; use mpirun or srun", field="launcher.kind"
        )
    head = 'torchrun --standalone --nnodes=1 --nproc-per-node="$GPUS_PER_NODE" --no-python'
    # torchrun dies on SIGUSR1; ignoring it there is inherited by the workers until the trainer installs its handler.
    return (
        "(trap '' USR1; exec "
        + _join([_container(profile, gpu=True) + head, extra, _cptkit(profile)])
        + f" {subcommand} {train_args})"
    )


def _exports(profile: Profile) -> dict[str, str]:
    # The trainer records the cluster profile and job id in RUN_DIR/logs/jobs_env.jsonl (train/jobs_env.py), which
    # the model card of `cptkit release` states; the profile's own env may override them.
    sched = schedulers.get(profile.scheduler)
    return {"CPTKIT_CLUSTER": profile.name, "CPTKIT_JOB_ID": sched.job_id, **profile.env}


def _common(
    profile: Profile,
    kind: str,
    workdir: str,
    log_dir: str,
    job_name: str,
    walltime: str | None,
    array_size: int | None,
    directives: list[str],
    banner: list[str],
) -> dict:
    sched = schedulers.get(profile.scheduler)
    header = sched.header(job_name=job_name, log_dir=log_dir, walltime=walltime, array_size=array_size)
    return {
        "prefix": sched.prefix,
        "directives": ([*header, *directives] if sched.prefix else []),
        "banner": banner,
        "sched": sched,
        "job_id": sched.job_id,
        "array_index": sched.array_index if (array_size or 0) > 1 else "0",
        "array_size": array_size,
        "workdir": workdir,
        "env": profile.environment,
        "exports": _exports(profile),
        "launcher": profile.launcher,
        "kind": kind,
        "cptkit": _cptkit(profile),  # templates that run cptkit themselves (the job-start network check)
    }


def render_train(
    plan: Plan,
    profile: Profile,
    *,
    nodes: int,
    walltime: str,
    workdir: str,
    recipe_arg: str,
    overrides: list[str],
    chain: int = 1,
) -> Job:
    """The training job of a validated plan (`validate.validate_train`): nodes x GPUs per node = the plan's world."""
    name, run_dir = plan.recipe.name, str(plan.recipe.run_dir)
    world = plan.world_size
    lead = profile.checkpoint_lead_seconds
    sched = schedulers.get(profile.scheduler)
    directives = sched.train_directives(lead) + profile.directives(
        "train", nodes=nodes, walltime=walltime, world_size=world
    )
    banner = [
        f"cptkit training job: {name} ({recipe_arg}) on {profile.name}",
        f"{nodes} node(s) x {profile.gpus_per_node} GPUs = {world} GPUs; {plan.layout()}",
        f"Rendered by `cptkit launch train`. Resumes from $RUN_DIR's latest checkpoint; {sched.resume_note(lead)}.",
    ]
    ctx = _common(profile, "train", workdir, f"{run_dir}/logs/jobs", name[:60], walltime, None, directives, banner)
    wall = walltime_seconds(walltime)
    ctx.update(
        run_dir=run_dir,
        nodes=nodes,
        gpus_per_node=profile.gpus_per_node,
        lead=lead,
        max_requeues=profile.max_requeues,
        watchdog_seconds=sched.watchdog_seconds(wall, lead),
        launch_command=launch_command(profile, nodes, _q([recipe_arg, *overrides])),
    )
    return Job("train", name, _ENV.get_template("train.sh.j2").render(**ctx), chain=chain)


def render_task(
    profile: Profile,
    kind: str,
    resources: str,
    name: str,
    command: str,
    *,
    workdir: str,
    log_dir: str,
    walltime: str | None,
    array_size: int | None,
    banner: list[str],
    after: str | None = None,
    world_size: int = 1,
) -> Job:
    """A one-node job (or array of them) running `command` in the profile's environment; `resources` names the
    profile's resource list (cpu, eval, train with one node). `$ARRAY_INDEX` (0-based) and `$NUM_TASKS` are set for
    arrays; `world_size` fills `{world_size}` (the GPUs a one-node `train` resource list asks for)."""
    wall = walltime or profile.max_walltime
    directives = profile.directives(resources, nodes=1, walltime=wall, world_size=world_size)
    ctx = _common(profile, kind, workdir, log_dir, name[:60], walltime, array_size, directives, banner)
    ctx["command"] = command
    return Job(kind, name, _ENV.get_template("task.sh.j2").render(**ctx), array_size=array_size, after=after)


def render_tokenize(
    mixture: str, profile: Profile, *, num_shards: int, workdir: str, log_dir: str, walltime: str | None
) -> list[Job]:
    """An array job (one task per shard) and a merge job that waits for all of it."""
    stem = Path(mixture).stem
    prefix = f"{_task_prefix(profile, gpu=False)}{_cptkit(profile)} tokenize {shlex.quote(mixture)}"
    shards = render_task(
        profile,
        "tokenize",
        "cpu",
        f"tok-{stem}",
        _join([prefix, '--shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"']),
        workdir=workdir,
        log_dir=log_dir,
        walltime=walltime,
        array_size=num_shards,
        banner=[
            f"cptkit tokenization: {mixture}, {num_shards} shard(s), one array task each",
            "Rendered by `cptkit launch tokenize`; the merge job runs after every shard succeeded.",
        ],
    )
    merge = render_task(
        profile,
        "merge",
        "cpu",
        f"tok-{stem}-merge",
        f"{prefix} --merge",
        workdir=workdir,
        log_dir=log_dir,
        walltime=walltime,
        array_size=None,
        after="tokenize",
        banner=[f"cptkit tokenization merge: {mixture}", "Rendered by `cptkit launch tokenize`."],
    )
    return [shards, merge]


def render_convert(
    convert_args: list[str], profile: Profile, *, workdir: str, log_dir: str, walltime: str | None
) -> Job:
    command = f"{_task_prefix(profile, gpu=False)}{_cptkit(profile)} convert {_q(convert_args)}"
    banner = [f"cptkit conversion (CPU): convert {' '.join(convert_args)}", "Rendered by `cptkit launch convert`."]
    return render_task(
        profile,
        "convert",
        "cpu",
        f"convert-{convert_args[0]}",
        command,
        workdir=workdir,
        log_dir=log_dir,
        walltime=walltime,
        array_size=None,
        banner=banner,
    )


def render_eval(
    run_dir: str,
    suite: str,
    profile: Profile,
    *,
    num_iterations: int,
    workdir: str,
    log_dir: str,
    walltime: str | None,
    backend: str = "vllm",
    tensor_parallel_size: int = 1,
) -> Job:
    """An array job, one task per saved checkpoint: `cptkit eval RUN --suite S --iteration-index i`.

    With `backend` vllm (the default: sampled code tasks as one n = 10 call per task, cptkit.eval.vllm_gen) the
    engine is tensor-parallel over `tensor_parallel_size` GPUs: one GPU takes the profile's `eval` resources, more
    take one whole node of its `train` resources (the target checks they fit in a node)."""
    resources = "eval" if tensor_parallel_size == 1 else "train"
    options = [f"--backend {shlex.quote(backend)}"]
    if backend == "vllm":
        options.append(f"--model-args tensor_parallel_size={tensor_parallel_size}")
    command = _join(
        [
            f"{_task_prefix(profile, gpu=True)}{_cptkit(profile)} eval {shlex.quote(run_dir)} --suite {shlex.quote(suite)}",
            " ".join(options),
            '--iteration-index "$ARRAY_INDEX"',
        ]
    )
    engine = (
        f"vLLM on {tensor_parallel_size} GPU(s) per task ({'the eval resources' if resources == 'eval' else 'one node'})"
        if backend == "vllm"
        else f"backend {backend} on the eval resources"
    )
    banner = [
        f"cptkit evaluation: suite {suite} on {num_iterations} checkpoint(s) of {run_dir}, one array task each",
        f"{engine}. Rendered by `cptkit launch eval`.",
    ]
    return render_task(
        profile,
        "eval",
        resources,
        f"eval-{suite}",
        command,
        workdir=workdir,
        log_dir=log_dir,
        walltime=walltime,
        array_size=num_iterations,
        banner=banner,
        world_size=profile.gpus_per_node if resources == "train" else 1,
    )


def render_curate(
    pipeline: str,
    profile: Profile,
    *,
    name: str,
    output: str,
    stages: list[str],
    gpus_per_shard: int,
    num_shards: int,
    workdir: str,
    log_dir: str,
    walltime: str | None,
    pipeline_env: dict[str, str] | None = None,
) -> Job:
    """An array job, one task per shard of a curation pipeline (`cptkit curate P --shard-index i --num-shards N`).

    CPU-only pipelines (syntax, pylint, language, select) get the profile's `cpu` resources. A pipeline with an LLM
    stage gets a GPU node: the `eval` resources (one GPU) when its engines use one GPU, else one whole node of the
    `train` resources, whose GPUs vLLM's tensor parallelism shares (`Target` checks they are enough). No merge job:
    the last task to finish writes the statistics (the `cptkit curate` array contract). `pipeline_env`: the
    `${VAR}`s the pipeline names, with their values at launch, passed on the command line (Grid Engine jobs inherit
    no environment, so the tasks read the files the launch checked)."""
    gpu = gpus_per_shard > 0
    pinned = f"env {_q([f'{k}={v}' for k, v in sorted((pipeline_env or {}).items())])} " if pipeline_env else ""
    resources = "cpu" if not gpu else ("eval" if gpus_per_shard == 1 else "train")
    command = _join(
        [
            f"{_task_prefix(profile, gpu=gpu)}{pinned}{_cptkit(profile)} curate {shlex.quote(pipeline)}",
            '--shard-index "$ARRAY_INDEX" --num-shards "$NUM_TASKS"',
        ]
    )
    where = f"GPU node, LLM engine on {gpus_per_shard} GPU(s) per task" if gpu else "CPU resources (no LLM stage)"
    banner = [
        f"cptkit curation: {name} ({pipeline}), {num_shards} shard(s), one array task each",
        f"{where}.",
        f"Stages: {', '.join(stages)}. Output: {output}",
        "Rendered by `cptkit launch curate`. A task may be rerun (finished shards are skipped, journals resume the",
        "rest); the last task to finish writes curate_stats.{json,md,png}.",
    ]
    return render_task(
        profile,
        "curate",
        resources,
        f"curate-{name}",
        command,
        workdir=workdir,
        log_dir=log_dir,
        walltime=walltime,
        array_size=num_shards,
        banner=banner,
        world_size=profile.gpus_per_node if resources == "train" else 1,
    )


def render_release(
    run_dir: str,
    profile: Profile,
    *,
    out: str | None,
    iteration: int | None,
    push: str | None,
    private: bool,
    revision_per_checkpoint: bool,
    hub_env: dict[str, str],
    workdir: str,
    log_dir: str,
    walltime: str | None,
) -> Job:
    """A CPU job running `cptkit release RUN_DIR --every-eval [OUT]` (or `--iteration N`): the export, its logit
    check and the model card of each checkpoint, then with `push` the upload. `hub_env`: the Hub variables set at
    launch (HF_HOME, HF_TOKEN_PATH, HF_ENDPOINT; never the token itself), put on the command line because PBS and
    Grid Engine jobs do not inherit the environment."""
    which = ["--iteration", str(iteration)] if iteration is not None else ["--every-eval"]
    # OUT right after RUN_DIR: argparse fills both optional positionals in one go, so OUT after an option is refused.
    args = [run_dir, *([out] if out else []), *which]
    if push:
        args += ["--push", push, *(["--private"] if private else [])]
        args += ["--revision-per-checkpoint"] if revision_per_checkpoint else []
    pinned = f"env {_q([f'{k}={v}' for k, v in sorted(hub_env.items())])} " if hub_env else ""
    command = f"{_task_prefix(profile, gpu=False)}{pinned}{_cptkit(profile)} release {_q(args)}"
    what = f"checkpoint {iteration}" if iteration is not None else "every evaluated checkpoint"
    if push:
        layout = "a branch per checkpoint" if revision_per_checkpoint else "a repository per checkpoint"
        upload = f"Then uploads each to the Hub under {push} ({layout}{', private' if private else ''})."
    else:
        upload = "No upload (--push not given)."
    banner = [
        f"cptkit release (CPU): {what} of {run_dir} -> {out or run_dir + '/release'}",
        "Export as `convert mcore-to-hf` (checked by logits) and a model card from the run's records, per checkpoint.",
        upload,
        "Rendered by `cptkit launch release`.",
    ]
    return render_task(
        profile,
        "release",
        "cpu",
        f"release-{Path(run_dir).name}",
        command,
        workdir=workdir,
        log_dir=log_dir,
        walltime=walltime,
        array_size=None,
        banner=banner,
    )
