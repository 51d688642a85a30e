"""`cptkit launch` and `cptkit status`: render, validate and submit cluster jobs; show a run's progress.

    cptkit launch recipes/tiny_cpu.yaml --cluster launch/local.yaml --dry-run
    cptkit launch recipes/X.yaml --cluster launch/abci3.yaml --nodes 8 --chain 5 --submit
    cptkit launch --tokenize data_mix/X.yaml --num-shards 64 --cluster launch/tsubame4.yaml --submit
    cptkit launch --cluster launch/slurm.yaml --submit --convert mcore-to-hf RUN/checkpoints/iter_0012500 OUT
    cptkit launch --eval RUN_DIR --suite ja --cluster launch/hyperpod.yaml --submit
    cptkit status RUN_DIR

Nothing here imports torch: this runs on login nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from cptkit.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "launch",
        help="render / submit cluster jobs (train chain, tokenize array, convert, eval array)",
        description="Render a job script for a cluster profile, validate it, print it (--dry-run) or submit it "
        "(--submit). Training jobs resume from the run's latest checkpoint and are chained until COMPLETED.",
    )
    p.add_argument("recipe", nargs="?", help="training recipe YAML (omit with --tokenize/--convert/--eval)")
    p.add_argument("overrides", nargs="*", help="recipe overrides key=value, passed on to `cptkit train`")
    p.add_argument("--cluster", required=True, metavar="PROFILE.yaml", help="cluster profile, e.g. launch/abci3.yaml")
    p.add_argument("--nodes", type=int, help="nodes for training (default: recipe GPUs / GPUs per node)")
    p.add_argument("--walltime", help="HH:MM:SS per job (default: the profile's default_walltime or max_walltime)")
    p.add_argument("--chain", type=int, default=1, metavar="K", help="submit K chained training jobs (PBS, SGE)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--tokenize", metavar="MIXTURE.yaml", help="array job: one task per shard, then a merge job")
    what.add_argument(
        "--convert",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="CPU job: `cptkit convert ARGS` (give it last: it takes the rest of the line)",
    )
    what.add_argument("--eval", metavar="RUN_DIR", help="array job: one task per checkpoint of RUN_DIR")
    p.add_argument("--num-shards", type=int, help="--tokenize: number of shards (array tasks)")
    p.add_argument("--suite", help="--eval: evaluation suite")
    p.add_argument("--num-iterations", type=int, help="--eval: checkpoints to evaluate (default: iter_* in RUN_DIR)")
    p.add_argument(
        "--work-dir",
        help="tokenize/convert/eval: where scripts, logs and jobs.jsonl go (training always uses the recipe's run_dir)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the script(s) and submit command(s) (default)")
    mode.add_argument("--submit", action="store_true", help="write the script(s) and submit them")
    p.set_defaults(func=_launch)

    s = subparsers.add_parser("status", help="iterations done, latest checkpoint and jobs of a run")
    s.add_argument("run_dir", help="the run directory (recipe run_dir)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.add_argument("--no-query", action="store_true", help="do not ask the scheduler for job states")
    s.add_argument("--verify", action="store_true", help="check every checkpoint's files against its checksums")
    s.add_argument(
        "--rebuild-pointer", action="store_true", help="point the latest pointer at the newest intact checkpoint"
    )
    s.set_defaults(func=_status)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UserError(f"must be at least 1, got {value}", field=name)


def _plan(args: argparse.Namespace):
    from cptkit.launch import render, validate
    from cptkit.launch.profile import load_profile
    from cptkit.launch.recipe import read_recipe

    # --convert takes the rest of the line: a launch option after it would silently go to `cptkit convert`
    # (an unsubmitted job whose script then fails on the unknown option).
    misplaced = [a for a in args.convert or () if a.split("=")[0] in ("--submit", "--walltime", "--work-dir")]
    if misplaced:
        raise UserError(
            f"{misplaced[0]} after --convert would be passed to `cptkit convert`; give launch's options before "
            "--convert (it takes the rest of the line)",
            field="--convert",
        )
    profile = load_profile(args.cluster)
    workdir = os.getcwd()
    walltime = args.walltime or profile.default_walltime or profile.max_walltime
    for name in ("nodes", "chain", "num_shards", "num_iterations"):
        _positive(f"--{name.replace('_', '-')}", getattr(args, name))
    if args.tokenize or args.convert is not None or args.eval:
        if args.recipe or args.overrides:
            raise UserError("give either a recipe or one of --tokenize/--convert/--eval, not both")
        validate.validate_walltime(profile, walltime)
    if args.tokenize:
        if not args.num_shards:
            raise UserError("--tokenize needs --num-shards N")
        work = Path(args.work_dir or f"runs/tokenize-{Path(args.tokenize).stem}")
        jobs = render.render_tokenize(
            args.tokenize,
            profile,
            num_shards=args.num_shards,
            workdir=workdir,
            log_dir=str((work / "logs").absolute()),
            walltime=walltime,
        )
        return profile, jobs, work
    if args.convert is not None:
        if not args.convert:
            raise UserError("--convert needs the `cptkit convert` arguments, e.g. mcore-to-hf CKPT OUT")
        work = Path(args.work_dir or "runs/convert")
        job = render.render_convert(
            args.convert, profile, workdir=workdir, log_dir=str((work / "logs").absolute()), walltime=walltime
        )
        return profile, [job], work
    if args.eval:
        if not args.suite:
            raise UserError("--eval needs --suite SUITE")
        n = args.num_iterations or len(list((Path(args.eval) / "checkpoints").glob("iter_*")))
        if n < 1:
            raise UserError("no checkpoints (iter_*) to evaluate; pass --num-iterations", file=args.eval)
        work = Path(args.work_dir or args.eval)
        job = render.render_eval(
            args.eval,
            args.suite,
            profile,
            num_iterations=n,
            workdir=workdir,
            log_dir=str((work / "logs" / "jobs").absolute()),
            walltime=walltime,
        )
        return profile, [job], work
    if not args.recipe:
        raise UserError("give a recipe, or --tokenize/--convert/--eval")
    recipe = read_recipe(args.recipe, args.overrides)
    nodes = validate.resolve_nodes(recipe, profile, args.nodes)
    validate.validate_train(recipe, profile, nodes, walltime)
    if args.chain > 1 and profile.scheduler == "local":
        raise UserError("--chain needs a batch scheduler; the local profile runs the job now", field="--chain")
    job = render.render_train(
        recipe,
        profile,
        nodes=nodes,
        walltime=walltime,
        workdir=workdir,
        recipe_arg=args.recipe,
        overrides=args.overrides,
        chain=args.chain,
    )
    if args.work_dir:
        raise UserError(
            "a training job keeps its scripts, logs and jobs.jsonl in the recipe's run_dir", field="--work-dir"
        )
    return profile, [job], Path(recipe.run_dir)


def _launch(args: argparse.Namespace) -> int:
    from cptkit.launch import submit

    profile, jobs, work = _plan(args)
    if not args.submit:
        scripts = {job.kind: work / "launch" / f"{job.kind}-<timestamp>.sh" for job in jobs}
        for job in jobs:
            print(f"### {scripts[job.kind]}")
            print(job.script)
        print("### submit")
        for cmd in submit.submit_commands(jobs, scripts, profile):
            print(shlex.join(cmd))
        return 0
    scripts = submit.write_scripts(jobs, work)
    log_dir = work / "logs" / "jobs" if jobs[0].kind in ("train", "eval") else work / "logs"
    entries = submit.submit(jobs, scripts, profile, work, log_dir)
    for e in entries:
        print(f"{e['kind']}: job {e['job_id']}  ({e['submit_command']})")
    print(f"recorded in {work / submit.JOBS_FILE}; follow with: cptkit status {work}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from cptkit.launch.status import format_status, summarize

    if args.verify or args.rebuild_pointer:  # checkpoint integrity: cptkit.model.integrity
        from cptkit.model.integrity import status_checks

        return status_checks(args.run_dir, verify=args.verify, rebuild_pointer=args.rebuild_pointer)
    s = summarize(args.run_dir, query=not args.no_query)
    if args.json:
        json.dump(s, sys.stdout, indent=2)
        print()
    else:
        print(format_status(s))
    return 0
