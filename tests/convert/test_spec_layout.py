"""Mapping specs → ModelConfig, fused layouts and TP chunks (no megatron-core model needed)."""

from __future__ import annotations

import pytest
import torch

from cptkit.convert.hf_checkpoint import model_config
from cptkit.convert.layout import (
    chunks,
    fuse_gate_up,
    fuse_qkv,
    hf_shapes,
    mcore_shape,
    split_gate_up,
    split_qkv,
    to_hf,
)
from cptkit.convert.spec import find_spec, load_specs
from cptkit.errors import UserError

LLAMA31_8B = {  # the config.json of meta-llama/Llama-3.1-8B (transformers 4 form)
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "attention_bias": False,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "vocab_size": 128256,
}


def cfg_of(hf: dict, tp: int = 1, divisible_by: int = 128):
    return model_config(hf, find_spec(hf, "config.json"), "config.json", tp=tp, divisible_by=divisible_by)


def test_llama31_config_carries_rope_scaling_gqa_and_vocab():
    cfg = cfg_of(LLAMA31_8B)
    assert (cfg.architecture, cfg.num_layers, cfg.num_query_groups, cfg.kv_channels) == ("llama", 32, 8, 128)
    assert cfg.rotary_base == 500000.0 and cfg.norm_epsilon == 1e-5 and not cfg.tie_word_embeddings
    assert cfg.rope_scaling is not None and cfg.rope_scaling.factor == 8.0
    assert cfg.rope_scaling.original_max_position_embeddings == 8192
    assert cfg.padded_vocab_size == 128256  # no padding needed at TP <= 2
    assert cfg_of(LLAMA31_8B, tp=4).padded_vocab_size == 128512  # 128 x 4 = 512 does not divide 128,256
    assert cfg.hf_config == LLAMA31_8B


def test_transformers5_rope_parameters_and_llama32_tied():
    hf = {k: v for k, v in LLAMA31_8B.items() if k not in ("rope_scaling", "rope_theta")}
    hf |= {"rope_parameters": {**LLAMA31_8B["rope_scaling"], "factor": 32.0, "rope_theta": 500000.0}}
    hf |= {"tie_word_embeddings": True, "head_dim": 64, "hidden_size": 2048, "num_attention_heads": 32}
    cfg = cfg_of(hf)
    assert cfg.rope_scaling.factor == 32.0 and cfg.rotary_base == 500000.0
    assert cfg.tie_word_embeddings and cfg.kv_channels == 64
    plain = {k: v for k, v in hf.items() if k != "rope_parameters"} | {"rope_parameters": {"rope_type": "default"}}
    assert cfg_of(plain).rope_scaling is None and cfg_of(plain).rotary_base == 10000.0


def test_qwen2_has_qkv_bias():
    hf = {"architectures": ["Qwen2ForCausalLM"], "hidden_act": "silu", "hidden_size": 896, "intermediate_size": 4864}
    hf |= {"num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-6}
    hf |= {"rope_theta": 1000000.0, "tie_word_embeddings": True, "vocab_size": 151936, "use_sliding_window": False}
    hf |= {"max_position_embeddings": 32768}
    cfg = cfg_of(hf)
    assert cfg.architecture == "qwen2" and cfg.add_qkv_bias and cfg.tie_word_embeddings
    assert cfg.padded_vocab_size == 151936 and cfg.kv_channels == 64


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"architectures": ["GPT2LMHeadModel"]}, "architectures"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling"),
        ({"num_attention_heads": 30}, "num_attention_heads"),  # 30 heads, 8 KV heads: not grouped query attention
    ],
)
def test_unsupported_config_names_file_and_field(change, field):
    with pytest.raises(UserError) as e:
        cfg_of(LLAMA31_8B | change)
    assert e.value.file == "config.json" and field in str(e.value)


def test_every_spec_loads_and_user_spec_wins(tmp_path):
    specs = load_specs()
    assert {"llama", "qwen2"} <= set(specs)
    (tmp_path / "x.yaml").write_text("name: llama\nconfig: {}\nweights: []\nlayer_weights: []\n")
    assert load_specs([tmp_path / "x.yaml"])["llama"].weights == ()
    (tmp_path / "bad.yaml").write_text("name: bad\nconfig: {}\nweights: [{mcore: a, hf: [x, y], kind: row}]\n")
    with pytest.raises(UserError, match=r"bad\.yaml"):
        load_specs([tmp_path / "bad.yaml"])


def test_qkv_is_grouped_per_kv_group():
    # 4 heads, 2 groups, head_dim 1: q rows q0..q3, k rows k0,k1, v rows v0,v1 (values encode their identity).
    q, k, v = torch.tensor([[0.0], [1], [2], [3]]), torch.tensor([[10.0], [11]]), torch.tensor([[20.0], [21]])
    fused = fuse_qkv(q, k, v, groups=2)
    assert fused.flatten().tolist() == [0, 1, 10, 20, 2, 3, 11, 21]  # [q_g0, k_g0, v_g0, q_g1, k_g1, v_g1]
    cfg = cfg_of(LLAMA31_8B | {"num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 4, "head_dim": 1})
    assert [t.tolist() for t in split_qkv(fused, cfg)] == [q.tolist(), k.tolist(), v.tolist()]
    gate, up = torch.ones(3, 2), torch.zeros(3, 2)
    assert torch.equal(fuse_gate_up(gate, up)[:3], gate)  # [gate; up]
    assert all(torch.equal(a, b) for a, b in zip(split_gate_up(fuse_gate_up(gate, up)), (gate, up), strict=True))


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_tp_chunks_tile_the_same_global_tensor(tp):
    small = {"num_attention_heads": 8, "num_key_value_heads": 4, "hidden_size": 32, "intermediate_size": 64}
    cfg = cfg_of(LLAMA31_8B | small | {"vocab_size": 250, "head_dim": 4}, tp=1, divisible_by=128 * 4)
    spec = load_specs()["llama"]
    g = torch.Generator().manual_seed(0)
    for w in spec.layer_weights + spec.weights:
        if w.when == "qkv_bias":
            continue
        hf = [torch.randn(s, generator=g) for s in hf_shapes(w, cfg)]

        def rows(j, a, b, hf=hf):
            return hf[j][a:b]

        whole = torch.full(mcore_shape(w, cfg), float("nan"))
        for c in chunks(w, cfg, tp, rows):
            box = tuple(slice(o, o + s) for o, s in zip(c.offsets, c.sizes, strict=True))
            assert torch.isnan(whole[box]).all(), f"{w.mcore}: chunks overlap"
            whole[box] = c.make()
        assert not torch.isnan(whole).any(), f"{w.mcore}: chunks leave a gap"
        back = to_hf(w, whole, cfg)
        assert all(torch.equal(a, b) for a, b in zip(back, hf, strict=True)), w.mcore
        if w.kind == "vocab":
            assert whole[cfg.vocab_size :].eq(0).all()  # padding rows are zeros
