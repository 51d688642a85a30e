"""Megatron indexed dataset (`MMIDIDX` version 1) written by streaming shards into one prefix.

Layout, as megatron-core's `_IndexWriter` writes it (megatron/core/datasets/indexed_dataset.py): the 9-byte magic
`MMIDIDX\\x00\\x00`, version `<Q` 1, dtype code `<B`, sequence count `<Q`, document count `<Q` (sequences + 1), then
int32 sequence lengths, int64 byte pointers into `.bin`, int64 document indices. cptkit writes one sequence per
document, so the document indices are 0..N.

megatron-core's `IndexedDatasetBuilder.add_index` holds every shard's whole index in RAM to merge; here every array
is streamed shard by shard in bounded blocks, so merging thousands of shards of a multi-TB corpus needs a few MB.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cptkit.util.atomic import fsync_dir

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
# megatron.core.datasets.indexed_dataset.DType codes.
DTYPE_CODES = {"uint8": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "float64": 6, "float32": 7, "uint16": 8}
_BLOCK = 1 << 20  # entries per streamed block of the index arrays


def dtype_for_vocab(vocab_size: int) -> str:
    """Megatron's `DType.optimal_dtype`: uint16 below 65,500 entries, else int32."""
    return "uint16" if vocab_size < 65500 else "int32"


def _lengths_blocks(len_files: Sequence[Path]):
    for path in len_files:
        n = os.path.getsize(path) // 4
        with open(path, "rb") as f:
            for start in range(0, n, _BLOCK):
                count = min(_BLOCK, n - start)
                yield np.fromfile(f, dtype=np.int32, count=count)


class DamagedShards(Exception):
    """Shards whose bytes do not match the CRC-32 their worker recorded (a machine crash before the page cache
    reached the disk). Nothing was renamed to a final name."""

    def __init__(self, shards: list[Path]):
        super().__init__(f"{len(shards)} damaged shard(s): {', '.join(s.name for s in shards[:5])}")
        self.shards = shards


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            crc = zlib.crc32(block, crc)
    return crc


def merge_shards(
    shards: Sequence[Path], prefix: Path, dtype: str, documents: int, crcs: Sequence[dict] | None = None
) -> None:
    """Concatenate `shard.bin`/`shard.len` (in order) into `prefix.bin`/`prefix.idx`, atomically.

    `crcs[i]` ({"bin": int, "len": int}, or None for a shard written before cptkit recorded CRCs) is checked against shard i while it is copied; any mismatch raises
    `DamagedShards` naming all of them. Both final files are written under temporary names and renamed only when
    complete (`.bin` first, `.idx` last); the caller writes the manifest after, which marks the prefix as done.
    """
    itemsize = np.dtype(dtype).itemsize
    bin_tmp = prefix.with_name(prefix.name + ".bin.tmp")
    idx_tmp = prefix.with_name(prefix.name + ".idx.tmp")
    len_files = [s.with_name(s.name + ".len") for s in shards]
    counted = sum(os.path.getsize(p) // 4 for p in len_files)
    if counted != documents:  # a bug: the shard stats and the shard files disagree
        raise RuntimeError(f"{prefix}: shards hold {counted} lengths, stats say {documents} documents")

    damaged = []
    if crcs is not None:
        damaged = [
            s for s, c in zip(shards, crcs, strict=True) if c and _crc32(s.with_name(s.name + ".len")) != c["len"]
        ]
    with open(bin_tmp, "wb") as out:
        for i, s in enumerate(shards):
            crc = 0
            with open(s.with_name(s.name + ".bin"), "rb") as src:
                while block := src.read(8 << 20):
                    crc = zlib.crc32(block, crc)
                    out.write(block)
            if crcs is not None and crcs[i] and crc != crcs[i]["bin"] and s not in damaged:
                damaged.append(s)
        if damaged:
            out.close()
            bin_tmp.unlink()
            raise DamagedShards(damaged)
        out.flush()
        os.fsync(out.fileno())

    with open(idx_tmp, "wb") as out:
        out.write(MAGIC)
        out.write(struct.pack("<Q", VERSION))
        out.write(struct.pack("<B", DTYPE_CODES[dtype]))
        out.write(struct.pack("<Q", documents))
        out.write(struct.pack("<Q", documents + 1))
        for block in _lengths_blocks(len_files):
            out.write(block.tobytes())
        pointer = 0  # exclusive running sum of lengths × itemsize, in bytes
        for block in _lengths_blocks(len_files):
            sizes = block.astype(np.int64) * itemsize
            ends = np.cumsum(sizes) + pointer
            (ends - sizes).tofile(out)
            pointer = int(ends[-1]) if len(ends) else pointer
        for start in range(0, documents + 1, _BLOCK):
            np.arange(start, min(start + _BLOCK, documents + 1), dtype=np.int64).tofile(out)
        out.flush()
        os.fsync(out.fileno())
    if pointer != os.path.getsize(bin_tmp):
        raise RuntimeError(f"{prefix}: index covers {pointer} bytes but .bin has {os.path.getsize(bin_tmp)}")
    idx_final = prefix.with_name(prefix.name + ".idx")
    idx_final.unlink(missing_ok=True)  # re-tokenizing: never an old .idx beside the new .bin, even for a moment
    os.replace(bin_tmp, prefix.with_name(prefix.name + ".bin"))
    os.replace(idx_tmp, idx_final)
    fsync_dir(prefix.parent)


def read_index_header(idx_path: Path) -> dict:
    """Counts and dtype of an `.idx` (header only), for summaries and checks."""
    with open(idx_path, "rb") as f:
        head = f.read(len(MAGIC) + 8 + 1 + 8 + 8)
    if len(head) < 34 or head[: len(MAGIC)] != MAGIC:
        raise ValueError(f"{idx_path}: not a Megatron MMIDIDX index")
    (version,) = struct.unpack("<Q", head[9:17])
    code = head[17]
    sequences, documents = struct.unpack("<QQ", head[18:34])
    names = {v: k for k, v in DTYPE_CODES.items()}
    return {"version": version, "dtype": names.get(code), "sequences": sequences, "documents": documents - 1}
