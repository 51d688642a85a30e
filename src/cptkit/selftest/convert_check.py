"""`convert_verify_tp2`: a random Llama-3-shaped HF model, converted by `cptkit convert hf-to-mcore --tp 2 --dtype
bf16`, loaded at TP=2 in bf16 on the GPUs, and its logits compared with the HF model's (fp32, the reference) — what
`cptkit convert verify` does on CPU in fp32, here on the training job's own device, dtype and TP."""

from __future__ import annotations

import torch

from cptkit.selftest.report import FAIL, INFO, PASS, Row

TOP1_MIN, MAX_DIFF = 0.95, 0.1  # bf16 keeps ~3 significant digits; a random model has near-ties in its top-1


def _prepare(ctx, cfg, hf_dir, mcore_dir) -> None:
    """Rank 0 writes the HF model and converts it (the converter is single-process)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from cptkit.convert.hf_to_mcore import convert_hf_to_mcore
    from cptkit.demo.tiny_hf import hf_config_dict

    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(**{**hf_config_dict(cfg), "bos_token_id": 0, "eos_token_id": 1}))
    hf.save_pretrained(hf_dir, safe_serialization=True)
    convert_hf_to_mcore(hf_dir, mcore_dir, tp=2, dtype=torch.bfloat16, log=lambda *_: None)


def run(ctx) -> Row:
    from cptkit.convert.mcore_io import CheckpointReader
    from cptkit.convert.spec import load_specs
    from cptkit.convert.verify import canonical_sharded_state_dict, compare_logits
    from cptkit.model.build import forward_logits
    from cptkit.model.config import ModelConfig
    from cptkit.selftest.checks import _build, _fresh_dir, small_config

    d = _fresh_dir(ctx, "convert_verify")
    hf_dir, mcore_dir = d / "hf", d / "mcore"
    cfg = small_config(ctx.cpu_dry)
    if ctx.rank == 0:
        _prepare(ctx, cfg, hf_dir, mcore_dir)
    torch.distributed.barrier()

    from megatron.core import dist_checkpointing

    ck = ModelConfig.load(mcore_dir)
    model, _ = _build(ck, ctx, tp=2, bf16=True, use_te=None if not ctx.cpu_dry else False)
    spec = load_specs()[ck.architecture]
    keys = set(CheckpointReader(mcore_dir).metadata.state_dict_metadata)
    state = dist_checkpointing.load({"model": canonical_sharded_state_dict(model, keys, spec)}, str(mcore_dir))
    model.load_state_dict(state["model"], strict=False)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, ck.vocab_size, (2, 64 if ctx.cpu_dry else 256), generator=g)
    ours = forward_logits(model, tokens.to(ctx.device), vocab_size=ck.vocab_size).float().cpu()
    if ctx.rank != 0:
        return Row("convert_verify_tp2", INFO, "rank != 0")
    from cptkit.convert.verify import hf_logits

    result = compare_logits(hf_logits(hf_dir, tokens), ours, MAX_DIFF)
    ok = result.ok and result.top1_agreement >= TOP1_MIN
    text = (
        f"HF fp32 vs converted, TP=2 bf16: max |dlogit| {result.max_abs_diff:.3g} (<= {MAX_DIFF}), top-1 "
        f"agreement {result.top1_agreement:.1%} (>= {TOP1_MIN:.0%})"
    )
    return Row("convert_verify_tp2", PASS if ok else FAIL, text, result.as_dict())
