"""The streaming shard merge writes exactly what megatron-core's IndexedDatasetBuilder writes.

Run on CPU: `.venv/bin/pytest tests/tokenize/test_tokenize_indexed.py -q`.
"""

from __future__ import annotations

import numpy as np
import pytest

from cptkit.tokenize import indexed


def _shards(tmp_path, docs_per_shard, dtype, rng):
    shards, all_docs = [], []
    for k, n in enumerate(docs_per_shard):
        docs = [rng.integers(0, 60000, size=int(rng.integers(1, 50))).astype(dtype) for _ in range(n)]
        shard = tmp_path / f"s{k}"
        (tmp_path / f"s{k}.bin").write_bytes(b"".join(d.tobytes() for d in docs))
        (tmp_path / f"s{k}.len").write_bytes(np.array([len(d) for d in docs], dtype=np.int32).tobytes())
        shards.append(shard)
        all_docs.extend(docs)
    return shards, all_docs


@pytest.mark.parametrize("dtype", ["uint16", "int32"])
def test_merge_equals_megatron_builder_across_block_boundaries(tmp_path, monkeypatch, dtype):
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    torch.set_num_threads(1)
    monkeypatch.setattr(indexed, "_BLOCK", 7)  # many blocks per shard: the running pointer must carry over
    rng = np.random.default_rng(0)
    shards, docs = _shards(tmp_path, [0, 23, 1, 40, 7], np.dtype(dtype), rng)
    indexed.merge_shards(shards, tmp_path / "ours", dtype, len(docs))

    builder = IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.dtype(dtype).type)
    for d in docs:
        builder.add_document(d.astype(np.int64), [len(d)])  # preprocess_data.py passes lists; arrays work too
    builder.finalize(str(tmp_path / "ref.idx"))

    for ext in ("bin", "idx"):
        assert (tmp_path / f"ours.{ext}").read_bytes() == (tmp_path / f"ref.{ext}").read_bytes(), ext
    assert not list(tmp_path.glob("*.tmp"))
    head = indexed.read_index_header(tmp_path / "ours.idx")
    assert head == {"version": 1, "dtype": dtype, "sequences": len(docs), "documents": len(docs)}
    # Not blind: stats that disagree with the shard files are refused before anything is written.
    with pytest.raises(RuntimeError, match="stats say"):
        indexed.merge_shards(shards, tmp_path / "bad", dtype, len(docs) + 1)
    assert not (tmp_path / "bad.bin").exists() and not (tmp_path / "bad.idx").exists()
