"""Read the summary of a Megatron indexed dataset (`PREFIX.idx`, format `MMIDIDX`, version 1) with numpy only.

Layout (megatron/core/datasets/indexed_dataset.py, `_IndexWriter`): the 9-byte magic `MMIDIDX\\x00\\x00`, version
`<Q` (1), dtype code `<B`, sequence count `<Q`, document-index count `<Q` (documents + 1), then int32 sequence
lengths, int64 byte pointers, int64 document indices (and, for multimodal datasets, int8 modes).

This lets `cptkit mix show` count available tokens on a login node without importing torch or megatron-core:

    python -c "from cptkit.mix.idx import read_idx; print(read_idx('demo_run/tokenized/code_text_document'))"
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"MMIDIDX\x00\x00"
HEADER_BYTES = len(MAGIC) + 8 + 1 + 8 + 8  # = 34, megatron's fixed offset of the sequence lengths
# Megatron's DType codes.
DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}


class IdxFormatError(ValueError):
    """The file is not a Megatron MMIDIDX v1 index (or is truncated)."""


@dataclass(frozen=True)
class IdxSummary:
    path: str
    dtype: str  # numpy name of the token dtype in PREFIX.bin
    sequences: int
    documents: int  # documents, i.e. document-index entries - 1
    tokens: int  # sum of sequence lengths = tokens in PREFIX.bin

    @property
    def bin_bytes(self) -> int:
        return self.tokens * np.dtype(self.dtype).itemsize


def idx_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{prefix}.idx")


def bin_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{prefix}.bin")


def read_idx(prefix: str | os.PathLike) -> IdxSummary:
    """Summarise `PREFIX.idx`; raises IdxFormatError for a file that is not a complete MMIDIDX v1 index."""
    path = idx_path(prefix)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or head[: len(MAGIC)] != MAGIC:
        raise IdxFormatError(f"{path} is not a Megatron MMIDIDX index (bad magic)")
    version, code, sequences, doc_entries = struct.unpack("<QBQQ", head[len(MAGIC) :])
    if version != 1:
        raise IdxFormatError(f"{path}: MMIDIDX version {version}, expected 1")
    if code not in DTYPES:
        raise IdxFormatError(f"{path}: unknown dtype code {code}")
    needed = HEADER_BYTES + sequences * (4 + 8) + doc_entries * 8
    if size < needed:
        raise IdxFormatError(f"{path} is truncated: {size} bytes, the header promises {needed}")
    lengths = np.memmap(path, dtype=np.int32, mode="r", offset=HEADER_BYTES, shape=(sequences,)) if sequences else []
    tokens = int(np.asarray(lengths, dtype=np.int64).sum()) if sequences else 0
    return IdxSummary(
        path=str(path),
        dtype=np.dtype(DTYPES[code]).name,
        sequences=int(sequences),
        documents=max(int(doc_entries) - 1, 0),
        tokens=tokens,
    )


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()
