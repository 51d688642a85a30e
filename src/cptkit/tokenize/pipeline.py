"""The tokenization run: inputs → chunks → worker shards → one Megatron prefix with a manifest.

For each output prefix `P` the work happens in `P.cptkit-work/`:

    plan.json                 fingerprint of inputs + tokenizer + options; a different one discards the directory
    files/00003.json          written once file 3 has been read to the end: its chunk count, records, sha256
    chunks/00003-000012.*     one shard per chunk: .bin tokens, .len int32 lengths, .json stats (written last)

The main process reads (and decompresses) the inputs and cuts them into deterministic chunks; N workers tokenize
chunks into shards; at most 2×N chunks are in flight, so memory does not grow with the input. Workers are threads of
this process when N <= `MAX_THREAD_WORKERS` (`worker_kind="auto"`): the `tokenizers` library encodes without the GIL,
and threads share one tokenizer, its BPE word cache and the CPU caches, which measured ~10% faster per core than the
same number of processes (benchmarks/bench_tokenize.py); the Python part of a chunk (JSON, lists to arrays, ~6% of
the time) holds the GIL, so beyond that many workers they are processes, each with its own tokenizer. A chunk whose
shard `.json` exists is skipped, which is how a rerun after `kill -9` resumes. When every chunk is done the shards
are merged, streaming, into `P.bin`/`P.idx` (temporary names, then renamed) and `P.manifest.json` is written last:
a prefix is complete exactly when its manifest exists. Output bytes never depend on the worker count, the chunk size,
or on how often the run was interrupted.

Scale-out: with `num_shards=n, shard_index=i`, node i tokenizes the chunks with (prefix position + file + chunk) % n
== i and stops; `merge_only=True` (run once, after all nodes) merges. Every node reads every input (decompressing is
~50× cheaper than tokenizing) but tokenizes only its own chunks.

One writer per prefix: a run (or `--merge`) holds an exclusive `flock` on `.P.lock` beside the prefix, array tasks
of a scale-out a shared one plus an exclusive one per shard index; a second run on the same prefix stops at once with
"another run holds P" (`cptkit.util.lock`). A truncated or corrupt input file stops the run (`DamagedInput`), or with
`on_bad_file="skip"` is left out whole and listed in the manifest; its chunks already tokenized are not merged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from cptkit.errors import UserError
from cptkit.tokenize.finalize import MANIFEST_FORMAT, finalize, manifest_path, read_json, shard_stats, work_dir
from cptkit.tokenize.indexed import dtype_for_vocab
from cptkit.tokenize.integrity import DamagedInput
from cptkit.tokenize.readers import MAX_DOCUMENT_BYTES, ChunkScanner, InputFile, expand_inputs
from cptkit.tokenize.tokenizers import Tokenizer, load_tokenizer
from cptkit.tokenize.worker import WorkerOptions, init_worker, process_chunk
from cptkit.util.atomic import write_json
from cptkit.util.children import die_with_parent
from cptkit.util.lock import output_lock

# Chunk size when not given: about 256 chunks per prefix, within [1 MiB, 64 MiB]. It depends only on the input
# sizes, never on the worker count, so every node of a scale-out and every rerun cuts the same chunks.
MIN_AUTO_CHUNK_BYTES, MAX_AUTO_CHUNK_BYTES, AUTO_CHUNKS = 1 << 20, 64 << 20, 256
MAX_THREAD_WORKERS = 8  # "auto": threads up to this many workers, processes beyond (the GIL-held part is ~6%)
WORKER_KINDS = ("auto", "thread", "process")
ON_BAD_FILE = ("fail", "skip")  # a truncated or corrupt input file: stop the run, or leave the file out and list it


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
    on_bad_file: str = "fail"  # ON_BAD_FILE
    max_document_bytes: int = MAX_DOCUMENT_BYTES  # a longer text (UTF-8 bytes) is skipped as document_too_large


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
    damaged_inputs: list = field(default_factory=list)  # [{"path", "kind", "error"}] left out (on_bad_file="skip")


def _fingerprint(files: list[InputFile], job: Job, tok: Tokenizer, options: Options) -> str:
    ident = {
        "format": MANIFEST_FORMAT,
        "tokenizer_sha256": tok.checksum,
        "options": _options_record(job, tok, options),
        "chunk_bytes": options.chunk_bytes or auto_chunk_bytes(files),
        "inputs": [f.identity() for f in files],
    }
    # Only when not the default, so prefixes tokenized before these settings existed stay "done".
    if options.on_bad_file != "fail":
        ident["on_bad_file"] = options.on_bad_file
    if options.max_document_bytes != MAX_DOCUMENT_BYTES:
        ident["max_document_bytes"] = options.max_document_bytes
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

    def __init__(
        self, options: Options, *, workers: int, worker_kind: str = "auto", progress: bool | None = None, out=sys.stdout
    ):
        if worker_kind not in WORKER_KINDS:
            raise UserError(f"--worker-kind must be one of {', '.join(WORKER_KINDS)}, got {worker_kind!r}")
        if options.on_bad_file not in ON_BAD_FILE:
            raise UserError(f"--on-bad-file must be one of {', '.join(ON_BAD_FILE)}, got {options.on_bad_file!r}")
        if options.max_document_bytes < 1:
            raise UserError(f"--max-document-bytes must be >= 1, got {options.max_document_bytes}")
        self.options = options
        self.workers = max(1, workers)
        if worker_kind == "auto":
            worker_kind = "thread" if self.workers <= MAX_THREAD_WORKERS else "process"
        self.worker_kind = "in-process" if self.workers == 1 else worker_kind
        self.progress = progress
        self.out = out
        self.tok = load_tokenizer(
            options.tokenizer, split_special_tokens=options.split_special_tokens, eod_token=options.eod_token
        )
        if options.prepend_bos and self.tok.bos_id is None:
            raise UserError("the tokenizer has no BOS token; drop --prepend-bos", field="tokenizer")
        self.dtype = dtype_for_vocab(self.tok.vocab_size)
        self._pool: ProcessPoolExecutor | ThreadPoolExecutor | _InProcess | None = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pool(self) -> ProcessPoolExecutor | ThreadPoolExecutor | _InProcess:
        if self._pool is None:
            wopts = WorkerOptions(
                tokenizer=str(self.tok.path),
                split_special_tokens=self.options.split_special_tokens,
                eod_token=self.options.eod_token,
                append_eod=self.options.append_eod,
                prepend_bos=self.options.prepend_bos,
                strict=self.options.strict,
                dtype=self.dtype,
                max_document_bytes=self.options.max_document_bytes,
            )
            # This process's tokenizer serves the in-process worker, or is inherited by forked workers.
            init_worker(wopts, self.tok)
            if self.worker_kind == "in-process":  # no second process: reading is ~2% of the work
                self._pool = _InProcess()
            elif self.worker_kind == "thread":
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cptkit-tokenize")
            elif "fork" in multiprocessing.get_all_start_methods():
                # fork: workers inherit the loaded tokenizer instead of each loading it again (~1 CPU-s for
                # Llama-3's tokenizer.json). Safe: this process never ran the tokenizer's thread pool
                # (init_worker disabled it) and the workers are forked before any other thread exists (the
                # caller creates the pool before the progress bar); Python 3.11 forks them all at the first submit.
                # die_with_parent: a `kill -9` of this process must not leave workers blocked on the call queue.
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("fork"), initializer=die_with_parent
                )
                self._pool.submit(os.getpid).result()
            else:  # no fork (macOS, Windows): fresh interpreters that load the tokenizer themselves
                ctx = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=ctx, initializer=_init_spawned, initargs=(wopts,)
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
        if plan.is_file() and read_json(plan).get("fingerprint") == fp:
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
        if self.status(job)[0] == "done" and not work_dir(job.prefix).exists():
            return Result(job, "done")  # nothing to write: no lock either (shared read-only data stays usable)
        with contextlib.ExitStack() as locks:
            if num_shards is not None and not merge_only:  # array tasks share the prefix, one each per shard
                locks.enter_context(output_lock(job.prefix, what=str(job.prefix), shared=True))
                shard = job.prefix.with_name(f"{job.prefix.name}.shard-{shard_index}-of-{num_shards}")
                hint = "; each array task of a scale-out needs its own --shard-index"
                locks.enter_context(
                    output_lock(shard, what=f"{job.prefix} shard {shard_index}/{num_shards}", hint=hint)
                )
            else:
                locks.enter_context(output_lock(job.prefix, what=str(job.prefix)))
            return self._run(job, shard_index, num_shards, merge_only, overwrite)

    def _run(self, job: Job, shard_index, num_shards, merge_only: bool, overwrite: bool) -> Result:
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
        old_fp = read_json(plan).get("fingerprint") if plan.is_file() else None
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
        self.pool()  # before the progress bar starts its monitor thread: workers are forked from a threadless process
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc=job.name, disable=disable, file=sys.stderr)
        started = time.monotonic()
        done_bytes = 0
        pending: dict[Future, int] = {}  # in flight -> input bytes read when it was cut

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
                scanner = ChunkScanner(file, job.text_field, chunk_bytes, self.options.max_document_bytes)
                record = None
                try:
                    for chunk in scanner:
                        if num_shards is not None and (job.position + f_idx + chunk.index) % num_shards != shard_index:
                            account(_EMPTY, base + chunk.raw_end)
                            continue
                        shard = wdir / "chunks" / f"{f_idx:05d}-{chunk.index:06d}"
                        done = shard_stats(shard)
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
                            chunk.oversized,
                        )
                        pending[fut] = base + chunk.raw_end
                        if len(pending) >= 2 * self.workers:
                            # Whichever finished first, not the oldest: a long chunk must not leave the other workers
                            # idle behind it (head-of-line blocking).
                            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                            for fut in finished:
                                account(fut.result(), pending.pop(fut))
                except DamagedInput as e:
                    if self.options.on_bad_file == "fail":
                        raise UserError(f"{e.one_line()} (--on-bad-file skip leaves damaged files out)") from None
                    # Left out whole: no chunk of it is merged (chunks: 0), the manifest lists it.
                    record = {**file.identity(), "chunks": 0, "records": 0, "sha256": None}
                    record["damaged"] = {"kind": e.kind, "error": e.message}
                    result.damaged_inputs.append({"path": file.path, "kind": e.kind, "error": e.message})
                # The file's chunk list is final once it is read; its chunks may still be in flight (no bubble).
                write_json(
                    wdir / "files" / f"{f_idx:05d}.json",
                    record
                    or {
                        **file.identity(),
                        "chunks": scanner.chunks,
                        "records": scanner.records,
                        "sha256": scanner.sha256,
                    },
                )
                base += file.size_bytes
            for fut in list(pending):
                account(fut.result(), pending.pop(fut))
        except BrokenProcessPool:
            raise UserError(
                "a tokenizer worker process died (killed, or out of memory: try fewer --workers); finished chunks "
                "are kept, rerun the same command to resume",
                file=job.where,
                field=job.name,
            ) from None
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
        finally:
            bar.close()

    def _merge(self, job: Job, files, fp: str, wdir: Path, result: Result) -> None:
        options = _options_record(job, self.tok, self.options)
        totals = finalize(job, files, fp, wdir, self.tok, self.options.tokenizer, options, self.dtype)
        result.documents, result.skipped, result.tokens = totals.documents, totals.skipped, totals.tokens
        result.skipped_by_reason = totals.skipped_by_reason
        result.damaged_inputs = totals.damaged_inputs
        result.input_bytes = totals.input_bytes


_EMPTY = {"written": 0, "skipped": {}, "tokens": 0}


def _init_spawned(wopts: WorkerOptions) -> None:
    die_with_parent()
    init_worker(wopts)


class _InProcess:
    """`--workers 1`: run chunks in this process, with the executor interface the runner uses."""

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args))  # exceptions propagate at once, as fut.result() would raise them
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass
