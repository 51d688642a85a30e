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
    plan.set_defaults(func=_plan)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML (recipes/*.yaml)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="override a recipe field, e.g. training.train_iters=100"
    )


def _plan(args: argparse.Namespace) -> int:
    from cptkit.train.plan import make_plan
    from cptkit.train.recipe import load_recipe

    print(make_plan(load_recipe(args.recipe, args.overrides)).render())
    return 0


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
