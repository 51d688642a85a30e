"""HF ↔ megatron-core checkpoint conversion, streamed layer by layer, and verification by logits.

    cptkit convert hf-to-mcore HF_DIR OUT_DIR [--tp 2]        # → torch_dist checkpoint + cptkit_model.json + hf_assets/
    cptkit convert mcore-to-hf CKPT_OR_RUN_DIR OUT_DIR        # → safetensors shards + index, config, tokenizer (bf16)
    cptkit convert verify HF_DIR MCORE_DIR [--tp 2]           # → max / mean |Δlogit|, top-1 agreement

Modules: `spec` (mapping specs in convert/*.yaml → ModelConfig), `hf_checkpoint` (open and check an HF dir),
`layout` (fused layouts and TP chunks), `safetensors_io` and `mcore_io` (streaming readers/writers), `hf_to_mcore`,
`mcore_to_hf`, `verify`, `cli`.
"""
