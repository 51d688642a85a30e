"""Streaming safetensors reader/writer and the lazy torch_dist writer / box reader."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from cptkit.convert.mcore_io import CheckpointReader, LazyChunk, save_lazy
from cptkit.convert.safetensors_io import PlannedTensor, ShardedWriter, read_header, read_tensor
from cptkit.errors import UserError


def test_reader_reads_whole_tensors_and_row_ranges(tmp_path):
    tensors = {"a": torch.randn(7, 3), "b": torch.randn(5).to(torch.bfloat16), "c": torch.arange(12).view(2, 2, 3)}
    save_file(tensors, tmp_path / "x.safetensors")
    infos = read_header(tmp_path / "x.safetensors")
    for name, t in tensors.items():
        assert torch.equal(read_tensor(infos[name]), t)
    assert torch.equal(read_tensor(infos["a"], (2, 5)), tensors["a"][2:5])


def test_truncated_file_is_a_user_error(tmp_path):
    save_file({"a": torch.randn(100, 10)}, tmp_path / "x.safetensors")
    data = (tmp_path / "x.safetensors").read_bytes()
    (tmp_path / "x.safetensors").write_bytes(data[:-100])
    with pytest.raises(UserError, match="truncated"):
        read_header(tmp_path / "x.safetensors")


def test_writer_shards_like_save_pretrained_and_safetensors_reads_it(tmp_path):
    tensors = {f"t{i}": torch.randn(10, 10) for i in range(5)}  # 400 bytes each
    plan = [PlannedTensor(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()]
    w = ShardedWriter(tmp_path, plan, max_shard_bytes=1000)
    for n, t in tensors.items():
        w.write(n, t)
    w.close()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == 2000
    assert sorted(set(index["weight_map"].values())) == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)]
    loaded = {}
    for f in set(index["weight_map"].values()):
        loaded |= load_file(tmp_path / f)
    assert all(torch.equal(loaded[n], t) for n, t in tensors.items())
    with pytest.raises(AssertionError):  # out of the planned order
        ShardedWriter(tmp_path / "x", plan).write("t1", tensors["t1"])


def test_lazy_writer_materialises_one_chunk_at_a_time_and_reader_reads_any_box(tmp_path):
    full = torch.arange(4 * 6 * 2, dtype=torch.float32).view(4, 6, 2)
    live, peak = [0], [0]

    def make(layer, r):
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        return full[layer : layer + 1, 3 * r : 3 * r + 3].clone()

    def written(c):
        live[0] -= 1

    lazy = [
        LazyChunk("w", (4, 6, 2), (layer, 3 * r, 0), (1, 3, 2), torch.float32, lambda layer=layer, r=r: make(layer, r))
        for layer in range(4)
        for r in range(2)
    ]
    save_lazy(tmp_path / "ck", lazy, {"w_extra/shard_0_4": None}, on_write=written)
    assert peak[0] == 1
    assert json.loads((tmp_path / "ck/metadata.json").read_text())["sharded_backend"] == "torch_dist"
    reader = CheckpointReader(tmp_path / "ck")
    assert reader.shape("w") == (4, 6, 2)
    a, b = reader.read([("w", (2, 0, 0), (1, 6, 2)), ("w", (0, 2, 1), (3, 3, 1))])
    assert torch.equal(a, full[2:3]) and torch.equal(b, full[0:3, 2:5, 1:2])
