"""Worker side: one chunk of records → one finished shard (`.bin` tokens, `.len` lengths, `.json` stats).

Records are validated before tokenization; a bad one is skipped and counted under one of `SKIP_REASONS`, with the
file:line of the first few kept for the manifest (or, with `strict`, raises `UserError`). A shard's `.json` is written
last, atomically: a shard exists exactly when its `.json` does, so a killed worker leaves only temporary files.
Shards are not fsync'ed (one fsync per file per chunk is slow on parallel file systems); the `.json` records the
CRC-32 of `.bin` and `.len`, which the merge checks, so a shard a machine crash left damaged is found and redone.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cptkit.errors import UserError
from cptkit.tokenize.readers import MAX_DOCUMENT_BYTES
from cptkit.util.atomic import atomic_open, write_json

SKIP_REASONS = (
    "malformed_json",  # not JSON, or JSON but not an object
    "missing_text",  # the text field is absent or null
    "text_not_string",
    "invalid_utf8",  # undecodable bytes, or a lone surrogate escape
    "empty_text",
    "nul_byte",
    "blank_line",
    "document_too_large",  # text over max_document_bytes (UTF-8); never held whole when far over (readers.py)
)
MAX_EXAMPLES = 10  # file:line of the first bad records, per shard and per manifest
_ENCODE_BATCH_BYTES = (
    64 << 10
)  # HF encodings cost ~100 bytes a token: big batches thrash caches (2 workers: +30% CPU at 1 MiB)


@dataclass(frozen=True)
class WorkerOptions:
    tokenizer: str
    split_special_tokens: bool
    eod_token: str | None
    append_eod: bool
    prepend_bos: bool
    strict: bool
    dtype: str
    max_document_bytes: int = MAX_DOCUMENT_BYTES


_state: dict = {}


def init_worker(options: WorkerOptions, tokenizer=None) -> None:
    """Pool initializer: one tokenizer per process, single-threaded (the pool is the parallelism).

    `tokenizer`: an already loaded one, when the worker runs inside the main process (`--workers 1`).
    """
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    from cptkit.tokenize.tokenizers import load_tokenizer

    _state["options"] = options
    _state["tokenizer"] = tokenizer or load_tokenizer(
        options.tokenizer, split_special_tokens=options.split_special_tokens, eod_token=options.eod_token
    )


def _texts_of_lines(payload: bytes, field: str, skip, oversized: frozenset):
    lines = payload.split(b"\n")
    if payload.endswith(b"\n"):
        lines.pop()
    for offset, raw in enumerate(lines):
        if offset in oversized:
            skip("document_too_large", offset)
            continue
        if not raw.strip():
            skip("blank_line", offset)
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            skip("invalid_utf8", offset)
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            skip("malformed_json", offset)
            continue
        if not isinstance(obj, dict):
            skip("malformed_json", offset)
            continue
        yield offset, obj.get(field)


def _texts_of_values(values: list, skip, oversized: frozenset):
    for offset, value in enumerate(values):
        if offset in oversized:
            skip("document_too_large", offset)
        else:
            yield offset, value


def process_chunk(
    shard: str, display_path: str, first_record: int, kind: str, payload, text_field: str, oversized=()
) -> dict:
    """Tokenize one chunk into `shard`.{bin,len,json}; returns the stats also written to the `.json`.

    `oversized`: offsets of records the reader dropped as over the document bound (counted, not tokenized)."""
    options: WorkerOptions = _state["options"]
    tok = _state["tokenizer"]
    dtype = np.dtype(options.dtype)
    stats = {"read": 0, "written": 0, "tokens": 0, "skipped": {}, "examples": []}
    unit = "line" if kind == "lines" else "row"

    def skip(reason: str, offset: int) -> None:
        where = f"{display_path}:{first_record + offset}"
        if options.strict:
            raise UserError(
                f"{reason.replace('_', ' ')} at {unit} {first_record + offset} (--strict)", file=display_path
            )
        stats["skipped"][reason] = stats["skipped"].get(reason, 0) + 1
        if len(stats["examples"]) < MAX_EXAMPLES:
            stats["examples"].append({"reason": reason, "where": where})

    dropped = frozenset(oversized)
    records = (
        _texts_of_lines(payload, text_field, skip, dropped)
        if kind == "lines"
        else _texts_of_values(payload, skip, dropped)
    )
    prefix_ids = [tok.bos_id] if options.prepend_bos else []
    suffix_ids = [tok.eod_id] if options.append_eod else []
    n_records = payload.count(b"\n") + (0 if payload.endswith(b"\n") else 1) if kind == "lines" else len(payload)
    if kind == "lines" and not payload:
        n_records = 0

    shard_path = Path(shard)
    crc = {"bin": 0, "len": 0}
    with (
        atomic_open(f"{shard}.bin", "wb", durable=False) as fbin,
        atomic_open(f"{shard}.len", "wb", durable=False) as flen,
    ):
        batch: list[str] = []
        batch_bytes = 0

        def flush() -> None:
            nonlocal batch, batch_bytes
            if not batch:
                return
            encoded = tok.encode_batch(batch)
            lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
            lengths += len(prefix_ids) + len(suffix_ids)
            flat: list[int] = []
            for ids in encoded:
                flat += prefix_ids
                flat += ids
                flat += suffix_ids
            tokens_bytes = np.array(flat, dtype=dtype).tobytes()
            lengths_bytes = lengths.astype(np.int32).tobytes()
            crc["bin"] = zlib.crc32(tokens_bytes, crc["bin"])
            crc["len"] = zlib.crc32(lengths_bytes, crc["len"])
            fbin.write(tokens_bytes)
            flen.write(lengths_bytes)
            stats["written"] += len(batch)
            stats["tokens"] += int(lengths.sum())
            batch, batch_bytes = [], 0

        for offset, text in records:
            if text is None:
                skip("missing_text", offset)
            elif not isinstance(text, str):
                skip("text_not_string", offset)
            elif not text:
                skip("empty_text", offset)
            elif "\x00" in text:
                skip("nul_byte", offset)
            else:
                try:
                    size = len(text.encode("utf-8"))
                except UnicodeEncodeError:  # "\ud800" escapes decode to lone surrogates no tokenizer can take
                    skip("invalid_utf8", offset)
                    continue
                if size > options.max_document_bytes:
                    skip("document_too_large", offset)
                    continue
                batch.append(text)
                batch_bytes += size
                if batch_bytes >= _ENCODE_BATCH_BYTES:
                    flush()
        flush()
    stats["read"] = n_records
    skipped = sum(stats["skipped"].values())
    if stats["read"] != stats["written"] + skipped:  # a bug, never a user error
        raise RuntimeError(f"{shard}: read {stats['read']} != written {stats['written']} + skipped {skipped}")
    stats["bin_bytes"] = stats["tokens"] * dtype.itemsize
    stats["crc32"] = crc
    write_json(shard_path.with_name(shard_path.name + ".json"), stats, durable=False)
    return stats
