"""The training loop: megatron-core's pipeline schedules over the resolved mixture, validation, checkpoints, signals.

One process per GPU (torchrun or mpirun); on a machine without CUDA it runs on CPU under gloo with
`cptkit.backend.cpu` (tests and the demo only):

    cptkit train recipes/tiny_cpu.yaml run_dir=/tmp/tiny data.mixture=/tmp/mix.yaml

Start and resume: if RUN_DIR's checkpoints have a `latest` pointer, the run resumes from it with optimizer,
scheduler, RNG and consumed samples (and refuses a changed mixture fingerprint unless
`data.allow_mixture_change=true`); otherwise it loads `model.init_checkpoint` (weights only) or initialises randomly.
SIGTERM / SIGUSR1 finish the current iteration, save, and exit 0 so a scheduler can requeue the job; COMPLETED is
written once the last iteration is saved, and a run that finds it exits 0 at once.
"""

from __future__ import annotations

import math
import signal
import sys
from functools import partial
from pathlib import Path

import torch

from cptkit.errors import UserError
from cptkit.train import checkpoint as ckpt
from cptkit.train.plan import make_plan

COMPLETED = "COMPLETED"


class _StopFlag:
    """Set by SIGTERM/SIGUSR1; checked (and agreed on by all ranks) after every iteration."""

    def __init__(self):
        self.signum: int | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame) -> None:
        self.signum = signum
        print(f"received {signal.Signals(signum).name}: saving a checkpoint after this iteration", flush=True)

    def agreed(self) -> bool:
        flag = torch.tensor([1 if self.signum is not None else 0], dtype=torch.int32, device=_device())
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())


def _device():
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def _forward_step(z_loss_coef: float, cp_size: int, data_iterator, model):
    from megatron.core.utils import get_batch_on_this_cp_rank

    from cptkit.train.data import to_model_inputs

    batch = to_model_inputs(next(data_iterator), _device())
    if cp_size > 1:
        batch = get_batch_on_this_cp_rank(batch)
    logits = model(batch["tokens"], batch["position_ids"], batch["attention_mask"])
    return logits, partial(_loss_func, z_loss_coef, batch["labels"], batch["loss_mask"])


def _loss_func(z_loss_coef: float, labels, loss_mask, logits):
    from cptkit.train.loss import token_losses

    ce, z = token_losses(logits, labels, z_loss_coef)
    mask = loss_mask.float()
    ce_sum, z_sum = (ce * mask).sum(), (z * mask).sum()
    n = mask.sum()
    report = torch.stack([ce_sum.detach(), z_sum.detach(), n.detach()]).double()
    return ce_sum + z_sum, n.to(torch.int), {"sums": report}


def _reduce_sums(store: list[dict]) -> tuple[float, float, float]:
    """(lm loss, z loss, tokens) over micro-batches and ranks (TP duplicates cancel in the ratio)."""
    total = torch.zeros(3, dtype=torch.float64, device=_device())
    for item in store:
        total += item["sums"].to(total.device)
    torch.distributed.all_reduce(total)
    ce, z, n = total.tolist()
    return (ce / n, z / n, n) if n else (float("nan"), float("nan"), 0.0)


def train(recipe) -> int:
    """Run (or resume) the recipe; returns the process exit code."""
    from cptkit.backend.dist import destroy, init_distributed, rank_info_from_env

    # Everything a user can get wrong is checked before torch.distributed starts (and before megatron is imported).
    run_dir = Path(recipe.run_dir)
    if (run_dir / COMPLETED).is_file():
        print(f"{run_dir} is COMPLETED; nothing to do", flush=True)
        return 0
    prepared = _prepare(recipe, world_size=rank_info_from_env()[2])
    info = init_distributed()
    try:
        return _run(recipe, prepared, info)
    finally:
        destroy()


def _prepare(recipe, world_size: int) -> dict:
    from cptkit.mix.resolve import resolve_file
    from cptkit.mix.settings import check_tokenization
    from cptkit.train.data import check_split
    from cptkit.train.setup import check_cpu_settings, model_config_for

    plan = make_plan(recipe, world_size=world_size)
    check_cpu_settings(recipe)
    cfg = model_config_for(recipe)
    blend = resolve_file(recipe.data.mixture)
    check_tokenization(recipe.data.mixture, blend, model_vocab_size=cfg.vocab_size)
    check_split(recipe, blend)
    ckpt_dir = Path(recipe.checkpoint_dir)
    latest = ckpt.read_latest(ckpt_dir)
    resume_dir = ckpt_dir / ckpt.iter_dir_name(latest) if latest is not None else None
    saved = ckpt.read_state(resume_dir) if resume_dir else {}
    if saved and saved.get("mixture", {}).get("fingerprint") != blend.fingerprint:
        if not recipe.data.allow_mixture_change:
            raise UserError(
                f"the mixture changed since {resume_dir} (fingerprint {saved['mixture']['fingerprint'][:12]} -> "
                f"{blend.fingerprint[:12]}); resuming would silently change the data. Pass "
                "data.allow_mixture_change=true to continue on the new mixture, or start a new run_dir",
                file=recipe.file_of("data.mixture"),
                field="data.mixture",
            )
        print("WARNING: resuming on a changed mixture (data.allow_mixture_change=true)", file=sys.stderr)
    return {"plan": plan, "cfg": cfg, "blend": blend, "latest": latest, "resume_dir": resume_dir, "saved": saved}


def _run(recipe, prepared: dict, info) -> int:
    from megatron.core import parallel_state
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from cptkit.backend.dist import initialize_model_parallel
    from cptkit.train.data import Prefetcher, build_datasets
    from cptkit.train.metrics import MetricsLogger
    from cptkit.train.recipe import resolved_yaml
    from cptkit.train.setup import build_train_state, check_schedule_unchanged
    from cptkit.util.atomic import write_text

    plan, cfg, blend = prepared["plan"], prepared["cfg"], prepared["blend"]
    latest, resume_dir, saved = prepared["latest"], prepared["resume_dir"], prepared["saved"]
    run_dir, ckpt_dir = Path(recipe.run_dir), Path(recipe.checkpoint_dir)
    rank0 = info.rank == 0
    if rank0:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "recipe.resolved.yaml", resolved_yaml(recipe))
    stop = _StopFlag()  # before the long set-up: an early SIGTERM still ends in a save and exit 0
    if recipe.checkpoint.save_on_signal:
        stop.install()
    p = recipe.parallel
    initialize_model_parallel(
        p.tensor_model_parallel_size, p.pipeline_model_parallel_size, p.context_parallel_size, recipe.training.seed
    )
    state = build_train_state(recipe, cfg, plan)
    iteration, consumed = 0, 0
    hf_assets = None
    if resume_dir is not None:
        check_schedule_unchanged(recipe, saved.get("opt_param_scheduler", {}), state.scheduler, str(resume_dir))
        got = ckpt.load_checkpoint(
            resume_dir,
            model=state.model,
            optimizer=state.optimizer,
            scheduler=state.scheduler,
            distributed_optimizer=recipe.optimizer.use_distributed_optimizer,
        )
        iteration, consumed = got["iteration"], got["consumed_samples"]
        hf_assets = resume_dir / "hf_assets"
        if rank0:
            print(f"resumed from {resume_dir}: iteration {iteration}, {consumed:,} samples consumed", flush=True)
            if not got["rng_restored"]:
                print("note: the parallel layout changed since that checkpoint; RNG states start fresh", flush=True)
    elif recipe.model.init_checkpoint:
        ckpt.load_checkpoint(recipe.model.init_checkpoint, model=state.model)
        state.optimizer.reload_model_params()  # the fp32 master copy must start from the loaded weights
        hf_assets = Path(recipe.model.init_checkpoint) / "hf_assets"
        if rank0:
            print(f"loaded initial weights from {recipe.model.init_checkpoint}", flush=True)

    t = recipe.training
    gbs, train_iters = t.global_batch_size, plan.train_iters
    if iteration >= train_iters:
        if rank0:
            write_text(run_dir / COMPLETED, f"{iteration}\n")
        return 0
    cache_dir = recipe.data.cache_dir or str(run_dir / "data_cache")
    datasets = build_datasets(
        recipe, blend, vocab_size=cfg.padded_vocab_size, train_iters=train_iters, cache_dir=cache_dir
    )
    dp_rank = parallel_state.get_data_parallel_rank()
    dp_size = parallel_state.get_data_parallel_world_size()
    sampler = {"micro_batch_size": t.micro_batch_size, "dp_rank": dp_rank, "dp_size": dp_size}
    train_iter = iter(
        Prefetcher(
            datasets.train,
            recipe.data.num_workers,
            consumed_samples=consumed,
            total_samples=train_iters * gbs,
            **sampler,
        )
    )
    logger = MetricsLogger(
        recipe, run_dir, enabled=rank0, flops_per_iteration=plan.flops_per_iteration, world_size=info.world_size
    )
    fwd_bwd = get_forward_backward_func()
    step = partial(_forward_step, t.z_loss_coef, p.context_parallel_size)
    schedule_kwargs = dict(
        model=[state.ddp],
        num_microbatches=plan.grad_accum_steps,
        seq_length=t.seq_length,
        micro_batch_size=t.micro_batch_size,
        decoder_seq_length=t.seq_length,
    )

    def save(at: int) -> None:
        paused = logger.pause()
        ckpt.save_checkpoint(
            ckpt_dir,
            at,
            model=state.model,
            optimizer=state.optimizer,
            scheduler=state.scheduler,
            state={
                "consumed_samples": consumed,
                "consumed_tokens": consumed * t.seq_length,
                "train_iters": train_iters,
                "recipe": recipe.name,
                "mixture": {
                    "name": blend.mixture,
                    "file": blend.mixture_file,
                    "fingerprint": blend.fingerprint,
                    "fim": any(e.fim for e in blend.entries),  # convert mcore-to-hf then names the FIM tokens
                },
            },
            model_config=cfg,
            hf_assets=hf_assets,
            distributed_optimizer=recipe.optimizer.use_distributed_optimizer,
            fully_parallel=recipe.checkpoint.fully_parallel_save,
        )
        if rank0:
            deleted = ckpt.apply_retention(ckpt_dir, recipe.checkpoint.keep_last, recipe.checkpoint.keep_every_iters)
            print(
                f"saved {ckpt_dir / ckpt.iter_dir_name(at)}" + (f" (removed {deleted})" if deleted else ""), flush=True
            )
        logger.resume(paused)

    def validate(at: int) -> None:
        paused = logger.pause()
        state.ddp.eval()
        valid_iter = iter(
            Prefetcher(datasets.valid, 0, consumed_samples=0, total_samples=recipe.eval.iters * gbs, **sampler)
        )
        store = []
        with torch.no_grad():
            for _ in range(recipe.eval.iters):
                store += fwd_bwd(forward_step_func=step, data_iterator=valid_iter, forward_only=True, **schedule_kwargs)
        lm, _, n = _reduce_sums(store)
        logger.validation(at, {"lm_loss": lm, "ppl": math.exp(min(lm, 50.0)), "tokens": int(n)})
        state.ddp.train()
        logger.resume(paused)

    if rank0:
        print(plan.render(), flush=True)
    state.ddp.train()
    logger.mark_start()
    saved_at = latest
    nonfinite_streak = 0
    while iteration < train_iters:
        state.ddp.zero_grad_buffer()
        state.optimizer.zero_grad()
        store = fwd_bwd(forward_step_func=step, data_iterator=train_iter, forward_only=False, **schedule_kwargs)
        lm, z, _ = _reduce_sums(store)
        loss = lm + z
        if math.isfinite(loss):
            nonfinite_streak = 0
            _, grad_norm, _ = state.optimizer.step()
        else:
            nonfinite_streak += 1
            grad_norm = float("nan")
            if recipe.optimizer.overlap_param_gather:  # the next forward waits on a gather only step() starts
                nonfinite_streak = 5
        state.scheduler.step(increment=gbs)
        iteration += 1
        consumed += gbs
        values = {
            "loss": loss,
            "lm_loss": lm,
            "z_loss": z,
            "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
            "lr": state.scheduler.get_lr(state.optimizer.param_groups[0]),
            "consumed_tokens": consumed * t.seq_length,
            "consumed_samples": consumed,
            "train_iters": train_iters,
        }
        logger.train_step(iteration, values, log=iteration % recipe.logging.interval_iters == 0)
        if nonfinite_streak >= 5:
            save(iteration)  # the weights are still the last good ones: steps were skipped
            raise RuntimeError(
                f"non-finite loss at iteration {iteration} ({nonfinite_streak} in a row); saved the last good weights "
                "there: lower the LR or resume from an earlier checkpoint"
            )
        if recipe.eval.interval_iters and iteration % recipe.eval.interval_iters == 0:
            validate(iteration)
        interval = recipe.checkpoint.interval_iters
        if (interval and iteration % interval == 0) or iteration == train_iters:
            save(iteration)
            saved_at = iteration
        if stop.agreed():
            if saved_at != iteration:
                save(iteration)
            if rank0:
                print(f"stopped by signal at iteration {iteration}; resubmit the job to continue", flush=True)
            logger.close()
            return 0
    if rank0:
        write_text(run_dir / COMPLETED, f"{iteration}\n")
        print(f"training complete: {iteration} iterations, {consumed * t.seq_length:,} tokens", flush=True)
    logger.close()
    return 0
