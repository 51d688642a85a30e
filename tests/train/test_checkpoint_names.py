"""Checkpoint key naming: cptkit writes canonical local-spec names; a checkpoint written with megatron-core's own
(TE-style) names, as other tools write them, loads too. Run in one spawned gloo process."""

from __future__ import annotations

from cptkit.backend.spawn import run_spawned


def _roundtrip(rank, world, tmp):
    from pathlib import Path

    import torch
    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint import FileSystemReader

    from cptkit.backend.dist import initialize_model_parallel
    from cptkit.model.build import build_gpt_model, transformer_config
    from cptkit.model.config import ModelConfig
    from cptkit.train.checkpoint import canonical_model_state, checkpoint_naming, load_checkpoint

    cfg = ModelConfig(
        architecture="llama",
        num_layers=2,
        hidden_size=32,
        ffn_hidden_size=64,
        num_attention_heads=4,
        num_query_groups=2,
        kv_channels=8,
        vocab_size=128,
        padded_vocab_size=128,
        max_position_embeddings=64,
        rotary_base=10000.0,
        norm_epsilon=1e-5,
    )
    out = {}
    for naming in ("local", "te"):
        initialize_model_parallel(seed=1)
        src = build_gpt_model(cfg, transformer_config(cfg))
        with torch.no_grad():
            for p in src.parameters():
                p.add_(torch.randn_like(p))  # norms too: they must not stay at their init of ones
        state, _ = canonical_model_state(src, naming)
        path = Path(tmp) / naming
        path.mkdir()
        dist_checkpointing.save({"model": state}, str(path))
        keys = set(FileSystemReader(str(path)).read_metadata().state_dict_metadata)
        initialize_model_parallel(seed=2)
        dst = build_gpt_model(cfg, transformer_config(cfg))
        load_checkpoint(path, model=dst)
        a, b = src.state_dict(), dst.state_dict()
        tensors = [k for k, v in a.items() if isinstance(v, torch.Tensor)]
        same = len(tensors) >= 9 and all(torch.equal(a[k], b[k]) for k in tensors)
        out[naming] = {"keys": sorted(keys), "detected": checkpoint_naming(path), "same": same}
    return out


def test_canonical_names_written_and_te_style_names_load(tmp_path):
    got = run_spawned(_roundtrip, 1, str(tmp_path))[0]
    local, te = got["local"], got["te"]
    assert "decoder.layers.input_layernorm.weight" in local["keys"]
    assert "decoder.layers.pre_mlp_layernorm.weight" in local["keys"]
    assert not any("layer_norm_weight" in k for k in local["keys"])
    assert "decoder.layers.self_attention.linear_qkv.layer_norm_weight" in te["keys"]
    assert (local["detected"], te["detected"]) == ("local", "te")
    assert local["same"] and te["same"]  # every tensor, norms included, came back
