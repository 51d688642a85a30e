"""`cptkit tokenize`: raw corpora → Megatron indexed datasets (.bin/.idx + .manifest.json).

    # every prefix of a mixture that is not tokenized yet (or only some sources)
    cptkit tokenize data_mix/demo.yaml [--source code --source ja] [--workers 2]
    # one ad-hoc job
    cptkit tokenize --input 'raw/ja/*.jsonl.gz' --output-prefix out/ja_text_document --tokenizer llama3
    # scale-out: one array task per node, then one merge
    cptkit tokenize data_mix/demo.yaml --shard-index $I --num-shards $N
    cptkit tokenize data_mix/demo.yaml --merge

Runs on CPU anywhere; imports no torch or megatron-core.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cptkit.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tokenize",
        help="raw corpora -> Megatron .bin/.idx (resumable, parallel, Megatron-LM compatible)",
        description="Tokenize a mixture's sources (every prefix not tokenized yet) or one ad-hoc input into Megatron "
        "indexed datasets. Reruns resume; outputs appear only when complete.",
    )
    p.add_argument("mixture", nargs="?", help="mixture YAML (data_mix/*.yaml); omit for an ad-hoc job")
    p.add_argument("--source", action="append", default=[], metavar="NAME", help="only these sources (repeatable)")
    adhoc = p.add_argument_group("ad-hoc job (instead of a mixture)")
    adhoc.add_argument("--input", action="append", default=[], metavar="GLOB", help="input files (repeatable)")
    adhoc.add_argument("--output-prefix", metavar="P", help="writes P.bin, P.idx, P.manifest.json")
    adhoc.add_argument("--tokenizer", help="tokenizer.json, tokenizer.model, a directory, or 'llama3'")
    adhoc.add_argument("--format", default="auto", help="auto|jsonl|jsonl.gz|jsonl.zst|parquet|hf_disk")
    adhoc.add_argument("--text-field", default="text", help="field holding each document's text (default: text)")
    tok = p.add_argument_group("documents to tokens (ad-hoc jobs; a mixture declares them in `tokenization:`)")
    tok.add_argument(
        "--append-eod",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="end each document with EOD (default: on)",
    )
    tok.add_argument(
        "--prepend-bos",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start each document with BOS (default: off; the Swallow fork's Llama3Tokenizer adds it)",
    )
    tok.add_argument("--eod-token", help="EOD token string (default: the tokenizer's eos, <|end_of_text|> for Llama-3)")
    tok.add_argument(
        "--split-special-tokens",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="encode special-token strings found in the text (e.g. '<|begin_of_text|>') as ordinary text (default). "
        "--no-split-special-tokens turns them into the special ids, as Megatron-LM's HuggingFaceTokenizer does: with it "
        "the output is byte-identical to tools/preprocess_data.py --append-eod (with --prepend-bos: to the Swallow "
        "fork's --tokenizer-type Llama3Tokenizer)",
    )
    tok.add_argument("--strict", action="store_true", help="a bad record is fatal (default: skipped and counted)")
    tok.add_argument(
        "--on-bad-file",
        choices=("fail", "skip"),
        default="fail",
        help="a truncated or corrupt input file (zstd frame, gzip member, parquet footer/page, Arrow stream): fail "
        "names it and exits 2 (default); skip leaves the whole file out, listed in the manifest's damaged_inputs",
    )
    tok.add_argument(
        "--max-document-bytes",
        type=int,
        default=None,
        metavar="N",
        help="skip and count (document_too_large) a document whose text is over N bytes of UTF-8, without holding "
        "it in memory (default: 10000000, 10 MB)",
    )
    run = p.add_argument_group("run")
    run.add_argument(
        "--workers", type=int, default=_cores(), help=f"parallel tokenizers (default: {_cores()}, the cores available)"
    )
    run.add_argument(
        "--worker-kind",
        choices=("auto", "thread", "process"),
        default="auto",
        help="threads of this process share one tokenizer and its caches (~10%% faster per core); processes scale "
        "past the GIL. auto: threads up to 8 workers, processes beyond (default)",
    )
    run.add_argument(
        "--chunk-bytes",
        type=int,
        default=None,
        help="input bytes per chunk, the unit of resume and scheduling (default: input size / 256, within 1-64 MiB)",
    )
    run.add_argument("--shard-index", type=int, help="this node's share of the work (0-based; with --num-shards)")
    run.add_argument("--num-shards", type=int, help="number of nodes splitting the work; then run --merge once")
    run.add_argument(
        "--merge", action="store_true", help="merge the shards of finished --shard-index runs into the prefixes"
    )
    run.add_argument("--overwrite", action="store_true", help="re-tokenize prefixes made from other inputs or options")
    run.add_argument("--dry-run", action="store_true", help="print what would be tokenized, and exit")
    run.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: on a terminal)"
    )
    p.set_defaults(func=handle)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _jobs(args) -> tuple[list, str]:
    """[(tokenization settings, job)] and the tokenizer."""
    from cptkit.mix.settings import Settings
    from cptkit.tokenize.pipeline import Job

    if args.mixture is None:
        missing = [
            f
            for f, v in (
                ("--input", args.input),
                ("--output-prefix", args.output_prefix),
                ("--tokenizer", args.tokenizer),
            )
            if not v
        ]
        if missing:
            raise UserError(f"an ad-hoc job needs {', '.join(missing)} (or give a mixture YAML)")
        if args.source:
            raise UserError("--source selects sources of a mixture; give the mixture YAML")
        prefix = Path(args.output_prefix).expanduser().absolute()
        flags = Settings(
            bos=bool(args.prepend_bos),
            eod=args.append_eod is not False,
            special_tokens="text" if args.split_special_tokens is not False else "parse",
        )
        return [(flags, Job(prefix.name, prefix, tuple(args.input), args.format, args.text_field))], args.tokenizer

    for flag, value in (
        ("--input", args.input),
        ("--output-prefix", args.output_prefix),
        ("--tokenizer", args.tokenizer),
    ):
        if value:
            raise UserError(
                f"{flag} is for ad-hoc jobs; a mixture names its inputs, prefixes and tokenizer", file=args.mixture
            )
    for flag, value in (
        ("--prepend-bos", args.prepend_bos),
        ("--append-eod", args.append_eod),
        ("--split-special-tokens", args.split_special_tokens),
        ("--eod-token", args.eod_token),
    ):
        if value is not None:
            raise UserError(
                f"--[no-]{flag[2:]} is for ad-hoc jobs; a mixture declares it in `tokenization:` (per source too)",
                file=args.mixture,
            )
    if args.format != "auto" or args.text_field != "text":
        raise UserError(
            "--format/--text-field are for ad-hoc jobs; set input.format/text_field in the mixture", file=args.mixture
        )
    from cptkit.mix.schema import load_mixture
    from cptkit.mix.settings import effective

    mixture = load_mixture(args.mixture)
    names = [s.name for s in mixture.sources]
    unknown = [n for n in args.source if n not in names]
    if unknown:
        raise UserError(
            f"no source named {', '.join(unknown)} (sources: {', '.join(names)})", file=args.mixture, field="--source"
        )
    jobs = []
    position = 0
    for source in mixture.sources:
        for j, ds in enumerate(source.prefixes()):
            position += 1
            if args.source and source.name not in args.source:
                continue
            if ds.input is None:  # tokenized elsewhere; `mix check` verifies it exists
                continue
            name = source.name if source.datasets is None else f"{source.name}[{j}]"
            jobs.append(
                (
                    effective(mixture, source),
                    Job(
                        name,
                        Path(ds.prefix).expanduser().absolute(),
                        tuple(ds.input.paths),
                        str(getattr(ds.input.format, "value", ds.input.format)),
                        ds.input.text_field,
                        position - 1,
                        args.mixture,
                    ),
                )
            )
    if not jobs:
        raise UserError("no source with an `input:` to tokenize", file=args.mixture)
    return jobs, mixture.tokenizer


def handle(args) -> int:
    from cptkit.tokenize.pipeline import Options, Runner
    from cptkit.tokenize.report import print_dry_run, print_summary

    if (args.shard_index is None) != (args.num_shards is None):
        raise UserError("--shard-index and --num-shards go together")
    if args.num_shards is not None:
        if args.num_shards < 1 or not 0 <= args.shard_index < args.num_shards:
            raise UserError(f"--shard-index must be in [0, {args.num_shards}) and --num-shards >= 1")
        if args.merge:
            raise UserError("--merge runs once after all shards, without --shard-index/--num-shards")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.chunk_bytes is not None and args.chunk_bytes < 1:
        raise UserError(f"--chunk-bytes must be >= 1, got {args.chunk_bytes}")
    pairs, tokenizer = _jobs(args)
    # One runner (tokenizer + worker pool) per distinct settings: sources may override the mixture's tokenization.
    groups: dict = {}
    for settings, job in pairs:
        groups.setdefault(settings, []).append(job)
    results = []
    for settings, jobs in groups.items():
        options = Options(
            tokenizer=tokenizer,
            split_special_tokens=settings.split_special_tokens,
            eod_token=args.eod_token,
            append_eod=settings.eod,
            prepend_bos=settings.bos,
            strict=args.strict,
            chunk_bytes=args.chunk_bytes,
            on_bad_file=args.on_bad_file,
            **({} if args.max_document_bytes is None else {"max_document_bytes": args.max_document_bytes}),
        )
        with Runner(options, workers=args.workers, worker_kind=args.worker_kind, progress=args.progress) as runner:
            if args.dry_run:
                print_dry_run(runner, jobs, args, sys.stdout)
                continue
            for job in jobs:
                results.append(
                    runner.run(
                        job,
                        shard_index=args.shard_index,
                        num_shards=args.num_shards,
                        merge_only=args.merge,
                        overwrite=args.overwrite,
                    )
                )
    if not args.dry_run:
        print_summary(results, sys.stdout)
    return 0
