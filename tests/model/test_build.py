"""The GPTModel builder on CPU: Llama-3.1 RoPE scaling matches HF's, TP=2 reproduces TP=1 over gloo."""

from __future__ import annotations

import torch

from cptkit.backend.spawn import run_spawned
from cptkit.model.build import llama3_inv_freq
from cptkit.model.config import ModelConfig, RopeScaling

CFG = ModelConfig(
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
    rope_scaling=RopeScaling(factor=8.0, original_max_position_embeddings=64),
    norm_epsilon=1e-5,
)


def test_llama3_scaling_matches_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaling = RopeScaling(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
    hf = LlamaConfig(
        hidden_size=2048,
        num_attention_heads=32,
        head_dim=64,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", **scaling.model_dump(exclude={"rope_type"})},
    )
    expected, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    base = 1.0 / (500000.0 ** (torch.arange(0, 64, 2, dtype=torch.float32) / 64))
    ours = llama3_inv_freq(base, scaling)
    torch.testing.assert_close(ours, expected.float(), rtol=1e-6, atol=0)
    # The check is not blind: a different high-frequency factor changes the result.
    off = llama3_inv_freq(base, scaling.model_copy(update={"high_freq_factor": 2.0}))
    assert not torch.allclose(off, expected.float(), rtol=1e-4)


def _train_losses(rank, world, tp):
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    from cptkit.backend.dist import initialize_model_parallel
    from cptkit.model.build import build_gpt_model, causal_mask, position_ids_for, transformer_config

    initialize_model_parallel(tp=tp, seed=0)
    model = build_gpt_model(CFG, transformer_config(CFG, tensor_model_parallel_size=tp))
    ddp = DistributedDataParallel(model.config, DistributedDataParallelConfig(grad_reduce_in_fp32=True), model)
    opt = get_megatron_optimizer(OptimizerConfig(optimizer="adam", lr=1e-3, clip_grad=1.0), [ddp])
    tokens = torch.randint(0, CFG.vocab_size, (2, 33), generator=torch.Generator().manual_seed(1))
    inp, labels = tokens[:, :-1], tokens[:, 1:]
    out = []
    for _ in range(4):
        ddp.zero_grad_buffer()
        opt.zero_grad()
        loss = ddp(inp, position_ids_for(inp), causal_mask(inp.shape[1]), labels=labels).float().mean()
        loss.backward()
        ddp.finish_grad_sync()
        _, grad_norm, _ = opt.step()
        out.append((loss.item(), grad_norm))
    return out


def test_tp2_reproduces_tp1_and_loss_falls():
    tp1 = run_spawned(_train_losses, 1, 1)[0]
    tp2 = run_spawned(_train_losses, 2, 2)
    assert tp2[0] == tp2[1]  # both TP ranks see the same loss
    for (l1, g1), (l2, g2) in zip(tp1, tp2[0], strict=True):
        assert abs(l1 - l2) < 1e-4 and abs(g1 - g2) < 1e-4
    assert tp1[-1][0] < tp1[0][0] - 0.1  # the optimizer step (with grad clipping on CPU) really trains
