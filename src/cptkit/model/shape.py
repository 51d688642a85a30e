"""Parameter counts from a model's shape: the one formula `cptkit plan`, `cptkit launch` and `ModelConfig` share.

A shape is a mapping with ModelConfig's size keys (`hidden_size`, `ffn_hidden_size`, `num_layers`,
`num_attention_heads`, optional `num_query_groups`, `kv_channels`, `add_qkv_bias`, `tie_word_embeddings`): a
`cptkit_model.json`, or a recipe's `model.config` before the checkpoint exists. Torch-free (login nodes plan with it).

    python -c "from cptkit.model.shape import count_parameters as c; print(c(dict(hidden_size=4096, \\
        ffn_hidden_size=14336, num_layers=32, num_attention_heads=32, num_query_groups=8, vocab_size=128256)))"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def layer_parameters(shape: Mapping[str, Any]) -> tuple[int, int]:
    """(TP-sharded, replicated) parameters of one Llama-family layer: GQA attention, SwiGLU MLP, two RMSNorms."""
    h, f = shape["hidden_size"], shape["ffn_hidden_size"]
    heads = shape["num_attention_heads"]
    kv = shape.get("kv_channels") or h // heads
    groups = shape.get("num_query_groups") or heads
    qkv_out = (heads + 2 * groups) * kv
    sharded = h * qkv_out + heads * kv * h + 3 * h * f  # QKV, output projection, gate + up + down
    if shape.get("add_qkv_bias"):
        sharded += qkv_out
    return sharded, 2 * h


def count_parameters(shape: Mapping[str, Any], *, vocab_size: int | None = None) -> int:
    """All parameters: layers, embedding (+ output layer unless tied) and the final norm. `vocab_size` defaults to
    the true vocabulary (as HF reports it); pass the padded one for the rows megatron-core trains."""
    sharded, replicated = layer_parameters(shape)
    h, v = shape["hidden_size"], vocab_size or shape["vocab_size"]
    embeddings = v * h * (1 if shape.get("tie_word_embeddings") else 2)
    return shape["num_layers"] * (sharded + replicated) + embeddings + h
