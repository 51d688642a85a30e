"""The selftest's checks, run by every rank of one job (torchrun on one node, srun/mpirun across nodes).

Each check takes a `Ctx` and returns result rows (rank 0's count; the other ranks take part in the collectives).
On GPU they use NCCL, bf16 and Transformer Engine as the training job will; with `--cpu-dry` the same code runs on
CPU/gloo with tiny shapes (what CI runs), and the checks that need CUDA or TE say SKIP.

    check               what is compared                                                       tolerance
    versions            torch, CUDA, NCCL, TE, apex, megatron-core, GPU model                  TE/CUDA/NCCL/mcore present
    te_vs_local         logits of the TE spec and the local spec on the same weights (fp32)   max |dlogit| <= 2e-3
    tp2_vs_tp1          losses of 3 SGD steps at TP=1 and, from the same weights, at TP=2      |dloss| <= 1e-4 * loss
    bf16_vs_fp32        loss of the same weights in bf16 and fp32                              |dloss| <= 1% of loss
    dist_opt_resume     distributed optimizer, async save at step 3, everything rebuilt from   |dloss| <= 1e-5 * loss
                        the checkpoint, steps 4-6 vs an uninterrupted run
    convert_verify_tp2  HF model vs its conversion loaded at TP=2 in bf16                      top-1 >= 98%, |dlogit| <= 0.1
    allreduce_intra/    NCCL all-reduce bus bandwidth (nccl-tests' definition) in the node     >= --min-busbw-intra GB/s
      _inter            and across nodes                                                        >= --min-busbw-inter GB/s
    throughput          Llama-3.1-8B shape with 2 and 4 layers at seq 8192 → 32 layers,       MFU >= half the anchor's
                        extrapolated to the recipe's run beside the NeMo 24.09 anchor
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cptkit.selftest import perf, probe
from cptkit.selftest.report import FAIL, INFO, PASS, SKIP, Row, within


@dataclass
class Ctx:
    rank: int
    world: int
    local_world: int  # ranks (GPUs) per node
    device: torch.device
    cpu_dry: bool
    workdir: Path
    tp: int = 2
    seq_length: int = 8192
    micro_batch: int = 1
    min_busbw_intra: float = 100.0
    min_busbw_inter: float = 10.0
    allreduce_bytes: int = 256 * 2**20
    plan: Any = None  # cptkit.train.plan.Plan of --recipe, for the throughput projection
    meta: dict = field(default_factory=dict)

    @property
    def nodes(self) -> int:
        return max(1, self.world // self.local_world)


def small_config(cpu: bool):
    """A small Llama-3-shaped model for the correctness checks (GQA, SwiGLU, RoPE with Llama-3 scaling)."""
    from cptkit.model.config import ModelConfig

    h, layers, vocab = (64, 2, 1024) if cpu else (512, 2, 32000)
    return ModelConfig(
        architecture="llama",
        num_layers=layers,
        hidden_size=h,
        ffn_hidden_size=h * 11 // 4,
        num_attention_heads=8,
        num_query_groups=4,
        kv_channels=h // 8,
        vocab_size=vocab,
        padded_vocab_size=vocab,
        max_position_embeddings=4096,
        rotary_base=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 256,
        },
        norm_epsilon=1e-5,
    )


def _tokens(cfg, ctx: Ctx, batch: int = 2, seq: int | None = None, seed: int = 0) -> torch.Tensor:
    seq = seq or (64 if ctx.cpu_dry else 512)
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=g).to(ctx.device)


# Init std of the correctness checks' models: at 0.02 a random model's loss is ~ln(vocab) whatever its weights, so a
# comparison of losses could not tell a failed load; at 0.2 the logits are O(1) and the loss depends on every weight.
CHECK_STD = 0.2


def _build(cfg, ctx: Ctx, *, tp: int, use_te: bool | None = False, bf16: bool = False, seed: int = 1234, **overrides):
    from cptkit.backend.dist import initialize_model_parallel
    from cptkit.model.build import build_gpt_model, transformer_config

    initialize_model_parallel(tp=tp, seed=seed)
    dtype = torch.bfloat16 if bf16 else torch.float32
    overrides.setdefault("init_method_std", CHECK_STD)
    tcfg = transformer_config(cfg, tensor_model_parallel_size=tp, params_dtype=dtype, bf16=bf16, **overrides)
    model = build_gpt_model(cfg, tcfg, use_te=use_te)
    return model.to(ctx.device), tcfg


def _loss(model, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (megatron-core's vocab-parallel loss: correct at any TP)."""
    from cptkit.model.build import causal_mask, position_ids_for

    inp, labels = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    per_token = model(inp, position_ids_for(inp), causal_mask(inp.shape[1], inp.device), labels=labels)
    return per_token.float().mean()


def _save(model, path: Path) -> None:
    from megatron.core import dist_checkpointing

    path.mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save({"model": model.sharded_state_dict()}, str(path))


def _load(model, path: Path) -> None:
    from megatron.core import dist_checkpointing

    state = dist_checkpointing.load({"model": model.sharded_state_dict()}, str(path))
    model.load_state_dict(state["model"], strict=False)


def _fresh_dir(ctx: Ctx, name: str) -> Path:
    import shutil

    d = ctx.workdir / name
    if ctx.rank == 0:
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    torch.distributed.barrier()
    return d


# -- the checks ----------------------------------------------------------------------------------------------------
def check_versions(ctx: Ctx) -> list[Row]:
    v = probe.versions()
    ctx.meta["versions"] = v
    missing = [] if ctx.cpu_dry else probe.missing_for_gpu(v)
    status = FAIL if missing else (INFO if ctx.cpu_dry else PASS)
    text = probe.summary(v) + (f"; missing: {', '.join(missing)}" if missing else "")
    return [Row("versions", status, text, v)]


def check_te_vs_local(ctx: Ctx) -> list[Row]:
    from cptkit.model.build import te_available

    if ctx.cpu_dry or not te_available():
        return [Row("te_vs_local", SKIP, "needs Transformer Engine on CUDA")]
    torch.backends.cuda.matmul.allow_tf32 = False  # compare the layer code, not TF32 rounding
    torch.backends.cudnn.allow_tf32 = False
    cfg, tokens = small_config(False), _tokens(small_config(False), ctx)
    d = _fresh_dir(ctx, "te_vs_local")
    te_model, _ = _build(cfg, ctx, tp=1, use_te=True)
    _save(te_model, d)  # the TE spec's keys; the local spec maps its norms onto them (sharded_state_dict_keys_map)
    with torch.no_grad():
        a = te_model(tokens[:, :-1], *_pos_mask(tokens[:, :-1])).float()
    del te_model
    local, _ = _build(cfg, ctx, tp=1, use_te=False, seed=999)  # other seed: only the load can make them agree
    _load(local, d)
    with torch.no_grad():
        b = local(tokens[:, :-1], *_pos_mask(tokens[:, :-1])).float()
    row = within("te_vs_local", (a - b).abs().max().item(), 0.0, atol=2e-3)
    row.summary = f"max |dlogit| TE vs local spec, same weights, fp32: {row.summary}"
    return [row]


def _pos_mask(inp: torch.Tensor):
    from cptkit.model.build import causal_mask, position_ids_for

    return position_ids_for(inp), causal_mask(inp.shape[1], inp.device)


def _sgd_losses(model, tokens: torch.Tensor, steps: int, lr: float = 0.05) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = _loss(model, tokens)
        loss.backward()
        opt.step()
        out.append(loss.item())
    out.append(_loss(model, tokens).item())
    return out


def check_tp2_vs_tp1(ctx: Ctx) -> list[Row]:
    if ctx.world % 2:
        return [Row("tp2_vs_tp1", SKIP, f"needs an even number of ranks, have {ctx.world}")]
    cfg = small_config(ctx.cpu_dry)
    tokens = _tokens(cfg, ctx)
    d = _fresh_dir(ctx, "tp2_vs_tp1")
    m1, _ = _build(cfg, ctx, tp=1)
    _save(m1, d)
    ref = _sgd_losses(m1, tokens, 3)
    del m1
    m2, _ = _build(cfg, ctx, tp=2, seed=999)
    _load(m2, d)  # resharded from TP=1 to TP=2 by dist_checkpointing
    got = _sgd_losses(m2, tokens, 3)
    worst = max(abs(a - b) for a, b in zip(ref, got, strict=True))
    row = within("tp2_vs_tp1", ref[0] + worst, ref[0], rtol=1e-4)
    row.summary = f"4 losses (3 SGD steps), worst |dloss| {worst:.3g}: " + row.summary
    row.values.update(tp1=ref, tp2=got)
    return [row]


def check_bf16_vs_fp32(ctx: Ctx) -> list[Row]:
    cfg = small_config(ctx.cpu_dry)
    tokens = _tokens(cfg, ctx)
    d = _fresh_dir(ctx, "bf16_vs_fp32")
    m32, _ = _build(cfg, ctx, tp=1)
    _save(m32, d)
    with torch.no_grad():
        ref = _loss(m32, tokens).item()
    del m32
    m16, _ = _build(cfg, ctx, tp=1, bf16=True, seed=999)
    _load(m16, d)  # dist_checkpointing casts the fp32 tensors into the bf16 parameters
    with torch.no_grad():
        got = _loss(m16, tokens).item()
    row = within("bf16_vs_fp32", got, ref, rtol=1e-2)
    row.summary = f"loss bf16 {got:.4f} vs fp32 {ref:.4f}: " + row.summary
    return [row]


def check_dist_opt_resume(ctx: Ctx) -> list[Row]:
    if ctx.cpu_dry:
        return [Row("dist_opt_resume", SKIP, "megatron-core's distributed optimizer needs CUDA")]
    from cptkit.selftest import resume

    return [resume.run(ctx, small_config(False))]


def check_convert_verify(ctx: Ctx) -> list[Row]:
    if ctx.world % 2:
        return [Row("convert_verify_tp2", SKIP, f"needs an even number of ranks, have {ctx.world}")]
    from cptkit.selftest import convert_check

    return [convert_check.run(ctx)]


def _time_allreduce(ctx: Ctx, group, ranks: int, iters: int) -> tuple[float, bool]:
    n = ctx.allreduce_bytes // 4
    x = torch.ones(n, dtype=torch.float32, device=ctx.device)
    sync = torch.cuda.synchronize if ctx.device.type == "cuda" else (lambda: None)
    torch.distributed.all_reduce(x, group=group)  # also the warm-up: NCCL sets up its channels on the first call
    correct = bool(torch.all(x == float(ranks)).item())  # small integers: exact whatever the reduction order
    x.zero_()  # timed on zeros: the speed does not depend on the values, and they never overflow
    torch.distributed.all_reduce(x, group=group)
    sync()
    torch.distributed.barrier(group=group)
    t0 = time.perf_counter()
    for _ in range(iters):
        torch.distributed.all_reduce(x, group=group)
    sync()
    return (time.perf_counter() - t0) / iters, correct


def check_allreduce(ctx: Ctx) -> list[Row]:
    iters = 3 if ctx.cpu_dry else 20
    rows = []
    node = ctx.rank // ctx.local_world
    groups = [
        torch.distributed.new_group(list(range(i * ctx.local_world, (i + 1) * ctx.local_world)))
        for i in range(ctx.nodes)
    ]  # every rank creates every group, in the same order
    cases = [("allreduce_intra", groups[node], ctx.local_world, ctx.min_busbw_intra)]
    if ctx.nodes > 1:
        cases.append(("allreduce_inter", None, ctx.world, ctx.min_busbw_inter))
    for name, group, ranks, floor in cases:
        if ranks < 2:
            rows.append(Row(name, SKIP, "one rank: nothing to reduce"))
            continue
        seconds, correct = _time_allreduce(ctx, group, ranks, iters)
        t = torch.tensor([seconds], dtype=torch.float64, device=ctx.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)  # the slowest rank sets the pace
        algbw, busbw = perf.bus_bandwidth("all_reduce", ctx.allreduce_bytes, t.item(), ranks)
        text = (
            f"{ctx.allreduce_bytes / 2**20:.0f} MiB over {ranks} ranks: {t.item() * 1e3:.2f} ms, algbw "
            f"{algbw:.1f} GB/s, busbw {busbw:.1f} GB/s"
        )
        values = {"bytes": ctx.allreduce_bytes, "ranks": ranks, "seconds": t.item(), "algbw": algbw, "busbw": busbw}
        if not correct:
            rows.append(Row(name, FAIL, "wrong sum: " + text, values))
        elif ctx.cpu_dry:
            rows.append(Row(name, INFO, text + " (gloo, no threshold)", values))
        else:
            ok = busbw >= floor
            rows.append(Row(name, PASS if ok else FAIL, f"{text} ({'>=' if ok else '<'} {floor:g} GB/s)", values))
    return rows


def check_throughput(ctx: Ctx) -> list[Row]:
    from cptkit.selftest import throughput

    return [throughput.run(ctx)]


CHECKS = {
    "versions": check_versions,
    "allreduce": check_allreduce,
    "te_vs_local": check_te_vs_local,
    "tp2_vs_tp1": check_tp2_vs_tp1,
    "bf16_vs_fp32": check_bf16_vs_fp32,
    "dist_opt_resume": check_dist_opt_resume,
    "convert_verify_tp2": check_convert_verify,
    "throughput": check_throughput,
}


def run_all(ctx: Ctx, only: list[str] | None = None) -> list[Row]:
    """Every check in order; one that raises is a FAIL row with its error, and the others still run."""
    rows: list[Row] = []
    for name, fn in CHECKS.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            got = fn(ctx)
        except Exception as e:  # a broken check is a finding, not the end of the selftest
            if os.environ.get("CPTKIT_SELFTEST_TRACEBACK"):
                traceback.print_exc()
            got = [Row(name, FAIL, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")]
        for r in got:
            r.values.setdefault("seconds", round(time.perf_counter() - t0, 2))
        rows += got
    return rows
