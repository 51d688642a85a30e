"""`ModelConfig` → megatron-core `TransformerConfig` and `GPTModel`, for the trainer, the converter's verifier and tests.

The Transformer Engine spec is used when TE imports and CUDA is available (real runs); otherwise the local spec
(RMSNorm, SwiGLU, GQA, RoPE in plain PyTorch), which is what runs on CPU. Llama-3.x RoPE scaling is applied with all
four of its parameters (megatron-core's own switch hard-codes low/high-frequency factors 1/4 and an original context
of 8,192, which is right for Llama-3.1/3.2 but not for every model that uses the scheme).

On CPU: call `cptkit.backend.cpu.enable_cpu_backend()` and `cptkit.backend.dist.init_distributed()` first, then
    model = build_gpt_model(cfg, transformer_config(cfg))
    logits = forward_logits(model, tokens)    # [batch, seq, vocab_size]
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from cptkit.model.config import ModelConfig, RopeScaling


def te_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


def transformer_config(
    cfg: ModelConfig,
    *,
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    context_parallel_size: int = 1,
    sequence_parallel: bool = False,
    params_dtype: torch.dtype = torch.float32,
    bf16: bool = False,
    init_method_std: float = 0.02,
    **overrides: Any,
):
    """The TransformerConfig of a Llama/Qwen2-style decoder. `overrides` go straight to TransformerConfig
    (recompute_granularity, overlap settings, ...)."""
    from megatron.core.transformer.transformer_config import TransformerConfig

    on_gpu = torch.cuda.is_available()
    kwargs: dict[str, Any] = dict(
        num_layers=cfg.num_layers,
        hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.ffn_hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        num_query_groups=cfg.num_query_groups,
        kv_channels=cfg.kv_channels,
        normalization="RMSNorm",
        layernorm_epsilon=cfg.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=cfg.add_qkv_bias,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=init_method_std,
        tensor_model_parallel_size=tensor_model_parallel_size,
        pipeline_model_parallel_size=pipeline_model_parallel_size,
        context_parallel_size=context_parallel_size,
        sequence_parallel=sequence_parallel and tensor_model_parallel_size > 1,
        params_dtype=params_dtype,
        bf16=bf16,
        pipeline_dtype=params_dtype,
        # Fused kernels exist only on GPU; on CPU the plain PyTorch paths run.
        bias_activation_fusion=on_gpu,
        masked_softmax_fusion=on_gpu,
        apply_rope_fusion=False,
        gradient_accumulation_fusion=False,
        persist_layer_norm=on_gpu,
        use_cpu_initialization=not on_gpu,
    )
    kwargs.update(overrides)
    return TransformerConfig(**kwargs)


def llama3_inv_freq(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    """Llama-3.x frequency-dependent scaling of RoPE inverse frequencies (as HF `_compute_llama3_parameters`)."""
    low_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def build_gpt_model(
    cfg: ModelConfig,
    tconfig,
    *,
    pre_process: bool | None = None,
    post_process: bool | None = None,
    use_te: bool | None = None,
    max_sequence_length: int | None = None,
):
    """A megatron-core GPTModel for this process's pipeline stage (after `initialize_model_parallel`)."""
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if use_te is None:
        use_te = te_available()
    if use_te:
        spec = get_gpt_layer_with_transformer_engine_spec()
    else:
        spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    if pre_process is None:
        pre_process = parallel_state.is_pipeline_first_stage()
    if post_process is None:
        post_process = parallel_state.is_pipeline_last_stage()
    tp = parallel_state.get_tensor_model_parallel_world_size()
    if cfg.padded_vocab_size % tp:
        from cptkit.errors import UserError

        raise UserError(
            f"padded_vocab_size {cfg.padded_vocab_size} is not divisible by TP={tp}; re-convert with "
            f"--make-vocab-size-divisible-by {128 * tp}",
            file="cptkit_model.json",
            field="padded_vocab_size",
        )
    model = GPTModel(
        config=tconfig,
        transformer_layer_spec=spec,
        vocab_size=cfg.padded_vocab_size,
        max_sequence_length=max_sequence_length or cfg.max_position_embeddings,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=cfg.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_percent=1.0,
        rotary_base=int(cfg.rotary_base) if float(cfg.rotary_base).is_integer() else cfg.rotary_base,
    )
    if cfg.rope_scaling is not None:
        rope = model.rotary_pos_emb
        rope.inv_freq = llama3_inv_freq(rope.inv_freq, cfg.rope_scaling)
    return model


def causal_mask(seq_len: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Megatron's boolean attention mask, True where attention is NOT allowed: [1, 1, seq, seq]."""
    return torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool, device=device), diagonal=1)[None, None]


def position_ids_for(tokens: torch.Tensor) -> torch.Tensor:
    return torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0).expand_as(tokens)


@torch.no_grad()
def forward_logits(model, tokens: torch.Tensor, vocab_size: int | None = None) -> torch.Tensor:
    """Full-vocabulary logits [batch, seq, vocab] from a single-stage (PP=1) model, gathered over TP, padding rows
    removed when `vocab_size` is given."""
    from megatron.core import parallel_state, tensor_parallel

    if parallel_state.get_pipeline_model_parallel_world_size() != 1:
        raise NotImplementedError("forward_logits runs the whole model in one stage (PP=1)")
    model.eval()
    logits = model(tokens, position_ids_for(tokens), causal_mask(tokens.shape[1], tokens.device))
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        logits = tensor_parallel.gather_from_tensor_model_parallel_region(logits)
    return logits[..., :vocab_size] if vocab_size is not None else logits
