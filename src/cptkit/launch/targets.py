"""`cptkit launch TARGET`: one class per kind of job — its arguments, its checks, and the jobs it renders.

    cptkit launch train recipes/X.yaml [key=value ...] --cluster launch/abci3.yaml --nodes 8 --chain 5 --submit
    cptkit launch tokenize data_mix/X.yaml --num-shards 64 --cluster launch/tsubame4.yaml --submit
    cptkit launch curate data_curation/swallowcode_exp3.yaml --num-shards 64 --cluster launch/abci3.yaml --submit
    cptkit launch eval runs/X --suite ja --cluster launch/hyperpod.yaml --submit
    cptkit launch convert --cluster launch/slurm.yaml --submit mcore-to-hf runs/X/checkpoints/iter_0012500 hf/X
    cptkit launch selftest --cluster launch/hyperpod.yaml --recipe recipes/swallowcode_exp1.yaml --submit
    cptkit launch release runs/X --cluster launch/abci3.yaml --push my-org --submit

Every target shares `--cluster`, `--walltime` and `--dry-run`/`--submit` (added by `cli.py`); a target's `build()`
turns its arguments into `Job`s plus the directory their scripts, logs and `jobs.jsonl` go to.

Extension point: a new target (`curate`, `selftest` and `release` are examples) is one `Target` subclass here —
`add_arguments()` and `build()`, rendering its job with `render.render_task()` like tokenize/eval do — and its entry in
`TARGETS`. The CLI, dry-run, submission, chaining and `cptkit status` need no change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from cptkit.errors import UserError

if TYPE_CHECKING:  # `cptkit --help` imports this module: keep it to argparse-level code
    from cptkit.launch.profile import Profile


@dataclass(frozen=True)
class Launch:
    """What a target renders: the jobs (in submit order), where their files go, and where the jobs log."""

    jobs: list  # list[render.Job]
    work_dir: Path
    log_dir: Path


def positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UserError(f"must be at least 1, got {value}", field=name)


class Target:
    name: ClassVar[str]
    help: ClassVar[str]
    work_dir_default: ClassVar[str | None] = None  # None: the target decides (train: the recipe's run_dir)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        raise NotImplementedError

    def build(self, args: argparse.Namespace, profile: Profile, *, walltime: str, workdir: str) -> Launch:
        raise NotImplementedError

    def work_dir(self, args: argparse.Namespace, default: str) -> Path:
        return Path(args.work_dir or default)


class Train(Target):
    name = "train"
    help = "training job(s) of a recipe, resumed from the latest checkpoint and chained until COMPLETED"

    def add_arguments(self, p):
        p.add_argument("recipe", help="training recipe YAML")
        p.add_argument("overrides", nargs="*", help="recipe overrides key=value, passed on to `cptkit train`")
        p.add_argument("--nodes", type=int, help="nodes (default: the recipe's parallel.num_gpus / GPUs per node)")
        p.add_argument("--chain", type=int, default=1, metavar="K", help="submit K chained jobs (PBS, SGE, SLURM)")

    def build(self, args, profile, *, walltime, workdir):
        from cptkit.launch import render, schedulers, validate

        positive("--nodes", args.nodes)
        positive("--chain", args.chain)
        plan = validate.load_plan(args.recipe, args.overrides)
        nodes = validate.resolve_nodes(plan, profile, args.nodes)
        validate.validate_train(plan, profile, nodes, walltime)
        if args.chain > 1 and not schedulers.get(profile.scheduler).chains:
            raise UserError("--chain needs a batch scheduler; the local profile runs the job now", field="--chain")
        job = render.render_train(
            plan,
            profile,
            nodes=nodes,
            walltime=walltime,
            workdir=workdir,
            recipe_arg=args.recipe,
            overrides=args.overrides,
            chain=args.chain,
        )
        run_dir = Path(plan.recipe.run_dir)  # scripts, logs and jobs.jsonl live next to the checkpoints
        return Launch([job], run_dir, run_dir / "logs" / "jobs")


class Tokenize(Target):
    name = "tokenize"
    help = "array job, one task per shard of a mixture, then a merge job after all of them succeeded"

    def add_arguments(self, p):
        p.add_argument("mixture", help="mixture YAML (data_mix/*.yaml)")
        p.add_argument("--num-shards", type=int, required=True, help="number of shards (array tasks)")
        p.add_argument("--work-dir", help="scripts, logs and jobs.jsonl (default: runs/tokenize-MIXTURE)")

    def build(self, args, profile, *, walltime, workdir):
        from cptkit.launch import render, validate

        positive("--num-shards", args.num_shards)
        validate.validate_walltime(profile, walltime)
        work = self.work_dir(args, f"runs/tokenize-{Path(args.mixture).stem}")
        log_dir = work / "logs"
        jobs = render.render_tokenize(
            args.mixture,
            profile,
            num_shards=args.num_shards,
            workdir=workdir,
            log_dir=str(log_dir.absolute()),
            walltime=walltime,
        )
        return Launch(jobs, work, log_dir)


class Eval(Target):
    name = "eval"
    help = "array job, one task per checkpoint of a run: convert and evaluate it"

    def add_arguments(self, p):
        p.add_argument("run_dir", metavar="RUN_DIR", help="the run whose checkpoints (iter_*) to evaluate")
        p.add_argument("--suite", required=True, help="evaluation suite")
        p.add_argument("--num-iterations", type=int, help="checkpoints to evaluate (default: iter_* in RUN_DIR)")
        p.add_argument("--work-dir", help="scripts, logs and jobs.jsonl (default: RUN_DIR)")
        p.add_argument(
            "--backend",
            choices=("vllm", "hf", "auto"),
            default="vllm",
            help="`cptkit eval --backend` in each task (default vllm: sampled code tasks as one n=10 call per task)",
        )
        p.add_argument(
            "--tensor-parallel-size",
            default="1",
            metavar="N|node",
            help="GPUs of the vLLM engine per checkpoint: 1 (default) takes the profile's eval resources, more (or "
            "`node`: the profile's gpus_per_node) one whole node",
        )

    def build(self, args, profile, *, walltime, workdir):
        from cptkit.launch import render, validate

        positive("--num-iterations", args.num_iterations)
        validate.validate_walltime(profile, walltime)
        n = args.num_iterations or len(list((Path(args.run_dir) / "checkpoints").glob("iter_*")))
        if n < 1:
            raise UserError("no checkpoints (iter_*) to evaluate; pass --num-iterations", file=args.run_dir)
        tp = self.tensor_parallel_size(args, profile)
        work = self.work_dir(args, args.run_dir)
        log_dir = work / "logs" / "jobs"
        job = render.render_eval(
            args.run_dir,
            args.suite,
            profile,
            num_iterations=n,
            workdir=workdir,
            log_dir=str(log_dir.absolute()),
            walltime=walltime,
            backend=args.backend,
            tensor_parallel_size=tp,
        )
        return Launch([job], work, log_dir)

    @staticmethod
    def tensor_parallel_size(args: argparse.Namespace, profile: Profile) -> int:
        value = str(args.tensor_parallel_size)
        if value == "node":
            tp = profile.gpus_per_node
        elif value.isdigit() and int(value) >= 1:
            tp = int(value)
        else:
            raise UserError(f"give a GPU count or `node`, got {value!r}", field="--tensor-parallel-size")
        if tp > profile.gpus_per_node:
            raise UserError(
                f"{tp} GPUs is more than the {profile.gpus_per_node} GPUs per node of {profile.name}; an evaluation "
                "task runs on one node",
                field="--tensor-parallel-size",
            )
        if tp > 1 and args.backend != "vllm":
            raise UserError("tensor parallelism is for the vllm backend", field="--tensor-parallel-size")
        return tp


class Convert(Target):
    name = "convert"
    help = "CPU job running `cptkit convert ARGS` (the convert arguments come last)"
    # Launch's own options: one of these among the convert arguments was meant for launch, not `cptkit convert`.
    LAUNCH_OPTIONS = ("--cluster", "--walltime", "--work-dir", "--dry-run", "--submit")

    def add_arguments(self, p):
        p.add_argument("--work-dir", help="scripts, logs and jobs.jsonl (default: runs/convert)")
        p.add_argument(
            "convert_args",
            nargs=argparse.REMAINDER,
            metavar="CONVERT_ARGS",
            help="the `cptkit convert` command line, e.g. mcore-to-hf CKPT OUT; launch's options go before it",
        )

    def build(self, args, profile, *, walltime, workdir):
        from cptkit.launch import render, validate

        convert_args = list(args.convert_args)
        if convert_args[:1] == ["--"]:
            convert_args = convert_args[1:]
        if not convert_args:
            raise UserError("give the `cptkit convert` arguments, e.g. mcore-to-hf CKPT OUT", field="CONVERT_ARGS")
        validate.validate_walltime(profile, walltime)
        work = self.work_dir(args, "runs/convert")
        log_dir = work / "logs"
        job = render.render_convert(
            convert_args, profile, workdir=workdir, log_dir=str(log_dir.absolute()), walltime=walltime
        )
        return Launch([job], work, log_dir)

    @classmethod
    def check_placement(cls, convert_args: list[str]) -> None:
        """A launch option after the convert arguments would silently go to `cptkit convert` (an unsubmitted job
        whose script then fails on the unknown option): refuse it."""
        bad = next((a.split("=")[0] for a in convert_args if a.split("=")[0] in cls.LAUNCH_OPTIONS), None)
        if bad:
            raise UserError(
                f"{bad} after the convert arguments would be passed to `cptkit convert`; give launch's options "
                "before them: cptkit launch convert --cluster P.yaml --submit mcore-to-hf CKPT OUT",
                field=bad,
            )


class Selftest(Target):
    """`cptkit selftest` as jobs: one per node count (default 1 and 2 nodes: in-node and across-node NCCL), each
    running one process per GPU through the profile's launcher, after the job-start network check."""

    name = "selftest"
    help = "GPU preflight (`cptkit selftest`) as jobs on 1 and 2 nodes: versions, TE, TP, bf16, resume, NCCL, MFU"
    DEFAULT_WALLTIME = "00:30:00"  # the checks take a few minutes; a short job starts sooner

    def add_arguments(self, p):
        p.add_argument("--nodes", type=int, nargs="+", default=[1, 2], metavar="N", help="node counts (default 1 2)")
        p.add_argument("--recipe", help="recipe the throughput check projects to (seq, micro batch, TP, run)")
        p.add_argument("--work-dir", help="scripts, logs, scratch checkpoints and JSON (default: runs/selftest)")

    def build(self, args, profile, *, walltime, workdir):
        import shlex

        from cptkit.launch import render, validate
        from cptkit.launch.profile import format_walltime, walltime_seconds

        for n in args.nodes:
            positive("--nodes", n)
        if len(set(args.nodes)) != len(args.nodes):
            raise UserError(f"node counts repeat: {args.nodes}", field="--nodes")
        if profile.max_nodes is not None and max(args.nodes) > profile.max_nodes:
            raise UserError(
                f"{max(args.nodes)} nodes exceeds the profile's max_nodes {profile.max_nodes}", field="--nodes"
            )
        if getattr(args, "walltime", None) is None:  # not given: short, within the site's limit
            limit = walltime_seconds(profile.max_walltime)
            walltime = format_walltime(min(walltime_seconds(self.DEFAULT_WALLTIME), limit))
        validate.validate_walltime(profile, walltime)
        if args.recipe:
            validate.load_plan(args.recipe, [])  # a bad recipe fails now, not in the queue
        work = self.work_dir(args, "runs/selftest")
        log_dir = work / "logs"
        jobs = []
        for nodes in args.nodes:
            run_dir = str((work / f"{nodes}n").absolute())
            cli = ["--workdir", run_dir] + (["--recipe", args.recipe] if args.recipe else [])
            world = nodes * profile.gpus_per_node
            directives = profile.directives("train", nodes=nodes, walltime=walltime, world_size=world)
            banner = [
                f"cptkit selftest: {nodes} node(s) x {profile.gpus_per_node} GPUs = {world} GPUs on {profile.name}",
                "Rendered by `cptkit launch selftest`. Exit 0: every check passed; 1: a check failed (see the table).",
            ]
            ctx = render._common(
                profile, "selftest", workdir, str(log_dir.absolute()), f"selftest-{nodes}n", walltime, None,
                directives, banner,
            )  # fmt: skip
            ctx.update(
                run_dir=run_dir,
                nodes=nodes,
                gpus_per_node=profile.gpus_per_node,
                launch_command=render.launch_command(profile, nodes, shlex.join(cli), subcommand="selftest"),
            )
            script = render._ENV.get_template("selftest.sh.j2").render(**ctx)
            # The kind names the script file and the jobs.jsonl entry: one per node count.
            jobs.append(render.Job(f"selftest-{nodes}n", f"selftest-{nodes}n", script))
        return Launch(jobs, work, log_dir)


def pipeline_env(path: str) -> dict[str, str]:
    """The `${VAR}`s a pipeline YAML names that are set here: the values the launch checked its inputs with."""
    names = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", Path(path).read_text(encoding="utf-8"))
    return {name: os.environ[name] for name in sorted(set(names)) if name in os.environ}


class Curate(Target):
    """`cptkit curate` as an array job: task i of N runs shard i (`--shard-index i --num-shards N`).

    The pipeline is loaded and its inputs globbed here, on the login node, so a bad file, an unset `${VAR}`, an
    input glob that matches nothing, a shard count that disagrees with an earlier run into the same output, or an LLM
    engine wider than a node fails now instead of in 64 queued tasks."""

    name = "curate"
    help = "array job, one task per shard of a curation pipeline (CPU for filters, a GPU node for LLM rewriting)"

    def add_arguments(self, p):
        p.add_argument("pipeline", help="curation pipeline YAML (data_curation/*.yaml)")
        p.add_argument("--num-shards", type=int, help="number of shards (array tasks; default: the YAML's `tasks`)")
        p.add_argument("--work-dir", help="scripts, logs and jobs.jsonl (default: runs/curate-PIPELINE)")

    def build(self, args, profile, *, walltime, workdir):
        from cptkit.curate.config import load_pipeline
        from cptkit.curate.run import plan
        from cptkit.launch import render, validate

        positive("--num-shards", args.num_shards)
        validate.validate_walltime(profile, walltime)
        pipe = load_pipeline(args.pipeline)
        the_plan = plan(pipe, args.pipeline, args.num_shards)
        n, files = the_plan["tasks"], len(the_plan["input_files"])
        if n > files:  # datatrove gives each task whole files: tasks past the file count would read nothing
            raise UserError(
                f"{n} shards but only {files} input file(s); a shard reads whole files, so use at most {files}",
                field="--num-shards",
            )
        self._check_earlier_run(Path(pipe.output) / ".curate" / "plan.json", the_plan, args.pipeline)
        gpus = pipe.gpus_per_shard
        if gpus > profile.gpus_per_node:
            raise UserError(
                f"an LLM stage uses tensor_parallel_size {gpus}, more than the {profile.gpus_per_node} GPUs per node "
                f"of {profile.name}",
                file=args.pipeline,
                field="stages.engine.tensor_parallel_size",
            )
        work = self.work_dir(args, f"runs/curate-{Path(args.pipeline).stem}")
        log_dir = work / "logs"
        job = render.render_curate(
            args.pipeline,
            profile,
            name=pipe.name,
            output=pipe.output,
            stages=[s.label for s in pipe.stages],
            gpus_per_shard=gpus if pipe.needs_gpu else 0,
            num_shards=n,
            workdir=workdir,
            log_dir=str(log_dir.absolute()),
            walltime=walltime,
            pipeline_env=pipeline_env(args.pipeline),
        )
        return Launch([job], work, log_dir)

    @staticmethod
    def _check_earlier_run(path: Path, the_plan: dict, file: str) -> None:
        """Every task must agree with what the output already holds (`cptkit curate` refuses a changed plan): say so
        before submitting, without writing anything (a dry run leaves the output untouched)."""
        if not path.exists():
            return
        old = json.loads(path.read_text())
        changed = sorted(k for k in the_plan if old.get(k) != the_plan[k])
        if changed:
            hint = f" (it used {old.get('tasks')} shards)" if "tasks" in changed else ""
            raise UserError(
                f"{path.parent.parent} was made by a different pipeline (changed: {', '.join(changed)}){hint}; "
                "use a new output directory, or delete this one to start over",
                file=file,
            )


class Release(Target):
    """`cptkit release RUN_DIR --every-eval [OUT]` (or `--iteration N`) as one CPU job, optionally pushing.

    Checked here, before anything is queued: the run and its evaluated checkpoints (or the checkpoint asked for),
    the Hub namespace, and that the job will find a token: PBS and Grid Engine jobs do not inherit this shell's
    HF_TOKEN, so there the token file of `hf auth login` is needed."""

    name = "release"
    help = "CPU job: `cptkit release` (export, logit check, model card) of every evaluated checkpoint; --push uploads"

    def add_arguments(self, p):
        p.add_argument("run_dir", metavar="RUN_DIR", help="the run whose checkpoints to release")
        p.add_argument("out", metavar="OUT", nargs="?", help="where release folders go (default: RUN_DIR/release)")
        which = p.add_mutually_exclusive_group()
        which.add_argument("--iteration", type=int, help="release this checkpoint only")
        which.add_argument(
            "--every-eval", action="store_true", help="every checkpoint `cptkit eval` has results for (default)"
        )
        p.add_argument("--push", metavar="ORG[/NAME]", help="upload each release folder to the Hugging Face Hub")
        p.add_argument("--private", action="store_true", help="create new repositories private")
        p.add_argument(
            "--revision-per-checkpoint",
            action="store_true",
            help="one repository, a branch iter_NNNNNNN per checkpoint (default: a repository per checkpoint)",
        )
        p.add_argument("--work-dir", help="scripts, logs and jobs.jsonl (default: RUN_DIR)")

    def build(self, args, profile, *, walltime, workdir):
        from cptkit.launch import render, schedulers, validate
        from cptkit.release.push import HUB_ENV

        validate.validate_walltime(profile, walltime)
        run = Path(args.run_dir)
        if not (run / "checkpoints").is_dir():
            raise UserError("not a run directory (no checkpoints/)", file=args.run_dir)
        if args.iteration is not None and not (run / "checkpoints" / f"iter_{args.iteration:07d}").is_dir():
            raise UserError(f"no checkpoint iter_{args.iteration:07d}", file=run / "checkpoints", field="--iteration")
        evaluated = 1 if args.iteration is not None else len({p.parent for p in (run / "eval").glob("iter_*/*.json")})
        if not evaluated:
            raise UserError(
                "no evaluated checkpoints (eval/iter_*/*.json): evaluate first (cptkit launch eval), or release one "
                "checkpoint with --iteration N",
                file=args.run_dir,
            )
        if args.push:
            self._check_push(args.push, profile, schedulers.get(profile.scheduler))
            if "/" in args.push and evaluated > 1 and not args.revision_per_checkpoint:
                raise UserError(
                    f"{args.push} names one repository but {evaluated} checkpoints are evaluated: give --push ORG "
                    "(a repository per checkpoint, named after its release) or add --revision-per-checkpoint",
                    field="--push",
                )
        elif args.private or args.revision_per_checkpoint:
            raise UserError("--private and --revision-per-checkpoint apply to --push ORG", field="--push")
        work = self.work_dir(args, args.run_dir)
        log_dir = work / "logs" / "jobs"
        job = render.render_release(
            args.run_dir,
            profile,
            out=args.out,
            iteration=args.iteration,
            push=args.push,
            private=args.private,
            revision_per_checkpoint=args.revision_per_checkpoint,
            hub_env={k: os.environ[k] for k in HUB_ENV if os.environ.get(k)} if args.push else {},
            workdir=workdir,
            log_dir=str(log_dir.absolute()),
            walltime=walltime,
        )
        return Launch([job], work, log_dir)

    @staticmethod
    def _check_push(push: str, profile: Profile, sched) -> None:
        from cptkit.release.push import check_repo_id, token_file, token_source

        if push.count("/") > 1 or not push.strip("/"):
            raise UserError(f"{push!r}: give ORG or ORG/NAME", field="--push")
        check_repo_id(push if "/" in push else f"{push}/name")  # the namespace's rules; names come from the run
        source = token_source()
        if source is None:
            raise UserError(
                f"no Hugging Face token for the job: log in once with `hf auth login` (writes {token_file()}), or "
                "set HF_TOKEN",
                field="--push",
            )
        inherits = sched.passes_environment or "-V" in profile.submit_args
        if source == "env" and not inherits:
            raise UserError(
                f"HF_TOKEN is set here, but {sched.title} jobs do not inherit this shell's environment: log in with "
                f"`hf auth login` (the token file {token_file()} must be on a filesystem the nodes see)",
                field="--push",
            )


TARGETS: dict[str, Target] = {
    t.name: t for t in (Train(), Tokenize(), Convert(), Eval(), Selftest(), Curate(), Release())
}
