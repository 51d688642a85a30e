"""Tiny HF models made in the test (no hub): Llama-3.1-style (GQA, llama3 RoPE scaling) and Qwen2 (QKV bias)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

# Large enough weights that attention is far from uniform, and an original context (64 tokens) well inside the test
# sequences, so a wrong RoPE, a misordered KV group or swapped gate/up moves the logits by far more than 1e-4.
INIT_STD = 0.25
SEQ_LEN = 256


def make_hf_model(
    out: Path,
    arch: str = "llama",
    *,
    tied: bool = False,
    dtype: torch.dtype = torch.float32,
    vocab_size: int = 250,
    seed: int = 0,
    tokenizer_dir: Path | None = None,
) -> Path:
    """Save a 2-layer, hidden-64, 4-head, 2-KV-head random model to `out` (safetensors, as save_pretrained does)."""
    import transformers

    common = dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=vocab_size,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        initializer_range=INIT_STD,
    )
    if arch == "llama":
        cls, config = (
            transformers.LlamaForCausalLM,
            transformers.LlamaConfig(
                **common,
                rope_theta=500000.0,
                rope_scaling={
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 64,
                },
                bos_token_id=1,
                eos_token_id=2,
            ),
        )
    elif arch == "qwen2":
        cls, config = transformers.Qwen2ForCausalLM, transformers.Qwen2Config(**common, rope_theta=1000000.0)
    elif arch == "mistral":
        cls, config = transformers.MistralForCausalLM, transformers.MistralConfig(**common, sliding_window=None)
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = cls(config)
    with torch.no_grad():  # norms and biases away from their trivial init, so a misplaced one shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
    model.to(dtype).save_pretrained(out)
    if tokenizer_dir is not None:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            if (tokenizer_dir / name).exists():
                shutil.copy(tokenizer_dir / name, out / name)
    return out
