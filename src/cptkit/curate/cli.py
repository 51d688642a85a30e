"""`cptkit curate PIPELINE.yaml`: run a data-curation pipeline (SwallowCode / SwallowMath) on jsonl/parquet shards.

    cptkit curate data_curation/swallowcode_exp3.yaml --dry-run
    cptkit curate data_curation/swallowcode_exp3.yaml                       # every shard, `workers` at a time
    cptkit curate data_curation/swallowcode_exp3.yaml --shard-index 7 --num-shards 64   # one array-job element

The contract for job arrays (`cptkit launch`): each element runs the same command with its own `--shard-index`
(0-based) and the same `--num-shards`; elements may run in any order, at once, or again after being killed. The
last element to finish writes the statistics. Exit 0 when this invocation's shards are done.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curate", help="curate code/math data: syntax, pylint, language filters, LLM rewriting")
    p.add_argument("pipeline", help="pipeline YAML (see data_curation/)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved pipeline and plan; run nothing")
    p.add_argument("--shard-index", type=int, default=None, help="run only this shard (0-based; for array jobs)")
    p.add_argument("--num-shards", type=int, default=None, help="number of shards (overrides the YAML's `tasks`)")
    p.add_argument("--workers", type=int, default=None, help="shards run at once here (overrides `workers`)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from cptkit.curate.config import load_pipeline
    from cptkit.errors import UserError

    pipe = load_pipeline(args.pipeline)
    if args.num_shards is not None and args.num_shards < 1:
        raise UserError("must be >= 1", field="--num-shards")
    if args.shard_index is not None and args.num_shards is None:
        raise UserError(
            "--shard-index needs --num-shards (every array element must agree on it)", field="--shard-index"
        )
    if args.dry_run:
        from cptkit.curate.dryrun import describe

        print(describe(pipe, args.pipeline, args.num_shards, args.shard_index))
        return 0
    from cptkit.curate.run import run

    result = run(pipe, args.pipeline, shard_index=args.shard_index, num_shards=args.num_shards, workers=args.workers)
    if "report" in result:
        from cptkit.curate.report import render_table

        print(render_table(result["report"], histograms=False), end="")
        print(f"statistics: {pipe.output}/curate_stats.md, curate_stats.json, curate_hist.png")
    else:
        print(json.dumps(result))
    return 0
