"""Throughput check: a Llama-3.1-8B-shaped model with 2 and 4 layers at the recipe's sequence length, micro batch
and TP, timed per micro-batch (forward + backward, bf16, TE spec, sequence parallel), extrapolated to 32 layers and
to the recipe's run (`cptkit.selftest.perf.project`), printed beside the NeMo 24.09 anchor.

Not timed: the data-parallel gradient reduce and the optimizer step, which a run pays once per iteration, after
`global_batch / (micro_batch x DP)` micro-batches (8 for SwallowCode exp1), and overlaps with compute.
On `--cpu-dry`: hidden 64, 1 and 2 layers, seq 64 — it runs the code path; the numbers mean nothing.
"""

from __future__ import annotations

import time

import torch

from cptkit.selftest import perf
from cptkit.selftest.report import FAIL, INFO, PASS, Row


def _shape(ctx) -> dict:
    if ctx.cpu_dry:
        return {**perf.LLAMA31_8B, "hidden_size": 64, "ffn_hidden_size": 176, "num_attention_heads": 8,
                "num_query_groups": 4, "kv_channels": 8, "vocab_size": 1024, "padded_vocab_size": 1024}  # fmt: skip
    if ctx.plan is not None:
        return {**perf.LLAMA31_8B, **{k: v for k, v in ctx.plan.model.items() if k in perf.LLAMA31_8B}}
    return dict(perf.LLAMA31_8B)


def _config(shape: dict, layers: int, seq: int):
    from cptkit.model.config import ModelConfig

    return ModelConfig(
        architecture="llama",
        num_layers=layers,
        hidden_size=shape["hidden_size"],
        ffn_hidden_size=shape["ffn_hidden_size"],
        num_attention_heads=shape["num_attention_heads"],
        num_query_groups=shape["num_query_groups"],
        kv_channels=shape["kv_channels"],
        vocab_size=shape["vocab_size"],
        padded_vocab_size=shape["padded_vocab_size"],
        max_position_embeddings=max(seq, 8192),
        rotary_base=500000.0,
        norm_epsilon=1e-5,
    )


def step_seconds(ctx, shape: dict, layers: int, seq: int, tp: int, iters: int) -> float:
    from cptkit.selftest.checks import _build, _loss

    cfg = _config(shape, layers, seq)
    gpu = not ctx.cpu_dry
    overrides = {"sequence_parallel": gpu and tp > 1, "init_method_std": 0.02}
    model, _ = _build(cfg, ctx, tp=tp, use_te=None if gpu else False, bf16=gpu, **overrides)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, cfg.vocab_size, (ctx.micro_batch, seq + 1), generator=g).to(ctx.device)
    sync = torch.cuda.synchronize if gpu else (lambda: None)

    def step(m) -> None:
        m.zero_grad(set_to_none=True)
        _loss(m, tokens).backward()

    for _ in range(2):  # warm-up: kernels, cuBLAS/cuDNN plans, allocator
        step(model)
    sync()
    torch.distributed.barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        step(model)
    sync()
    t = torch.tensor([(time.perf_counter() - t0) / iters], dtype=torch.float64, device=ctx.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    del model
    if gpu:
        torch.cuda.empty_cache()
    return t.item()


def run(ctx) -> Row:
    shape = _shape(ctx)
    seq = 64 if ctx.cpu_dry else ctx.seq_length
    tp = ctx.tp if ctx.world % ctx.tp == 0 else 1
    layer_counts = (1, 2) if ctx.cpu_dry else (2, 4)
    iters = 2 if ctx.cpu_dry else 5
    times = {n: step_seconds(ctx, shape, n, seq, tp, iters) for n in layer_counts}
    plan = ctx.plan
    peak = plan.recipe.logging.peak_tflops_per_gpu if plan is not None else perf.H100_PEAK_TFLOPS
    proj = perf.project(
        times,
        shape=shape,
        micro_batch=ctx.micro_batch,
        seq_length=seq,
        tp=tp,
        peak_tflops=peak,
        train_tokens=plan.train_tokens if plan is not None else None,
        world_size=plan.world_size if plan is not None else None,
        pp=plan.recipe.parallel.pipeline_model_parallel_size if plan is not None else 1,
    )
    values = {"step_seconds": times, "tp": tp, "seq_length": seq, **proj.as_dict(), "anchor": perf.ANCHOR}
    text = f"TP={tp} seq {seq} mbs {ctx.micro_batch}: " + proj.line()
    if ctx.cpu_dry:
        return Row("throughput", INFO, text + " (CPU: code path only)", values)
    floor = perf.ANCHOR["mfu"] / 2  # below half the anchor something is wrong (no TE/flash attention, throttling)
    ok = proj.mfu >= floor
    return Row("throughput", PASS if ok else FAIL, f"{text} ({'>=' if ok else '<'} {floor:.1%} MFU)", values)
