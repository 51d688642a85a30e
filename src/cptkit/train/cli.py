"""`cptkit train RECIPE [key=value ...]` and `cptkit plan RECIPE [key=value ...]`.

`plan` and `train --dry-run` need neither torch nor a GPU: they print the resolved recipe and what follows from it
(layout, batch arithmetic, schedule, memory per GPU) and fail with a one-line error on any inconsistency.
`train` runs one process per GPU under torchrun or mpirun (or a single process without either); on CPU it uses the
gloo backend and cptkit's CPU shims (tests and the demo only).

    cptkit plan recipes/swallowcode_exp1.yaml
    cptkit train recipes/tiny_cpu.yaml --dry-run
    cptkit train recipes/tiny_cpu.yaml run_dir=/tmp/tiny training.train_iters=30
    cptkit train recipes/tiny_cpu.yaml run_dir=/tmp/tiny --resume-from 10   # e.g. when iteration 20 is damaged
    torchrun --nproc-per-node 2 -m cptkit.cli train recipes/tiny_cpu.yaml parallel.num_gpus=2
    cptkit train schema -o docs/recipe.md      # the recipe field reference, generated from the schema (torch-free)
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a recipe on megatron-core (resumes from the run's latest checkpoint)",
        description="Run continual pre-training from a recipe; key=value overrides any recipe field. "
        "`cptkit train schema [-o FILE]` prints the recipe field reference (Markdown, generated from the schema; "
        "docs/recipe.md is this output).",
    )
    _common(train)
    train.add_argument(
        "--dry-run", action="store_true", help="print the resolved recipe and plan, then exit (schema -o: print)"
    )
    train.add_argument(
        "--resume-from",
        type=int,
        metavar="ITER",
        help="resume from checkpoint iteration ITER instead of the latest pointer (= checkpoint.resume_from=ITER)",
    )
    train.add_argument(
        "-o", "--output", default=None, help="with `schema`: write the reference to this file (atomically)"
    )
    train.set_defaults(func=_train)

    plan = subparsers.add_parser(
        "plan",
        help="show what a recipe implies: layout, batches, iterations, memory per GPU",
        description="Resolve a recipe and print its plan; errors on any inconsistency.",
    )
    _common(plan)
    plan.add_argument(
        "--cluster", metavar="PROFILE", help="cluster profile (launch/*.yaml): warn if one job cannot finish the run"
    )
    plan.add_argument("--walltime", help="job walltime HH:MM:SS (default: the profile's default, else its maximum)")
    plan.add_argument("--mfu", type=float, default=None, help="MFU to assume for the time estimate (default 0.40)")
    plan.set_defaults(func=_plan)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML (recipes/*.yaml)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="override a recipe field, e.g. training.train_iters=100"
    )


def _plan(args: argparse.Namespace) -> int:
    from cptkit.train.plan import make_plan
    from cptkit.train.recipe import load_recipe

    plan = make_plan(load_recipe(args.recipe, args.overrides))
    print(plan.render())
    if getattr(args, "cluster", None):
        _walltime_note(plan, args)
    return 0


def _walltime_note(plan, args: argparse.Namespace) -> None:
    """`plan --cluster`: how long the run takes and whether it needs `--chain N` there."""
    from cptkit.launch.profile import load_profile, walltime_seconds
    from cptkit.train.plan import PLANNING_MFU, estimate_walltime

    profile = load_profile(args.cluster)
    walltime = args.walltime or profile.default_walltime or profile.max_walltime
    try:
        seconds = walltime_seconds(walltime)
    except ValueError as e:
        from cptkit.errors import UserError

        raise UserError(str(e), field="--walltime") from None
    est = estimate_walltime(
        plan, seconds, lead_s=profile.checkpoint_lead_seconds, mfu=args.mfu if args.mfu is not None else PLANNING_MFU
    )
    print(
        f"walltime          {est.run_seconds / 3600:,.1f} h at {est.mfu:.0%} MFU on {profile.name} "
        f"({est.seconds_per_iteration:.2f} s/iteration); one {walltime} job trains {est.job_seconds / 3600:,.1f} h "
        f"-> {est.jobs} job(s)"
    )
    warning = est.warning(walltime, profile.name)
    if warning:
        print(f"warning: {warning}")


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cptkit.errors import UserError

    # `train` takes a recipe path, so the reference is `train schema` rather than a sub-parser (a file named
    # "schema" in the current directory is still trained as a recipe).
    if args.recipe == "schema" and not Path(args.recipe).is_file():
        if args.overrides:
            raise UserError(f"`cptkit train schema` takes no overrides, got {' '.join(args.overrides)}")
        return _schema(args.output, args.dry_run)
    if args.output is not None:
        raise UserError("-o/--output is only for `cptkit train schema`", file="command line", field="--output")
    from cptkit.train.plan import make_plan
    from cptkit.train.recipe import load_recipe, resolved_yaml

    overrides = list(args.overrides)
    if args.resume_from is not None:
        overrides.append(f"checkpoint.resume_from={args.resume_from}")
    recipe = load_recipe(args.recipe, overrides)
    if args.dry_run:
        plan = make_plan(recipe)
        print("# resolved recipe")
        print(resolved_yaml(recipe))
        print("# plan")
        print(plan.render())
        return 0
    _quiet_known_warnings()
    from cptkit.train.loop import train

    return train(recipe)


def _schema(output: str | None, dry_run: bool) -> int:
    import sys

    from cptkit.train.schema_doc import markdown

    text = markdown()
    if output and not dry_run:
        from cptkit.util.atomic import write_text

        write_text(output, text)
        print(f"wrote {output}")
    else:
        sys.stdout.write(text)
    return 0


def _quiet_known_warnings() -> None:
    """megatron-core's import-time notices that say nothing about this run (no TE/apex on CPU, torch deprecations
    inside dist_checkpointing) would bury the training log; anything else still shows."""
    import warnings

    for message in (
        "Transformer Engine and Apex are not installed",
        "`load_state_dict` is deprecated",
        "Please use DTensor instead",
    ):
        warnings.filterwarnings("ignore", message=f".*{message}")
