"""Checkpoint tensor key names: the one place train/checkpoint.py and convert (mcore_to_hf, verify) take them from.

cptkit stores the model under canonical local-spec keys. Transformer Engine fuses the pre-attention and pre-MLP norms
into the following linear layers, and megatron-core names even the local spec's norms after TE's fused layers
(`linear_qkv.layer_norm_weight`, `linear_fc1.layer_norm_weight`); those keys are renamed to `input_layernorm.weight` /
`pre_mlp_layernorm.weight` on save and load. TE's `_extra_state` (FP8 scaling history) is never stored, so a
checkpoint moves between CPU (local spec) and GPU (TE spec) runs and across TP/PP layouts (dist_checkpointing
reshards) — and any loader must leave `_extra_state` out of its request (a training checkpoint has none).

    from cptkit.model.keys import checkpoint_names
    checkpoint_names("decoder.layers.input_layernorm.weight")
    # ('decoder.layers.input_layernorm.weight', 'decoder.layers.self_attention.linear_qkv.layer_norm_weight')
"""

from __future__ import annotations

import os
import re
from typing import Any

_TE_TO_LOCAL = (
    (re.compile(r"self_attention\.linear_qkv\.layer_norm_(weight|bias)$"), r"input_layernorm.\1"),
    (re.compile(r"mlp\.linear_fc1\.layer_norm_(weight|bias)$"), r"pre_mlp_layernorm.\1"),
)
_LOCAL_TO_TE = (
    (re.compile(r"input_layernorm\.(weight|bias)$"), r"self_attention.linear_qkv.layer_norm_\1"),
    (re.compile(r"pre_mlp_layernorm\.(weight|bias)$"), r"mlp.linear_fc1.layer_norm_\1"),
)
EXTRA_STATE = "_extra_state"


def canonical_key(key: str) -> str:
    """A TE-style checkpoint key → the canonical local-spec name (other keys unchanged)."""
    for pattern, repl in _TE_TO_LOCAL:
        if pattern.search(key):
            return pattern.sub(repl, key)
    return key


def te_key(key: str) -> str:
    """The canonical name → megatron-core's own (TE-style) checkpoint name."""
    for pattern, repl in _LOCAL_TO_TE:
        if pattern.search(key):
            return pattern.sub(repl, key)
    return key


def checkpoint_names(canonical: str) -> tuple[str, ...]:
    """Every name a tensor may be stored under: the canonical one first, then megatron-core's own."""
    other = te_key(canonical)
    return (canonical,) if other == canonical else (canonical, other)


def checkpoint_naming(directory: str | os.PathLike) -> str:
    """ "local" for cptkit's canonical keys, "te" for a checkpoint saved with megatron-core's default names (which
    call even the local spec's norms `linear_qkv.layer_norm_weight`), so both kinds of checkpoint load."""
    from torch.distributed.checkpoint import FileSystemReader

    keys = FileSystemReader(str(directory)).read_metadata().state_dict_metadata
    return "te" if any(k.endswith("linear_qkv.layer_norm_weight") for k in keys) else "local"


def canonical_model_state(model, naming: str = "local") -> tuple[dict[str, Any], dict[str, str]]:
    """The model's sharded state dict under canonical (or TE-style) keys, without `_extra_state`, plus
    state-dict key → module key for loading back."""
    rename = canonical_key if naming == "local" else te_key
    out: dict[str, Any] = {}
    back: dict[str, str] = {}
    for key, value in model.sharded_state_dict().items():
        if key.endswith(EXTRA_STATE):
            continue
        if hasattr(value, "key"):
            value.key = rename(canonical_key(value.key))
        new = rename(canonical_key(key))
        out[new] = value
        back[new] = key
    return out, back


def load_model_state(model, loaded: dict[str, Any], back: dict[str, str]) -> None:
    """Put loaded tensors into the model; only `_extra_state` may be missing."""
    state = {back.get(k, k): v for k, v in loaded.items()}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(EXTRA_STATE)]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"checkpoint does not fit the model: missing {missing}, unexpected {result.unexpected_keys}")
