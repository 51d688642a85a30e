"""`dist_opt_resume`: megatron-core's distributed optimizer with an async checkpoint save, a kill, and a resume.

Run A trains 6 steps. Run B trains 3 steps from the same start, saves model + optimizer with dist_checkpointing's
async path (megatron-core's AsyncCallsQueue, as `checkpoint.async_save` in `cptkit train`) and trains on while the
background write runs, polling the queue after each step as the trainer does; the save is finalised before the
"kill" (the trainer's exit path). Training on must not leak into the checkpoint: the staged copy is step 3's. Then
everything is thrown away — model, DDP buffers, optimizer shards — and rebuilt from a different seed, loaded
from the checkpoint, and trained steps 4-6. Those losses must equal run A's: anything the save or load misses
(an Adam moment shard, the fp32 master copy, the step count) shows up as a different loss. The kill is in-process:
what survives is exactly what is on disk, as after a killed job.
"""

from __future__ import annotations

import torch

from cptkit.selftest.report import FAIL, PASS, Row

STEPS, SAVE_AT, RTOL = 6, 3, 1e-5
SHARDING = {"distrib_optim_sharding_type": "dp_reshardable"}  # as cptkit.train.checkpoint saves


def _state(ctx, cfg, seed: int):
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    from cptkit.selftest.checks import _build

    model, tcfg = _build(cfg, ctx, tp=1, bf16=True, seed=seed)
    ddp = DistributedDataParallel(
        config=tcfg,
        ddp_config=DistributedDataParallelConfig(grad_reduce_in_fp32=True, use_distributed_optimizer=True),
        module=model,
    )
    opt = get_megatron_optimizer(
        OptimizerConfig(
            optimizer="adam",
            lr=1e-3,
            bf16=True,
            params_dtype=torch.bfloat16,
            clip_grad=1.0,
            use_distributed_optimizer=True,
        ),
        [ddp],
    )
    return model, ddp, opt


def _step(ctx, cfg, model, ddp, opt, step: int) -> float:
    from cptkit.selftest.checks import _loss, _tokens

    ddp.zero_grad_buffer()
    opt.zero_grad()
    tokens = _tokens(cfg, ctx, seed=1000 * step + ctx.rank)  # each DP rank its own batch, as in training
    loss = _loss(ddp, tokens)
    loss.backward()
    ddp.finish_grad_sync()  # the distributed optimizer's reduce-scatter
    opt.step()
    t = loss.detach().clone()
    torch.distributed.all_reduce(t)
    return t.item() / ctx.world


def _checkpoint(model, opt, is_loading: bool) -> dict:
    model_sd = model.sharded_state_dict()
    return {"model": model_sd, "optimizer": opt.sharded_state_dict(model_sd, is_loading=is_loading, metadata=SHARDING)}


def run(ctx, cfg) -> Row:
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

    from cptkit.selftest.checks import _fresh_dir

    d = _fresh_dir(ctx, "dist_opt_resume")
    model, ddp, opt = _state(ctx, cfg, seed=1234)
    ref = [_step(ctx, cfg, model, ddp, opt, s) for s in range(STEPS)]
    del model, ddp, opt

    model, ddp, opt = _state(ctx, cfg, seed=1234)
    first = [_step(ctx, cfg, model, ddp, opt, s) for s in range(SAVE_AT)]
    queue = AsyncCallsQueue()
    request = dist_checkpointing.save(
        _checkpoint(model, opt, False), str(d), async_sharded_save=True, content_metadata=SHARDING
    )
    queue.schedule_async_request(request)
    for s in range(SAVE_AT, STEPS):  # the job trains on while the write runs in the background
        _step(ctx, cfg, model, ddp, opt, s)
        queue.maybe_finalize_async_calls(blocking=False)
    queue.close()  # finalizes a write still in flight, as the trainer does before exit; the kill comes after
    del model, ddp, opt
    torch.cuda.empty_cache()

    model, ddp, opt = _state(ctx, cfg, seed=4321)  # different init: only the checkpoint can restore run A
    loaded = dist_checkpointing.load(_checkpoint(model, opt, True), str(d))
    model.load_state_dict(loaded["model"], strict=False)
    opt.load_state_dict(loaded["optimizer"])
    resumed = first + [_step(ctx, cfg, model, ddp, opt, s) for s in range(SAVE_AT, STEPS)]
    worst = max(abs(a - b) for a, b in zip(ref, resumed, strict=True))
    ok = worst <= RTOL * abs(ref[0])
    text = (
        f"losses of steps {SAVE_AT + 1}-{STEPS} after async save + rebuild + load vs uninterrupted: worst "
        f"|dloss| {worst:.3g} ({'<=' if ok else '>'} {RTOL:g} * loss)"
    )
    return Row("dist_opt_resume", PASS if ok else FAIL, text, {"uninterrupted": ref, "resumed": resumed})
