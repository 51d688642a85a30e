"""`cptkit mix show | resolve | check | schema`.

Only `mix check` imports megatron-core (and torch), inside its handler; the rest runs on a login node.

    cptkit mix show data_mix/demo.yaml
    cptkit mix resolve data_mix/demo.yaml -o blends/
    cptkit mix check data_mix/demo.yaml --samples 2000 --seq-length 1024
    cptkit mix schema > docs/mixture.md
"""

from __future__ import annotations

import argparse
import json
import sys

from cptkit.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    mix = subparsers.add_parser(
        "mix",
        help="data mixtures: show targets and epochs, resolve to a Megatron blend, check the realized shares",
        description="Data mixtures (data_mix/*.yaml): show, resolve to a Megatron blend, check realized shares.",
    )
    sub = mix.add_subparsers(dest="mix_command", metavar="<command>", required=True)

    show = sub.add_parser(
        "show",
        help="table of targets, shares, available tokens and epochs per source and group, with warnings",
        description="Print targets, shares, available tokens (from each prefix's .idx) and epochs per source and "
        "per group, and warnings (epochs over max_epochs, groups off their percent, targets not summing to the "
        "budget). Prefixes not tokenized yet are shown as such. Writes nothing.",
    )
    show.add_argument("file", help="mixture YAML, e.g. data_mix/demo.yaml")
    show.add_argument("--json", action="store_true", help="print the table as JSON instead")
    show.set_defaults(func=_show)

    res = sub.add_parser(
        "resolve",
        help="write the Megatron blend (data-args file + JSON with fingerprint)",
        description="Resolve the mixture against the tokenized prefixes and write NAME.data-args.txt (for "
        "Megatron-LM --data-args-path: 'weight prefix' pairs, weights = tokens) and NAME.blend.json (for cptkit "
        "train, with the fingerprint). Fails naming how many prefixes are not tokenized and the first few; the full "
        "list is written to OUT_DIR/NAME.unusable-prefixes.txt.",
    )
    res.add_argument("file", help="mixture YAML")
    res.add_argument("-o", "--out-dir", default="blends", help="directory to write into (default: %(default)s)")
    res.add_argument("--dry-run", action="store_true", help="print the blend and what would be written; write nothing")
    res.set_defaults(func=_resolve)

    chk = sub.add_parser(
        "check",
        help="build megatron-core's blended dataset and print realized vs target token shares",
        description="Build megatron-core's BlendedMegatronDatasetBuilder + GPTDataset over the tokenized prefixes "
        "(CPU, no process group) and print the realized token share of each source next to its target. Exit 1 if a "
        "source is off by more than --tolerance-points.",
    )
    chk.add_argument("file", nargs="?", help="mixture YAML (omit with --recipe: the recipe's data.mixture)")
    chk.add_argument(
        "--recipe",
        help="check the blend this training recipe reads: its mixture, seed, seq_length and split, and (unless "
        "--samples) its number of training samples",
    )
    chk.add_argument("--samples", type=int, help="number of training samples (sequences) to draw")
    chk.add_argument("--seq-length", type=int, help="tokens per sample")
    chk.add_argument("--seed", type=int, default=1234, help="Megatron's data seed (default: %(default)s)")
    chk.add_argument(
        "--eod-id", type=int, default=None, help="end-of-document token id if no prefix manifest records it"
    )
    chk.add_argument(
        "--tolerance-points", type=float, default=0.5, help="allowed |realized - target| share (default: %(default)s)"
    )
    chk.add_argument("--json", action="store_true", help="print the result as JSON")
    chk.add_argument("--dry-run", action="store_true", help="print the blend that would be built; build nothing")
    chk.set_defaults(func=_check)

    sch = sub.add_parser(
        "schema",
        help="print the mixture field reference (Markdown, generated from the schema)",
        description="Print the mixture field reference as Markdown, generated from the pydantic models' field "
        "descriptions (docs/mixture.md is this output).",
    )
    sch.add_argument("-o", "--output", default=None, help="write to this file (atomically) instead of stdout")
    sch.add_argument("--dry-run", action="store_true", help="with -o: print instead of writing")
    sch.set_defaults(func=_schema)


def _show(args: argparse.Namespace) -> int:
    from cptkit.mix.report import render, summarize
    from cptkit.mix.resolve import plan
    from cptkit.mix.schema import load_mixture

    mixture = load_mixture(args.file)
    summary = summarize(mixture, plan(mixture))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        sys.stdout.write(render(summary))
    return 0


def _resolve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cptkit.mix.report import summarize
    from cptkit.mix.resolve import plan, resolve
    from cptkit.mix.schema import load_mixture

    mixture = load_mixture(args.file)
    out = Path(args.out_dir)
    # Prefixes that are not usable: the error names the first few; the full list goes beside the blend (not in a
    # dry run, which writes nothing).
    missing_list = None if args.dry_run else out / f"{mixture.name}.unusable-prefixes.txt"
    blend = resolve(mixture, missing_list)
    for w in summarize(mixture, plan(mixture))["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if args.dry_run:
        sys.stdout.write(blend.data_args_text())
        print(f"fingerprint {blend.fingerprint}")
        print(
            f"dry run: would write {out / (blend.mixture + '.data-args.txt')} and {out / (blend.mixture + '.blend.json')}"
        )
        return 0
    json_path, args_path = blend.write(out)
    print(f"wrote {args_path} ({len(blend.entries)} prefixes) and {json_path}")
    print(f"fingerprint {blend.fingerprint}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from cptkit.mix.check import check_file, check_recipe, render

    if args.recipe:
        if args.file or args.seq_length is not None:
            raise UserError("--recipe takes the mixture and --seq-length from the recipe; give neither")
        if args.samples is not None and args.samples <= 0:
            raise UserError("--samples must be positive")
        result = check_recipe(args.recipe, samples=args.samples, eod_id=args.eod_id, dry_run=args.dry_run)
    else:
        if args.file is None or args.samples is None or args.seq_length is None:
            raise UserError("give a mixture FILE with --samples and --seq-length, or --recipe RECIPE")
        if args.samples <= 0 or args.seq_length <= 0:
            raise UserError("--samples and --seq-length must be positive")
        result = check_file(
            args.file,
            samples=args.samples,
            seq_length=args.seq_length,
            seed=args.seed,
            eod_id=args.eod_id,
            dry_run=args.dry_run,
        )
    if result is None:
        return 0
    if args.json:
        print(json.dumps(result.to_json(args.tolerance_points), indent=2))
    else:
        sys.stdout.write(render(result, args.tolerance_points))
    return 0 if result.max_error_points() <= args.tolerance_points else 1


def _schema(args: argparse.Namespace) -> int:
    from cptkit.mix.docgen import markdown

    text = markdown()
    if args.output and not args.dry_run:
        from cptkit.util.atomic import write_text

        write_text(args.output, text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0
