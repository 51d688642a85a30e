"""`cptkit merge OUT_DIR --base BASE --model DIR[=WEIGHT] ...`: task arithmetic / chat vector on HF folders.

mergekit and torch are imported inside the handler only.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "merge",
        help="task arithmetic / chat vector: BASE + sum w * (MODEL - BASE) on HF folders (mergekit)",
        description="Merge Hugging Face model folders by task arithmetic: OUT = BASE + sum_i w_i * (MODEL_i - BASE). "
        "The chat vector (CPT + (Instruct - base)) is --base BASE --model CPT=1 --model INSTRUCT=1. Runs mergekit's "
        "task_arithmetic tensor by tensor; the output appears complete or not at all.",
    )
    p.add_argument("out_dir", help="new model folder (must not exist or be empty)")
    p.add_argument("--base", required=True, help="the base model both task vectors are taken against")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="DIR[=WEIGHT]",
        help="a model and its weight (default 1.0); repeatable",
    )
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="output dtype (default: the base's)")
    p.add_argument("--tokenizer-from", help="copy tokenizer files from this folder (default: the first --model)")
    p.add_argument("--dry-run", action="store_true", help="check the inputs and print the merge; write nothing")
    p.set_defaults(func=_merge)


def _merge(args: argparse.Namespace) -> int:
    from cptkit.merge.task_arithmetic import merge, parse_model

    merge(
        args.out_dir,
        base=args.base,
        models=[parse_model(m) for m in args.model],
        dtype=args.dtype,
        tokenizer_from=args.tokenizer_from,
        dry_run=args.dry_run,
    )
    return 0
