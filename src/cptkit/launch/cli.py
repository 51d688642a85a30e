"""`cptkit launch TARGET` and `cptkit status`: render, validate and submit cluster jobs; show a run's progress.

    cptkit launch train recipes/tiny_cpu.yaml --cluster launch/local.yaml --dry-run
    cptkit launch train recipes/X.yaml --cluster launch/abci3.yaml --nodes 8 --chain 5 --submit
    cptkit launch tokenize data_mix/X.yaml --num-shards 64 --cluster launch/tsubame4.yaml --submit
    cptkit launch convert --cluster launch/slurm.yaml --submit mcore-to-hf RUN/checkpoints/iter_0012500 OUT
    cptkit launch eval RUN_DIR --suite ja --cluster launch/hyperpod.yaml --submit
    cptkit launch release RUN_DIR --cluster launch/abci3.yaml --push my-org --submit
    cptkit status RUN_DIR

The targets are the classes in `targets.py` (add one there). The pre-subcommand forms (`cptkit launch RECIPE`,
`--tokenize`, `--convert`, `--eval`) still work for this release, with a one-line deprecation notice naming the new
form, as Megatron-LM keeps a renamed argument working with a warning before removing it.

Nothing here imports torch: this runs on login nodes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from cptkit.launch.targets import TARGETS, Convert

_LEGACY_FLAGS = {"--tokenize": "tokenize", "--eval": "eval", "--convert": "convert"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "launch",
        help="render / submit cluster jobs: train (chained), tokenize (array + merge), convert, eval (array), release",
        description="Render a job script for a cluster profile, validate it, print it (--dry-run, the default) or "
        "submit it (--submit). Training jobs resume from the run's latest checkpoint and are chained until COMPLETED.",
    )
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    for target in TARGETS.values():
        t = targets.add_parser(target.name, help=target.help, description=target.help)
        target.add_arguments(t)
        _common_options(t)
        t.set_defaults(func=_launch)
    # The old flag forms, rewritten before parsing: argparse would reject them before any handler runs.
    parse = p.parse_known_args
    p.parse_known_args = lambda args=None, namespace=None: parse(rewrite_legacy(args), namespace)  # type: ignore

    s = subparsers.add_parser("status", help="iterations done, latest checkpoint and jobs of a run")
    s.add_argument("run_dir", help="the run directory (recipe run_dir)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.add_argument("--no-query", action="store_true", help="do not ask the scheduler for job states")
    s.add_argument("--verify", action="store_true", help="check every checkpoint's files against its checksums")
    s.add_argument(
        "--rebuild-pointer", action="store_true", help="point the latest pointer at the newest intact checkpoint"
    )
    s.set_defaults(func=_status)


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", required=True, metavar="PROFILE.yaml", help="cluster profile, e.g. launch/abci3.yaml")
    p.add_argument("--walltime", help="HH:MM:SS per job (default: the profile's default_walltime or max_walltime)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the script(s) and submit command(s) (default)")
    mode.add_argument("--submit", action="store_true", help="write the script(s) and submit them")


def rewrite_legacy(argv: list[str] | None) -> list[str] | None:
    """`cptkit launch RECIPE ...` / `--tokenize M` / `--eval R` / `--convert ARGS` -> the subcommand form (+ notice)."""
    if not argv or argv[0] in TARGETS or argv[0] in ("-h", "--help"):
        return argv
    new = None
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag == "--convert":  # it took the rest of the line, as the convert target's arguments do
            new = ["convert", *argv[:i], *([value] if eq else []), *argv[i + 1 :]]
            break
        if flag in _LEGACY_FLAGS:
            taken = [value] if eq else argv[i + 1 : i + 2]
            new = [_LEGACY_FLAGS[flag], *taken, *argv[:i], *argv[i + 1 + (not eq) :]]
            break
    if new is None:
        # `cptkit launch RECIPE ...` (or options first); any other first word is a mistyped target for argparse.
        if not (argv[0].startswith("-") or argv[0].endswith((".yaml", ".yml")) or os.path.isfile(argv[0])):
            return argv
        new = ["train", *argv]
    print(
        f"cptkit launch: this form is deprecated and goes in the next release; use: cptkit launch {shlex.join(new)}",
        file=sys.stderr,
    )
    return new


def _launch(args: argparse.Namespace) -> int:
    from cptkit.launch import submit
    from cptkit.launch.profile import load_profile

    target = TARGETS[args.target]
    if isinstance(target, Convert):  # before the profile: a misplaced --submit must not be lost silently
        target.check_placement(args.convert_args)
    profile = load_profile(args.cluster)
    walltime = args.walltime or profile.default_walltime or profile.max_walltime
    launch = target.build(args, profile, walltime=walltime, workdir=os.getcwd())
    jobs, work = launch.jobs, launch.work_dir
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
    entries = submit.submit(jobs, scripts, profile, work, launch.log_dir)
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
