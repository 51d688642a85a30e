from __future__ import annotations

import json

import pytest

from cptkit.errors import UserError
from cptkit.model.config import ModelConfig, RopeScaling, pad_vocab_size


def tiny(**kw) -> ModelConfig:
    base = dict(
        architecture="llama",
        num_layers=2,
        hidden_size=64,
        ffn_hidden_size=128,
        num_attention_heads=4,
        num_query_groups=2,
        kv_channels=16,
        vocab_size=250,
        padded_vocab_size=256,
        max_position_embeddings=256,
        rotary_base=500000.0,
        rope_scaling=RopeScaling(factor=8.0),
        norm_epsilon=1e-5,
    )
    base.update(kw)
    return ModelConfig(**base)


def test_roundtrip(tmp_path):
    cfg = tiny()
    cfg.save(tmp_path)
    assert ModelConfig.load(tmp_path) == cfg


def test_llama31_8b_parameter_count():
    cfg = tiny(
        num_layers=32,
        hidden_size=4096,
        ffn_hidden_size=14336,
        num_attention_heads=32,
        num_query_groups=8,
        kv_channels=128,
        vocab_size=128256,
        padded_vocab_size=128256,
    )
    assert cfg.num_parameters == 8_030_261_248  # Llama-3.1-8B as published


def test_pad_vocab():
    assert pad_vocab_size(128256, 128) == 128256
    assert pad_vocab_size(250, 128) == 256


def test_bad_heads_rejected():
    with pytest.raises(ValueError, match="divisible by num_query_groups"):
        tiny(num_query_groups=3)


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match=r"no cptkit_model\.json"):
        ModelConfig.load(tmp_path)
    (tmp_path / "cptkit_model.json").write_text(json.dumps({**tiny().model_dump(), "num_layers": -1}))
    with pytest.raises(UserError, match="num_layers"):
        ModelConfig.load(tmp_path)
