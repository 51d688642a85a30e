"""Write and read megatron-core `torch_dist` checkpoints one chunk at a time.

A `torch_dist` checkpoint (what `megatron.core.dist_checkpointing.save` writes) is a torch.distributed.checkpoint (DCP)
directory — `.metadata` (global shape and chunk list of every tensor), `__R_F.distcp` data files — plus megatron's
`metadata.json` (backend name and version) and `common.pt` (the non-sharded part of the state dict; empty for a
weights-only checkpoint). Sharded objects (`..._extra_state`) are stored as bytes under `KEY/shard_{offset}_{shape}`.

Writing: `save_lazy` hands DCP a save plan built from chunk descriptions alone, and a planner whose `resolve_data`
materialises each chunk only when the file writer asks for it (DCP's CPU writer resolves and writes one item at a
time). Peak memory is the largest chunk, not the model. The saved metadata is checked to cover every chunk.

Reading: `CheckpointReader.read` asks DCP's resharding reader for any box of any tensor (e.g. one layer of a
layer-stacked tensor), whatever TP/PP the checkpoint was saved with; only the saved chunks overlapping the box are
read.

Both run in a single process without torch.distributed (`no_dist`).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributed.checkpoint import CheckpointException, FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
from torch.distributed.checkpoint.metadata import (
    ChunkStorageMetadata,
    MetadataIndex,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import LoadPlan, ReadItem, SavePlan, TensorWriteData, WriteItem, WriteItemType
from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

from cptkit.errors import UserError

MCORE_CONFIG = {
    "sharded_backend": "torch_dist",
    "sharded_backend_version": 1,
    "common_backend": "torch",
    "common_backend_version": 1,
}


@dataclass(frozen=True)
class LazyChunk:
    """One chunk of a global tensor, made by `make()` only when it is written."""

    key: str
    global_shape: tuple[int, ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    dtype: torch.dtype
    make: Callable[[], torch.Tensor]


def sharded_object_key(key: str, offset: tuple[int, ...], global_shape: tuple[int, ...]) -> str:
    """megatron-core's DCP name for a ShardedObject (`ShardedObject.unique_key`)."""
    return f"{key}/shard_{'.'.join(map(str, offset))}_{'.'.join(map(str, global_shape))}"


class _LazySavePlanner(DefaultSavePlanner):
    def __init__(self, chunks: list[LazyChunk], objects: dict[str, object], on_write: Callable[[LazyChunk], None]):
        super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
        self._chunks = {(c.key, c.offsets): c for c in chunks}
        self._objects = objects
        self._on_write = on_write

    def create_local_plan(self) -> SavePlan:
        items = [
            WriteItem(
                index=MetadataIndex(c.key, torch.Size(c.offsets)),
                type=WriteItemType.SHARD,
                tensor_data=TensorWriteData(
                    chunk=ChunkStorageMetadata(offsets=torch.Size(c.offsets), sizes=torch.Size(c.sizes)),
                    properties=TensorProperties(dtype=c.dtype),
                    size=torch.Size(c.global_shape),
                ),
            )
            for c in self._chunks.values()
        ]
        items += [WriteItem(index=MetadataIndex(k), type=WriteItemType.BYTE_IO) for k in self._objects]
        self.plan = SavePlan(items)
        return self.plan

    def resolve_data(self, write_item: WriteItem):
        if write_item.type == WriteItemType.BYTE_IO:
            buf = io.BytesIO()
            torch.save([self._objects[write_item.index.fqn]], buf)  # as megatron packs ShardedObjects
            buf.seek(0)
            return buf
        c = self._chunks[(write_item.index.fqn, tuple(write_item.index.offset))]
        t = c.make()
        if tuple(t.shape) != c.sizes or t.dtype != c.dtype:
            raise AssertionError(f"{c.key}@{c.offsets}: made {t.dtype} {tuple(t.shape)}, planned {c.dtype} {c.sizes}")
        self._on_write(c)
        return t


def save_lazy(
    out_dir: str | Path,
    chunks: list[LazyChunk],
    objects: dict[str, object] | None = None,
    on_write: Callable[[LazyChunk], None] = lambda c: None,
) -> None:
    """Write a megatron-core torch_dist checkpoint from lazy chunks (one chunk in memory at a time)."""
    import json

    from torch.distributed.checkpoint import save

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # One writer thread: torch's extra writer threads drop their exceptions (the save then "succeeds" with chunks
    # missing), and the conversion is I/O-bound anyway.
    writer = FileSystemWriter(out_dir, single_file_per_rank=True, thread_count=1, sync_files=True)
    with warnings.catch_warnings():  # "torch.distributed is disabled ... single process": that is the intent
        warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
        try:
            save({}, storage_writer=writer, planner=_LazySavePlanner(chunks, objects or {}, on_write), no_dist=True)
        except CheckpointException as e:  # DCP wraps the real error (a disk-full OSError, a UserError) per rank
            failures = list(getattr(e, "_failures", {}).values())
            if failures and isinstance(failures[0], tuple) and isinstance(failures[0][0], Exception):
                raise failures[0][0] from None
            raise
    md = FileSystemReader(out_dir).read_metadata()
    missing = [c for c in chunks if MetadataIndex(c.key, torch.Size(c.offsets)) not in md.storage_data]
    if missing:
        raise RuntimeError(f"checkpoint save lost {len(missing)} chunk(s), e.g. {missing[0].key}@{missing[0].offsets}")
    torch.save({}, out_dir / "common.pt")
    (out_dir / "metadata.json").write_text(json.dumps(MCORE_CONFIG))


class _BoxLoadPlanner:
    """The minimum of DCP's LoadPlanner that `FileSystemReader.read_data` calls: where each read item goes."""

    def __init__(self, targets: dict[tuple[str, tuple[int, ...]], torch.Tensor]):
        self.targets = targets

    def resolve_tensor(self, read_item: ReadItem) -> torch.Tensor:
        t = self.targets[(read_item.dest_index.fqn, tuple(read_item.dest_index.offset))]
        for dim, (off, length) in enumerate(zip(read_item.dest_offsets, read_item.lengths, strict=True)):
            t = t.narrow(dim, off, length)
        return t

    def commit_tensor(self, read_item: ReadItem, tensor: torch.Tensor) -> None:
        pass

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        raise AssertionError("weights-only reader asked for bytes")


class CheckpointReader:
    """Random access to the tensors of a torch_dist checkpoint, by global box."""

    def __init__(self, ckpt_dir: str | Path):
        self.dir = Path(ckpt_dir)
        if not (self.dir / ".metadata").is_file():
            raise UserError("not a torch_dist checkpoint (no .metadata file)", file=str(self.dir))
        self._reader = FileSystemReader(self.dir)
        try:
            self.metadata = self._reader.read_metadata()
        except Exception as e:  # a truncated or foreign .metadata: unpickling raises anything
            raise UserError(f"cannot read checkpoint metadata: {e}", file=str(self.dir / ".metadata")) from None
        self._reader.set_up_storage_reader(self.metadata, is_coordinator=True)
        self.tensors: dict[str, TensorStorageMetadata] = {
            k: v for k, v in self.metadata.state_dict_metadata.items() if isinstance(v, TensorStorageMetadata)
        }
        for rel in {info.relative_path for info in self.metadata.storage_data.values()}:
            if not (self.dir / rel).is_file():
                raise UserError(f"checkpoint data file {rel} is missing", file=str(self.dir))

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.tensors[key].size)

    def dtype(self, key: str) -> torch.dtype:
        return self.tensors[key].properties.dtype

    def read(self, boxes: Iterable[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> list[torch.Tensor]:
        """Read several boxes (key, offsets, sizes) in one pass over the files; returns tensors in order."""
        targets: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}
        items: list[ReadItem] = []
        order = []
        for key, offsets, sizes in boxes:
            md = self.tensors[key]
            target = torch.empty(sizes, dtype=md.properties.dtype)
            if (key, tuple(offsets)) in targets:
                raise AssertionError(f"box {key}@{offsets} requested twice")
            targets[(key, tuple(offsets))] = target
            order.append(target)
            chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(sizes))
            new = create_read_items_for_chunk_list(key, md, [chunk])
            covered = sum(int(torch.Size(it.lengths).numel()) for it in new)
            if covered != target.numel():
                raise UserError(f"checkpoint does not cover {key} at {offsets} (size {sizes})", file=str(self.dir))
            items += new
        plan = self._reader.prepare_local_plan(LoadPlan(items))
        plan = self._reader.prepare_global_plan([plan])[0]
        self._reader.read_data(plan, _BoxLoadPlanner(targets)).wait()
        return order
