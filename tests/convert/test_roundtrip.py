"""HF → megatron-core → HF is bit-exact tensor by tensor; the release loads with transformers; RUN_DIR handling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from convhelp import make_hf_model
from safetensors.torch import load_file

from cptkit.convert.hf_to_mcore import convert_hf_to_mcore
from cptkit.convert.mcore_io import CheckpointReader
from cptkit.convert.mcore_to_hf import convert_mcore_to_hf, resolve_checkpoint
from cptkit.errors import UserError
from cptkit.model.config import ModelConfig


def quiet(*_):
    pass


def load_dir(d: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        out |= load_file(f)
    return out


def assert_bit_exact(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


@pytest.mark.parametrize(
    ("arch", "tied", "tp", "dtype"),
    [
        ("llama", False, 1, torch.float32),
        ("llama", False, 2, torch.float32),
        ("llama", True, 2, torch.bfloat16),  # Llama-3.2 style: tied embeddings
        ("qwen2", False, 2, torch.float32),
        ("qwen2", True, 1, torch.bfloat16),
        ("mistral", False, 2, torch.float32),  # a third architecture added as a spec only (convert/mistral.yaml)
    ],
)
def test_hf_mcore_hf_is_bit_exact(tmp_path, arch, tied, tp, dtype):
    hf = make_hf_model(tmp_path / "hf", arch, tied=tied, dtype=dtype)
    convert_hf_to_mcore(hf, tmp_path / "mc", tp=tp, log=quiet)
    cfg = ModelConfig.load(tmp_path / "mc")
    assert cfg.padded_vocab_size == 256 and cfg.vocab_size == 250
    reader = CheckpointReader(tmp_path / "mc")
    assert reader.shape("embedding.word_embeddings.weight") == (256, 64)
    assert ("output_layer.weight" in reader.tensors) == (not tied)
    assert ("decoder.layers.self_attention.linear_qkv.bias" in reader.tensors) == (arch == "qwen2")
    convert_mcore_to_hf(tmp_path / "mc", tmp_path / "out", dtype=dtype, log=quiet)
    assert_bit_exact(load_dir(hf), load_dir(tmp_path / "out"))


def test_release_is_bf16_and_loads_with_transformers(tmp_path, llama3_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = make_hf_model(tmp_path / "hf", tokenizer_dir=llama3_tokenizer)
    convert_hf_to_mcore(hf, tmp_path / "mc", log=quiet)
    convert_mcore_to_hf(tmp_path / "mc", tmp_path / "out", log=quiet)  # bf16 by default
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert {"config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json"} <= set(names)
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == torch.bfloat16 and model.lm_head.weight.shape == (250, 64)  # padding removed
    assert model.config.rope_parameters["rope_type"] == "llama3"
    original = load_dir(hf)
    assert torch.equal(model.model.embed_tokens.weight, original["model.embed_tokens.weight"].to(torch.bfloat16))
    assert AutoTokenizer.from_pretrained(out)("hello").input_ids


def test_shards_stay_under_the_limit(tmp_path):
    hf = make_hf_model(tmp_path / "hf")
    convert_hf_to_mcore(hf, tmp_path / "mc", log=quiet)
    convert_mcore_to_hf(tmp_path / "mc", tmp_path / "out", dtype=torch.float32, max_shard_bytes=100_000, log=quiet)
    shards = sorted((tmp_path / "out").glob("*.safetensors"))
    assert len(shards) > 3 and all(p.stat().st_size < 100_000 + 4096 for p in shards)
    assert_bit_exact(load_dir(hf), load_dir(tmp_path / "out"))


def test_run_dir_latest_and_iteration(tmp_path):
    hf = make_hf_model(tmp_path / "hf")
    run = tmp_path / "run"
    convert_hf_to_mcore(hf, run / "checkpoints/iter_0000010", log=quiet)
    shutil.copytree(run / "checkpoints/iter_0000010", run / "checkpoints/iter_0000020")
    (run / "checkpoints/latest_checkpointed_iteration.txt").write_text("20\n")
    assert resolve_checkpoint(run).name == "iter_0000020"
    assert resolve_checkpoint(run, 10).name == "iter_0000010"
    assert resolve_checkpoint(run / "checkpoints/iter_0000010").name == "iter_0000010"
    with pytest.raises(UserError, match="no checkpoint for iteration 30"):
        resolve_checkpoint(run, 30)
    convert_mcore_to_hf(run, tmp_path / "out", iteration=10, dtype=torch.float32, log=quiet)
    assert_bit_exact(load_dir(hf), load_dir(tmp_path / "out"))
