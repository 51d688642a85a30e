"""A tiny Llama-3-shaped Hugging Face checkpoint with the real Llama-3.1 tokenizer, made locally (random weights).

Its shape is read from `recipes/tiny_cpu.yaml` (`model.config`), so the converted checkpoint is exactly what that
recipe trains. Used by the demo and by the tests that run the demo pipeline.

    python -m cptkit.demo.tiny_hf /tmp/tiny_hf      # on CPU, a few seconds
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from cptkit.model.config import ModelConfig
from cptkit.tokenize.tokenizers import llama3_dir

RECIPE = Path(__file__).resolve().parents[3] / "recipes" / "tiny_cpu.yaml"


def hf_config_dict(cfg: ModelConfig) -> dict:
    """The transformers LlamaConfig fields for a cptkit ModelConfig (Llama-3 special token ids)."""
    rope = None
    if cfg.rope_scaling is not None:
        rope = cfg.rope_scaling.model_dump()
    return dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.ffn_hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_query_groups,
        head_dim=cfg.kv_channels,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rotary_base,
        rope_scaling=rope,
        rms_norm_eps=cfg.norm_epsilon,
        tie_word_embeddings=cfg.tie_word_embeddings,
        attention_bias=cfg.add_qkv_bias,
        bos_token_id=128000,
        eos_token_id=128001,
        torch_dtype="float32",
    )


def make_tiny_llama(out_dir: str | Path, seed: int = 0) -> Path:
    """Write config.json, model.safetensors, generation_config.json and the tokenizer files to `out_dir` (once)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from cptkit.train.recipe import load_recipe

    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    cfg = ModelConfig.model_validate(load_recipe(RECIPE).model.config)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**hf_config_dict(cfg)))
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(llama3_dir() / name, tmp / name)
    tmp.rename(out)  # appears complete or not at all
    return out


if __name__ == "__main__":
    print(make_tiny_llama(sys.argv[1] if len(sys.argv) > 1 else "demo_run/hf_base"))
