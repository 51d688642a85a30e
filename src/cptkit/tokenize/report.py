"""What `cptkit tokenize` prints: the `--dry-run` plan and the final summary table."""

from __future__ import annotations

from cptkit.util.units import format_tokens


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _table(rows: list[list[str]], out) -> None:
    """Columns of numbers right-aligned, text left-aligned, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    numeric = [all(r[i][:1].isdigit() or r[i] == "-" for r in rows[1:]) for i in range(len(widths))]
    for k, row in enumerate(rows):
        cells = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True)]
        print("  ".join(cells).rstrip(), file=out)
        if k == 0:
            print("  ".join("-" * w for w in widths), file=out)


def print_dry_run(runner, jobs, args, out) -> None:
    tok, o = runner.tok, runner.options
    print(
        f"tokenizer: {o.tokenizer} -> {tok.kind} {tok.path} (sha256 {tok.checksum[:12]}, vocab {tok.vocab_size:,}, "
        f"encoder {tok.encoder})",
        file=out,
    )
    print(
        f"options: append_eod={o.append_eod} (id {tok.eod_id}) prepend_bos={o.prepend_bos} "
        f"split_special_tokens={o.split_special_tokens} strict={o.strict} on_bad_file={o.on_bad_file} "
        f"max_document_bytes={o.max_document_bytes} dtype={runner.dtype} "
        f"workers={runner.workers} ({runner.worker_kind}) chunk_bytes={o.chunk_bytes or 'auto'}",
        file=out,
    )
    if args.num_shards is not None:
        print(
            f"scale-out: this is shard {args.shard_index} of {args.num_shards}; run --merge after all shards", file=out
        )
    rows = [["source", "status", "files", "input", "prefix"]]
    for job in jobs:
        state, files, _ = runner.status(job)
        what = {
            "done": "done (skipped)",
            "stale": "STALE (needs --overwrite)",
            "partial": "partial (resumes)",
            "new": "to tokenize",
        }[state]
        rows.append([job.name, what, str(len(files)), _mb(sum(f.size_bytes for f in files)), str(job.prefix)])
    _table(rows, out)
    print("dry run: nothing written", file=out)


def print_summary(results, out) -> None:
    rows = [["source", "status", "documents", "skipped", "tokens", "input", "seconds", "tokens/s"]]
    for r in results:
        rate = f"{r.tokens / r.seconds:,.0f}" if r.seconds > 0 and r.tokens else "-"
        rows.append(
            [
                r.job.name,
                r.status,
                f"{r.documents:,}",
                f"{r.skipped:,}",
                format_tokens(r.tokens),
                _mb(r.input_bytes),
                f"{r.seconds:.1f}",
                rate,
            ]
        )
    _table(rows, out)
    for r in results:
        if r.skipped_by_reason:
            reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(r.skipped_by_reason.items()))
            print(
                f"{r.job.name}: skipped {reasons} (file:line of the first ones in {r.job.prefix}.manifest.json)",
                file=out,
            )
        for d in r.damaged_inputs:
            print(f"{r.job.name}: LEFT OUT {d['kind']} input {d['path']}: {d['error']}", file=out)
