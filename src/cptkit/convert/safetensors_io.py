"""Streaming safetensors: read one tensor (or a range of its rows) at a time; write shards tensor by tensor.

Why not `safetensors.safe_open`: it memory-maps the file, and every page a conversion touches then counts in the
process's resident set until the file is closed, so converting a 16 GB model shows ~16 GB RSS. Here a tensor is read
with `readinto` into a fresh buffer that is freed when the caller drops it. Writing needs every tensor's name, dtype
and shape up front (the header comes first in the file); `ShardedWriter` plans the shards from that list, then
appends each tensor's bytes as it arrives, so only the tensor being written is in memory.

Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__"}, then
the raw little-endian bytes. See https://github.com/huggingface/safetensors.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from cptkit.errors import UserError

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
HF_SHARD_BYTES = 5 * 10**9  # the shard size `save_pretrained` uses ("5GB")


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in a safetensors file (absolute byte offsets)."""

    name: str
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def read_header(path: str | Path) -> dict[str, TensorInfo]:
    """Parse a safetensors header; a truncated or corrupt file is a `UserError` naming the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise UserError("not a safetensors file (shorter than 8 bytes)", file=str(path))
            (n,) = struct.unpack("<Q", raw)
            if n > min(size - 8, 100 * 2**20):
                raise UserError(f"not a safetensors file (header length {n} bytes)", file=str(path))
            header = json.loads(f.read(n))
    except OSError as e:
        raise UserError(f"cannot read: {e.strerror}", file=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError("not a safetensors file (header is not JSON)", file=str(path)) from None
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta.get("dtype") not in DTYPES:
            raise UserError(f"unsupported dtype {meta.get('dtype')!r}", file=str(path), field=name)
        begin, end = meta["data_offsets"]
        info = TensorInfo(name, path, DTYPES[meta["dtype"]], tuple(meta["shape"]), base + begin, base + end)
        expected = math.prod(info.shape) * info.dtype.itemsize
        if info.nbytes != expected or info.end > size:
            raise UserError(
                f"truncated or corrupt: tensor needs bytes {info.begin}..{info.end}, file has {size}",
                file=str(path),
                field=name,
            )
        out[name] = info
    return out


def read_tensor(info: TensorInfo, rows: tuple[int, int] | None = None) -> torch.Tensor:
    """The tensor, or rows [start, stop) of its first dimension (contiguous bytes), in a fresh buffer."""
    start, stop = rows if rows is not None else (0, info.shape[0] if info.shape else 1)
    shape = (stop - start, *info.shape[1:]) if info.shape else ()
    row_bytes = math.prod(info.shape[1:]) * info.dtype.itemsize if info.shape else info.nbytes
    out = torch.empty(shape, dtype=info.dtype)
    view = memoryview(out.view(-1).view(torch.uint8).numpy()) if out.numel() else memoryview(b"")
    with open(info.file, "rb", buffering=0) as f:
        f.seek(info.begin + start * row_bytes)
        done = 0
        while done < len(view):
            got = f.readinto(view[done:])
            if not got:
                raise UserError("file ended early", file=str(info.file), field=info.name)
            done += got
    return out


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class ShardedWriter:
    """Write tensors, in the planned order, into HF-style shards `model-0000K-of-0000N.safetensors` + index.

    The shards are planned as `save_pretrained` does: tensors in order, a new shard when the next tensor would push
    the current one past `max_shard_bytes`.
    """

    def __init__(self, out_dir: str | Path, plan: list[PlannedTensor], max_shard_bytes: int = HF_SHARD_BYTES):
        self.out_dir = Path(out_dir)
        self.shards: list[list[PlannedTensor]] = [[]]
        size = 0
        for t in plan:
            if self.shards[-1] and size + t.nbytes > max_shard_bytes:
                self.shards.append([])
                size = 0
            self.shards[-1].append(t)
            size += t.nbytes
        n = len(self.shards)
        self.names = [f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]
        self._order = [(k, t) for k, shard in enumerate(self.shards) for t in shard]
        self._next = 0
        self._file = None
        self._shard = -1
        self.total_bytes = sum(t.nbytes for t in plan)

    def _finish_file(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())  # durable before the release directory is renamed into place
            self._file.close()
            self._file = None

    def _open(self, k: int) -> None:
        self._finish_file()
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for t in self.shards[k]:
            header[t.name] = {
                "dtype": DTYPE_NAMES[t.dtype],
                "shape": list(t.shape),
                "data_offsets": [offset, offset + t.nbytes],
            }
            offset += t.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # the reference writer aligns the data to 8 bytes
        self._file = open(self.out_dir / self.names[k], "wb")  # noqa: SIM115 (closed in _open/close)
        self._file.write(struct.pack("<Q", len(raw)) + raw)
        self._shard = k

    def write(self, name: str, tensor: torch.Tensor) -> None:
        k, planned = self._order[self._next]
        if name != planned.name or tensor.dtype != planned.dtype or tuple(tensor.shape) != planned.shape:
            raise AssertionError(f"expected {planned}, got {name} {tensor.dtype} {tuple(tensor.shape)}")
        if k != self._shard:
            self._open(k)
        data = tensor.contiguous().view(-1)
        if data.numel():
            self._file.write(memoryview(data.view(torch.uint8).numpy()))
        self._next += 1

    def close(self) -> None:
        if self._next != len(self._order):
            raise AssertionError(f"{len(self._order) - self._next} planned tensors were not written")
        self._finish_file()
        weight_map = {t.name: self.names[k] for k, t in self._order}
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
