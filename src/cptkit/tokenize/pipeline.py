"""The tokenization run: inputs → chunks → worker shards → one Megatron prefix with a manifest.

For each output prefix `P` the work happens in `P.cptkit-work/`:

    plan.json                 fingerprint of inputs + tokenizer + options; a different one discards the directory
    files/00003.json          written once file 3 has been read to the end: its chunk count, records, sha256
    chunks/00003-000012.*     one shard per chunk: .bin tokens, .len int32 lengths, .json stats (written last)

The main process reads (and decompresses) the inputs and cuts them into deterministic chunks; N worker processes
tokenize chunks into shards; at most 2×N chunks are in flight, so memory does not grow with the input. A chunk whose
shard `.json` exists is skipped, which is how a rerun after `kill -9` resumes. When every chunk is done the shards
are merged, streaming, into `P.bin`/`P.idx` (temporary names, then renamed) and `P.manifest.json` is written last:
a prefix is complete exactly when its manifest exists. Output bytes never depend on the worker count, the chunk size,
or on how often the run was interrupted.

Scale-out: with `num_shards=n, shard_index=i`, node i tokenizes the chunks with (prefix position + file + chunk) % n
== i and stops; `merge_only=True` (run once, after all nodes) merges. Every node reads every input (decompressing is
~50× cheaper than tokenizing) but tokenizes only its own chunks.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cptkit import __version__
from cptkit.errors import UserError
from cptkit.tokenize.indexed import dtype_for_vocab, merge_shards
from cptkit.tokenize.readers import ChunkScanner, InputFile, expand_inputs
from cptkit.tokenize.tokenizers import Tokenizer, load_tokenizer
from cptkit.tokenize.worker import MAX_EXAMPLES, WorkerOptions, init_worker, process_chunk
from cptkit.util.atomic import write_json

MANIFEST_FORMAT = "cptkit.tokenized/1"
# Chunk size when not given: about 256 chunks per prefix, within [1 MiB, 64 MiB]. It depends only on the input
# sizes, never on the worker count, so every node of a scale-out and every rerun cuts the same chunks.
MIN_AUTO_CHUNK_BYTES, MAX_AUTO_CHUNK_BYTES, AUTO_CHUNKS = 1 << 20, 64 << 20, 256


def auto_chunk_bytes(files: list[InputFile]) -> int:
    total = sum(f.size_bytes for f in files)
    return min(MAX_AUTO_CHUNK_BYTES, max(MIN_AUTO_CHUNK_BYTES, total // AUTO_CHUNKS))


@dataclass(frozen=True)
class Options:
    """How documents become tokens; everything here is part of the fingerprint and the manifest."""

    tokenizer: str
    split_special_tokens: bool = True  # False: `<|begin_of_text|>` in text becomes the special id (Megatron-LM)
    eod_token: str | None = None
    append_eod: bool = True
    prepend_bos: bool = False
    strict: bool = False
    chunk_bytes: int | None = None  # input bytes per chunk; None: auto_chunk_bytes(inputs)


@dataclass(frozen=True)
class Job:
    """One output prefix and the raw documents that go into it."""

    name: str
    prefix: Path
    paths: tuple[str, ...]
    format: str = "auto"
    text_field: str = "text"
    position: int = 0  # place in the mixture (stable under --source), for shard assignment
    where: str | None = None  # mixture file, for error messages


@dataclass
class Result:
    job: Job
    status: str  # "done" (already), "tokenized", "shard i/n", "merged"
    documents: int = 0
    skipped: int = 0
    tokens: int = 0
    input_bytes: int = 0
    seconds: float = 0.0
    skipped_by_reason: dict = field(default_factory=dict)


def work_dir(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".cptkit-work")


def manifest_path(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".manifest.json")


def _fingerprint(files: list[InputFile], job: Job, tok: Tokenizer, options: Options) -> str:
    ident = {
        "format": MANIFEST_FORMAT,
        "tokenizer_sha256": tok.checksum,
        "options": _options_record(job, tok, options),
        "chunk_bytes": options.chunk_bytes or auto_chunk_bytes(files),
        "inputs": [f.identity() for f in files],
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _options_record(job: Job, tok: Tokenizer, options: Options) -> dict:
    return {
        "text_field": job.text_field,
        "format": job.format,
        "append_eod": options.append_eod,
        "prepend_bos": options.prepend_bos,
        "eod_id": tok.eod_id if options.append_eod else None,
        "bos_id": tok.bos_id if options.prepend_bos else None,
        "split_special_tokens": options.split_special_tokens,
        "dtype": dtype_for_vocab(tok.vocab_size),
    }


class Runner:
    """Runs jobs with one worker pool shared by all prefixes (created only when there is work)."""

    def __init__(self, options: Options, *, workers: int, progress: bool | None = None, out=sys.stdout):
        self.options = options
        self.workers = max(1, workers)
        self.progress = progress
        self.out = out
        self.tok = load_tokenizer(
            options.tokenizer, split_special_tokens=options.split_special_tokens, eod_token=options.eod_token
        )
        if options.prepend_bos and self.tok.bos_id is None:
            raise UserError("the tokenizer has no BOS token; drop --prepend-bos", field="tokenizer")
        self.dtype = dtype_for_vocab(self.tok.vocab_size)
        self._pool: ProcessPoolExecutor | _InProcess | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pool(self) -> ProcessPoolExecutor | _InProcess:
        if self._pool is None:
            wopts = WorkerOptions(
                tokenizer=str(self.tok.path),
                split_special_tokens=self.options.split_special_tokens,
                eod_token=self.options.eod_token,
                append_eod=self.options.append_eod,
                prepend_bos=self.options.prepend_bos,
                strict=self.options.strict,
                dtype=self.dtype,
            )
            if self.workers == 1:  # no second process: reading is ~2% of the work
                self._pool = _InProcess(wopts, self.tok)
            else:
                # spawn, not fork: the parent may hold tokenizer thread pools, which fork can deadlock.
                ctx = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=ctx, initializer=init_worker, initargs=(wopts,)
                )
        return self._pool

    # -- one prefix ---------------------------------------------------------------------------------------------
    def status(self, job: Job) -> tuple[str, list[InputFile], str]:
        """("done" | "stale" | "partial" | "new", input files, fingerprint)."""
        files = expand_inputs(list(job.paths), job.format, where=job.where)
        fp = _fingerprint(files, job, self.tok, self.options)
        mpath = manifest_path(job.prefix)
        if mpath.is_file():
            try:
                old = json.loads(mpath.read_text(encoding="utf-8")).get("fingerprint")
            except ValueError:
                old = None
            return ("done" if old == fp else "stale"), files, fp
        plan = work_dir(job.prefix) / "plan.json"
        if plan.is_file() and _read_json(plan).get("fingerprint") == fp:
            return "partial", files, fp
        return "new", files, fp

    def run(
        self,
        job: Job,
        *,
        shard_index: int | None = None,
        num_shards: int | None = None,
        merge_only: bool = False,
        overwrite: bool = False,
    ) -> Result:
        start = time.monotonic()
        state, files, fp = self.status(job)
        wdir = work_dir(job.prefix)
        if state == "done":
            shutil.rmtree(wdir, ignore_errors=True)  # a run killed after its manifest was written
            return Result(job, "done")
        if state == "stale" and not overwrite:
            raise UserError(
                f"{manifest_path(job.prefix)} was made from other inputs, tokenizer or options; "
                "pass --overwrite to re-tokenize it",
                file=job.where,
                field=job.name,
            )
        plan = wdir / "plan.json"
        old_fp = _read_json(plan).get("fingerprint") if plan.is_file() else None
        if old_fp != fp:
            # Only a plan with another fingerprint is discarded: array tasks of a scale-out start at the same moment
            # and must not delete each other's fresh shards, and an interrupted --overwrite run resumes too.
            if old_fp is not None:
                shutil.rmtree(wdir, ignore_errors=True)
            (wdir / "chunks").mkdir(parents=True, exist_ok=True)
            (wdir / "files").mkdir(exist_ok=True)
            write_json(
                wdir / "plan.json",
                {"fingerprint": fp, "prefix": str(job.prefix), "inputs": [f.identity() for f in files]},
            )
        result = Result(job, "tokenized")
        if not merge_only:
            self._tokenize(job, files, wdir, result, shard_index, num_shards)
        if num_shards is not None and not merge_only:
            result.status = f"shard {shard_index}/{num_shards}"
        else:
            self._merge(job, files, fp, wdir, result)
            if merge_only:
                result.status = "merged"
        result.seconds = time.monotonic() - start
        return result

    def _tokenize(self, job: Job, files, wdir: Path, result: Result, shard_index, num_shards) -> None:
        from tqdm import tqdm

        total_bytes = sum(f.size_bytes for f in files)
        chunk_bytes = self.options.chunk_bytes or auto_chunk_bytes(files)
        result.input_bytes = total_bytes
        # disable=None: shown on a terminal, silent in batch logs unless --progress asks for it.
        disable = None if self.progress is None else not self.progress
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=job.name, disable=disable, file=sys.stderr)
        started = time.monotonic()
        done_bytes = 0
        pending: deque = deque()

        def account(stats: dict, raw_end: int) -> None:
            nonlocal done_bytes
            result.documents += stats["written"]
            result.skipped += sum(stats["skipped"].values())
            result.tokens += stats["tokens"]
            bar.update(max(0, raw_end - done_bytes))
            done_bytes = max(done_bytes, raw_end)
            rate = result.tokens / max(1e-9, time.monotonic() - started)
            bar.set_postfix_str(f"{result.documents:,} docs, {rate:,.0f} tokens/s", refresh=False)

        try:
            base = 0
            for f_idx, file in enumerate(files):
                scanner = ChunkScanner(file, job.text_field, chunk_bytes)
                for chunk in scanner:
                    if num_shards is not None and (job.position + f_idx + chunk.index) % num_shards != shard_index:
                        account(_EMPTY, base + chunk.raw_end)
                        continue
                    shard = wdir / "chunks" / f"{f_idx:05d}-{chunk.index:06d}"
                    done = _shard_stats(shard)
                    if done is not None:
                        account(done, base + chunk.raw_end)
                        continue
                    fut = self.pool().submit(
                        process_chunk,
                        str(shard),
                        file.path,
                        chunk.first_record,
                        chunk.kind,
                        chunk.payload,
                        job.text_field,
                    )
                    pending.append((fut, base + chunk.raw_end))
                    while len(pending) >= 2 * self.workers:
                        fut, end = pending.popleft()
                        account(fut.result(), end)
                # The file's chunk list is final once it is read; its chunks may still be in flight (no bubble).
                write_json(
                    wdir / "files" / f"{f_idx:05d}.json",
                    {**file.identity(), "chunks": scanner.chunks, "records": scanner.records, "sha256": scanner.sha256},
                )
                base += file.size_bytes
            while pending:
                fut, end = pending.popleft()
                account(fut.result(), end)
        except BaseException:
            for fut, _ in pending:
                fut.cancel()
            raise
        finally:
            bar.close()

    def _merge(self, job: Job, files, fp: str, wdir: Path, result: Result) -> None:
        file_records = []
        missing_files = []
        for f_idx in range(len(files)):
            rec = wdir / "files" / f"{f_idx:05d}.json"
            if rec.is_file():
                file_records.append(_read_json(rec))
            else:
                missing_files.append(files[f_idx].path)
        shards: list[Path] = []
        stats: list[dict] = []
        missing_chunks = 0
        for f_idx, rec in enumerate(file_records):
            for c in range(rec["chunks"]):
                shard = wdir / "chunks" / f"{f_idx:05d}-{c:06d}"
                s = _shard_stats(shard)
                if s is None:
                    missing_chunks += 1
                else:
                    shards.append(shard)
                    stats.append(s)
        if missing_files or missing_chunks:
            raise UserError(
                f"cannot merge: {len(missing_files)} input file(s) not read to the end and {missing_chunks} chunk(s) "
                "not tokenized yet; run every --shard-index first (reruns resume)",
                file=job.where,
                field=job.name,
            )
        read = sum(s["read"] for s in stats)
        written = sum(s["written"] for s in stats)
        by_reason: dict[str, int] = {}
        examples: list[dict] = []
        for s in stats:
            for reason, n in s["skipped"].items():
                by_reason[reason] = by_reason.get(reason, 0) + n
            examples.extend(s["examples"][: MAX_EXAMPLES - len(examples)])
        skipped = sum(by_reason.values())
        if read != written + skipped or read != sum(r["records"] for r in file_records):
            raise RuntimeError(f"{job.prefix}: documents read {read} != written {written} + skipped {skipped}")
        tokens = sum(s["tokens"] for s in stats)
        if written == 0:
            raise UserError("no document could be tokenized (all records were skipped)", file=job.where, field=job.name)
        mpath = manifest_path(job.prefix)
        mpath.unlink(missing_ok=True)  # --overwrite: the old manifest must not vouch for the new files
        merge_shards(shards, job.prefix, self.dtype, written)
        manifest = {
            "format": MANIFEST_FORMAT,
            "cptkit_version": __version__,
            "name": job.name,
            "prefix": str(job.prefix),
            "documents": written,
            "tokens": tokens,
            "dtype": self.dtype,
            "documents_read": read,
            "documents_skipped": skipped,
            "skipped": dict(sorted(by_reason.items())),
            "skipped_examples": examples,
            "tokenizer": {"spec": self.options.tokenizer, **self.tok.describe()},
            "options": _options_record(job, self.tok, self.options),
            "inputs": [
                {
                    "path": r["path"],
                    "format": r["format"],
                    "size_bytes": r["size_bytes"],
                    "sha256": r["sha256"],
                    "records": r["records"],
                }
                for r in file_records
            ],
            "fingerprint": fp,
        }
        write_json(mpath, manifest)
        _readable_like_bin(mpath)
        shutil.rmtree(wdir, ignore_errors=True)
        result.documents, result.skipped, result.tokens = written, skipped, tokens
        result.skipped_by_reason = by_reason
        result.input_bytes = sum(r["size_bytes"] for r in file_records)


_EMPTY = {"written": 0, "skipped": {}, "tokens": 0}


class _InProcess:
    """`--workers 1`: run chunks in this process, with the executor interface the runner uses."""

    def __init__(self, wopts: WorkerOptions, tok: Tokenizer):
        init_worker(wopts, tok)

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args))  # exceptions propagate at once, as fut.result() would raise them
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _readable_like_bin(path: Path) -> None:
    """atomic_open's temporary file is 0600; a manifest must be as readable as the .bin/.idx beside it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _shard_stats(shard: Path) -> dict | None:
    """The stats of a finished shard, or None if it is missing or its files do not match them."""
    meta = shard.with_name(shard.name + ".json")
    if not meta.is_file():
        return None
    try:
        stats = _read_json(meta)
        ok = (
            os.path.getsize(shard.with_name(shard.name + ".bin")) == stats["bin_bytes"]
            and os.path.getsize(shard.with_name(shard.name + ".len")) == 4 * stats["written"]
        )
    except (OSError, ValueError, KeyError):
        ok = False
    return stats if ok else None


def options_dict(options: Options) -> dict:
    return asdict(options)
