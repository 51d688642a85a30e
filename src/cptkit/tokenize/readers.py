"""Input files → deterministic chunks of records, streamed with bounded memory.

Formats: `.jsonl`, `.jsonl.gz`, `.jsonl.zst` (one JSON object a line), `.parquet`, and directories written by Hugging
Face `datasets.save_to_disk` (`hf_disk`: Arrow stream files listed in `state.json`, read with pyarrow; `datasets` is
not imported).

A chunk is the shortest run of records, from where the previous chunk ended, holding at least `chunk_bytes` bytes of
input (the last chunk of a file holds the rest). Chunk boundaries therefore depend only on the file's content and
`chunk_bytes`, never on read sizes, worker counts or timing: that is what makes resumed and scaled-out runs
byte-identical. Line-based chunks carry the raw bytes of their lines (the workers parse them); columnar chunks carry
the text column's values.

Integrity (`integrity.py`): a truncated or corrupt file raises `DamagedInput` instead of reading short. A UTF-8 byte
order mark at the start of a line-based file is dropped (it is not a bad record). A record larger than the
document bound is never held in memory: a JSON line longer than `LINE_BOUND_FACTOR` x `max_document_bytes` is
dropped while it streams past, a column value over the bound is dropped after reading; either way the chunk lists it
in `oversized` and the worker counts it as `document_too_large`.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cptkit.errors import UserError
from cptkit.tokenize.integrity import DamagedInput, ZstdFrameChecker, check_arrow_stream_end

FORMATS = ("auto", "jsonl", "jsonl.gz", "jsonl.zst", "parquet", "hf_disk")
_READ_BLOCK = 1 << 20
_BOM = b"\xef\xbb\xbf"
MAX_DOCUMENT_BYTES = 10_000_000  # default bound on one document's text (UTF-8 bytes): 10 MB
# A document of at most the bound can take more bytes as a JSON line (ensure_ascii escapes: 3 UTF-8 bytes of
# Japanese become 6, an emoji's 4 become 12): lines up to this multiple are read and measured as text by the worker.
LINE_BOUND_FACTOR = 3


@dataclass(frozen=True)
class InputFile:
    path: str  # as matched (absolute)
    format: str  # resolved, never "auto"
    size_bytes: int
    mtime_ns: int

    def identity(self) -> dict:
        return {"path": self.path, "format": self.format, "size_bytes": self.size_bytes, "mtime_ns": self.mtime_ns}


@dataclass
class Chunk:
    index: int  # within its file, from 0
    first_record: int  # 1-based line (jsonl) or row (columnar) number of the chunk's first record
    kind: str  # "lines": payload is bytes; "values": payload is a list of column values
    payload: Any
    raw_end: int  # bytes of the (compressed) file consumed once this chunk was read: progress and ETA
    oversized: tuple[int, ...] = ()  # offsets (within the chunk) of records dropped as over the document bound


def detect_format(path: str, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    p = Path(path)
    if p.is_dir():
        if (p / "state.json").is_file() or (p / "dataset_info.json").is_file():
            return "hf_disk"
        raise UserError("a directory input must be a `datasets.save_to_disk` folder (no state.json)", file=path)
    name = p.name.lower()
    for suffix, fmt in ((".jsonl.gz", "jsonl.gz"), (".json.gz", "jsonl.gz"), (".jsonl.zst", "jsonl.zst")):
        if name.endswith(suffix):
            return fmt
    if name.endswith(".json.zst"):
        return "jsonl.zst"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise UserError("cannot tell the input format from the file name; set the format explicitly", file=path)


def expand_inputs(patterns: list[str], declared_format: str = "auto", *, where: str | None = None) -> list[InputFile]:
    """Glob every pattern (sorted, de-duplicated, in pattern order); a pattern matching nothing is an error."""
    if declared_format not in FORMATS:
        raise UserError(f"unknown format {declared_format!r}; one of {', '.join(FORMATS)}", file=where, field="format")
    seen: set[str] = set()
    files: list[InputFile] = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not matches:
            raise UserError(f"input pattern {pattern!r} matches no file", file=where, field="paths")
        for m in matches:
            path = os.path.abspath(m)
            if path in seen:
                continue
            seen.add(path)
            fmt = detect_format(path, declared_format)
            for real in _hf_disk_files(path) if fmt == "hf_disk" else [path]:
                st = os.stat(real)
                files.append(InputFile(real, "arrow" if fmt == "hf_disk" else fmt, st.st_size, st.st_mtime_ns))
    return files


def _hf_disk_files(directory: str) -> list[str]:
    state = Path(directory) / "state.json"
    try:
        names = [d["filename"] for d in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"not a readable `datasets.save_to_disk` folder: {e}", file=state) from None
    return [str(Path(directory) / n) for n in names]


class _HashingReader:
    """A raw file that hashes what is read through it and knows how far it got (for ETA by bytes)."""

    def __init__(self, path: str, checker: ZstdFrameChecker | None = None):
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.sha256 = hashlib.sha256()
        self.position = 0
        self.checker = checker

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        self.position += len(data)
        if self.checker is not None:
            self.checker.feed(data)
        return data

    def readinto(self, b) -> int:  # zstandard and gzip may use either
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._f.close()


def _decompressed(raw: _HashingReader, fmt: str):
    if fmt == "jsonl":
        return raw
    if fmt == "jsonl.gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[arg-type]
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[arg-type]


class ChunkScanner:
    """Iterate one file's chunks; afterwards `sha256` and `records` describe the whole file."""

    def __init__(
        self, file: InputFile, text_field: str, chunk_bytes: int, max_document_bytes: int = MAX_DOCUMENT_BYTES
    ):
        self.file = file
        self.text_field = text_field
        self.chunk_bytes = max(1, chunk_bytes)
        self.max_document_bytes = max_document_bytes
        self.max_line_bytes = LINE_BOUND_FACTOR * max_document_bytes
        self.sha256: str | None = None
        self.records = 0
        self.chunks = 0

    def __iter__(self) -> Iterator[Chunk]:
        if self.file.format in ("jsonl", "jsonl.gz", "jsonl.zst"):
            yield from self._lines()
        else:
            yield from self._columnar()

    def _lines(self) -> Iterator[Chunk]:
        checker = ZstdFrameChecker(self.file.path) if self.file.format == "jsonl.zst" else None
        raw = _HashingReader(self.file.path, checker)
        try:
            stream = _decompressed(raw, self.file.format)
            buf = bytearray()
            eof = False
            first_block = True
            line_no = 1  # of buf's first line
            oversized: list[int] = []  # absolute line numbers of lines dropped as too long (now empty in buf)
            tail = 0  # where buf's unfinished last line starts
            searched = 0  # buf[:searched] holds no newline at or after chunk_bytes - 1 (long lines: no rescans)
            while not eof or buf:
                # Cut at the first newline at or after chunk_bytes: a rule on content only, not on read sizes.
                start = max(self.chunk_bytes - 1, searched)
                cut = buf.find(b"\n", start) if len(buf) >= self.chunk_bytes else -1
                searched = len(buf) if cut < 0 else 0
                if cut < 0 and not eof:
                    block = self._read(stream)
                    if first_block and block:
                        first_block = False
                        if block.startswith(_BOM):  # a byte order mark, not part of the first record
                            block = block[len(_BOM) :]
                    if block:
                        scan_from = tail  # the unfinished line this block continues
                        nl = block.rfind(b"\n")
                        buf += block
                        if nl >= 0:
                            tail = len(buf) - len(block) + nl + 1
                        if len(buf) - scan_from > self.max_line_bytes:
                            self._drop_long_lines(buf, scan_from, stream, line_no, oversized)
                            tail = buf.rfind(b"\n") + 1  # what is left unfinished is within the bound
                            searched = min(searched, scan_from)
                    else:
                        eof = True
                        if checker is not None:
                            checker.finish()
                    continue
                end = cut + 1 if cut >= 0 else len(buf)
                payload = bytes(buf[:end])
                del buf[:end]
                tail = max(0, tail - end)
                n_lines = payload.count(b"\n") + (0 if payload.endswith(b"\n") else 1)
                mine = tuple(n - line_no for n in oversized if n < line_no + n_lines)
                oversized = oversized[len(mine) :]
                yield Chunk(self.chunks, line_no, "lines", payload, raw.position, mine)
                self.chunks += 1
                line_no += n_lines
                self.records += n_lines
            self.sha256 = raw.sha256.hexdigest()
        finally:
            raw.close()

    def _read(self, stream) -> bytes:
        try:
            return stream.read(_READ_BLOCK)
        except DamagedInput:
            raise
        except EOFError as e:  # gzip: no end-of-stream marker
            raise DamagedInput("truncated", f"the compressed stream ends early ({e})", file=self.file.path) from None
        except Exception as e:  # zstandard.ZstdError, gzip.BadGzipFile (CRC), zlib.error, OSError
            if isinstance(e, OSError) and e.errno is not None:  # a real I/O error (EIO, ESTALE): not the data's fault
                raise
            raise DamagedInput("corrupt", f"cannot decompress ({e})", file=self.file.path) from None

    def _drop_long_lines(self, buf: bytearray, pos: int, stream, line_no: int, oversized: list[int]) -> None:
        """Empty every line from `pos` on that is longer than the bound, reading past the rest of an unfinished one
        without keeping it: memory never holds more than the bound of one line. The record stays as an empty line
        (line numbers and counts do not move) and its number goes to `oversized`. Decided on content only."""
        while True:
            nl = buf.find(b"\n", pos)
            end = nl if nl >= 0 else len(buf)
            if end - pos > self.max_line_bytes:
                oversized.append(line_no + buf.count(b"\n", 0, pos))
                del buf[pos:end]
                if nl < 0:  # stream past the rest of the line
                    while True:
                        block = self._read(stream)
                        if not block:
                            buf += b"\n"  # the file's last line, without a newline: still one record
                            return
                        cut = block.find(b"\n")
                        if cut >= 0:
                            buf += block[cut:]
                            break
                pos += 1
                continue
            if nl < 0:
                return
            pos = nl + 1

    def _columnar(self) -> Iterator[Chunk]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.file.path
        if self.file.format == "parquet":
            try:
                pf = pq.ParquetFile(path, page_checksum_verification=True)
            except (OSError, pa.ArrowException) as e:
                kind = "truncated" if "footer" in str(e) else "corrupt"
                raise DamagedInput(kind, f"cannot read the parquet file ({e})", file=path) from None
            if self.text_field not in pf.schema_arrow.names:
                raise UserError(
                    f"no column {self.text_field!r} (columns: {pf.schema_arrow.names})", file=path, field="text_field"
                )
            batches = pf.iter_batches(batch_size=1024, columns=[self.text_field])
        else:
            check_arrow_stream_end(path)
            try:
                reader = pa.ipc.open_stream(pa.memory_map(path))
            except (OSError, pa.ArrowException) as e:
                raise DamagedInput(
                    "corrupt", f"cannot read the Arrow file of a saved dataset ({e})", file=path
                ) from None
            if self.text_field not in reader.schema.names:
                raise UserError(
                    f"no column {self.text_field!r} (columns: {reader.schema.names})", file=path, field="text_field"
                )
            batches = (b.select([self.text_field]) for b in reader)
        values: list = []
        oversized: list[int] = []
        size = 0
        row = 1
        for batch in _checked(batches, path):
            for value in batch.column(0).to_pylist():
                n = len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else 1
                if n > self.max_document_bytes:  # not shipped to a worker; counted there as document_too_large
                    oversized.append(len(values))
                    value, n = None, 1
                values.append(value)
                size += n
                if size >= self.chunk_bytes:
                    yield Chunk(self.chunks, row, "values", values, self.file.size_bytes, tuple(oversized))
                    self.chunks += 1
                    row += len(values)
                    values, size, oversized = [], 0, []
        if values or self.chunks == 0:
            yield Chunk(self.chunks, row, "values", values, self.file.size_bytes, tuple(oversized))
            self.chunks += 1
            row += len(values)
        self.records = row - 1
        self.sha256 = _sha256_path(path)


def _checked(batches, path: str):
    """Page decoding errors (bad compressed data, a CRC mismatch) surface while iterating: name the file."""
    import pyarrow as pa

    it = iter(batches)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as e:
            raise DamagedInput("corrupt", f"cannot decode the data ({e})", file=path) from None
        yield batch


def _sha256_path(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_READ_BLOCK):
            h.update(block)
    return h.hexdigest()
