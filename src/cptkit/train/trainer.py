"""The `Trainer`: one life of a run on this rank — megatron-core's model/DDP/optimizer/scheduler (`TrainState`), the
`Checkpointer`, the metrics logger and the data — and its step loop (`run`).

Built by `cptkit.train.loop.train` once torch.distributed is up; everything a user can get wrong was checked before
(`loop._prepare`). Run it through the CLI:  cptkit train recipes/tiny_cpu.yaml run_dir=/tmp/tiny
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import torch

from cptkit.train import step as steps

COMPLETED = "COMPLETED"
NONFINITE_LIMIT = 5  # non-finite losses in a row before the run saves and stops


class Trainer:
    """One life of a run on this rank: set up in `__init__`, trained by `run()`."""

    def __init__(self, recipe, prep, info):
        from megatron.core.pipeline_parallel import get_forward_backward_func

        from cptkit.backend.dist import initialize_model_parallel
        from cptkit.train.jobs_env import record_job_env
        from cptkit.train.recipe import resolved_yaml
        from cptkit.train.setup import build_train_state
        from cptkit.util.atomic import write_text

        self.recipe, self.plan, self.cfg, self.blend = recipe, prep.plan, prep.cfg, prep.blend
        self.run_dir, self.rank0 = Path(recipe.run_dir), info.rank == 0
        t, p = recipe.training, recipe.parallel
        self.gbs, self.seq, self.train_iters = t.global_batch_size, t.seq_length, prep.plan.train_iters
        if self.rank0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.run_dir / "recipe.resolved.yaml", resolved_yaml(recipe))
        self.checkpointer = recipe.checkpoint.build(recipe, prep.cfg)
        initialize_model_parallel(
            p.tensor_model_parallel_size, p.pipeline_model_parallel_size, p.context_parallel_size, t.seed
        )
        if p.tp_comm_overlap:  # TE's userbuffers must exist before the model's layers are built
            from cptkit.train.tp_overlap import initialize_tp_communicators

            initialize_tp_communicators(recipe, prep.cfg)
        if prep.point is not None:
            self.checkpointer.verify(prep.point)  # every rank hashes its share of the files
        self.state = build_train_state(recipe, prep.cfg, prep.plan)
        self.iteration, self.consumed = self._load(prep)
        # Where and with what this job runs (hardware, versions, cluster), for the model card (cptkit release).
        record_job_env(self.run_dir, self.iteration, rank0=self.rank0)
        self.logger = recipe.logging.build(
            recipe,
            enabled=self.rank0,
            flops_per_iteration=prep.plan.flops_per_iteration,
            world_size=info.world_size,
        )
        self.fwd_bwd = get_forward_backward_func()
        self.step_func = partial(steps.forward_step, t.z_loss_coef, p.context_parallel_size)
        self.schedule_kwargs = dict(
            model=[self.state.ddp],
            num_microbatches=prep.plan.grad_accum_steps,
            seq_length=t.seq_length,
            micro_batch_size=t.micro_batch_size,
            decoder_seq_length=t.seq_length,
        )
        self.nonfinite_streak = 0
        self.tokenizer_sha256 = prep.tokenizer_sha256

    def _load(self, prep) -> tuple[int, int]:
        from cptkit.train.setup import check_schedule_unchanged

        point, recipe = prep.point, self.recipe
        if point is not None:
            check_schedule_unchanged(
                recipe,
                point.saved.get("opt_param_scheduler", {}),
                self.state.scheduler,
                str(point.directory),
                steps_in_samples_kept=prep.keep_schedule,
            )
            iteration, consumed, rng = self.checkpointer.resume(point, self.state, keep_schedule=prep.keep_schedule)
            if self.rank0:
                print(
                    f"resumed from {point.directory}: iteration {iteration}, {consumed:,} samples consumed", flush=True
                )
                if not rng:
                    print("note: the parallel layout changed since that checkpoint; RNG states start fresh", flush=True)
                for note in prep.notes:
                    print(f"note: {note}", flush=True)
            return iteration, consumed
        if recipe.model.init_checkpoint:
            self.checkpointer.load_initial(recipe.model.init_checkpoint, self.state)
            if self.rank0:
                print(f"loaded initial weights from {recipe.model.init_checkpoint}", flush=True)
        return 0, 0

    def _data(self):
        from megatron.core import parallel_state

        from cptkit.train.data import Prefetcher

        # The data position is a sample count: after a global-batch-size change the run needs
        # consumed + remaining iterations x the new GBS samples.
        total = self.consumed + (self.train_iters - self.iteration) * self.gbs
        cache_dir = self.recipe.data.cache_dir or str(self.run_dir / "data_cache")
        datasets = self.recipe.data.build(
            self.recipe,
            self.blend,
            vocab_size=self.cfg.padded_vocab_size,
            train_iters=-(-total // self.gbs),
            cache_dir=cache_dir,
        )
        self.sampler = {
            "micro_batch_size": self.recipe.training.micro_batch_size,
            "dp_rank": parallel_state.get_data_parallel_rank(),
            "dp_size": parallel_state.get_data_parallel_world_size(),
        }
        self.valid_data = datasets.valid
        workers = self.recipe.data.num_workers
        return iter(
            Prefetcher(datasets.train, workers, consumed_samples=self.consumed, total_samples=total, **self.sampler)
        )

    def run(self) -> int:
        if self.iteration >= self.train_iters:
            return self._complete()
        self.train_data = self._data()
        if self.rank0:
            print(self.plan.render(), flush=True)
        self.state.ddp.train()
        self.logger.mark_start()
        eval_every, log_every = self.recipe.eval.interval_iters, self.recipe.logging.interval_iters
        while self.iteration < self.train_iters:
            values = self.train_step()
            self.logger.train_step(self.iteration, values, log=self.iteration % log_every == 0)
            if self.nonfinite_streak >= NONFINITE_LIMIT:
                self.save()  # the weights are still the last good ones: steps were skipped
                self.checkpointer.close()
                raise RuntimeError(
                    f"non-finite loss at iteration {self.iteration} ({self.nonfinite_streak} in a row); saved the last "
                    "good weights there: lower the LR or resume from an earlier checkpoint"
                )
            if eval_every and self.iteration % eval_every == 0:
                self.validate()
            if self.checkpointer.due(self.iteration, self.train_iters):
                self.save()
            elif self.checkpointer.pending is not None:  # an async save whose write is done is committed now
                paused = self.logger.pause()  # (collective) hashing it is checkpoint time, not training time
                self.checkpointer.finalize()
                self.logger.resume(paused)
            if self.checkpointer.stop.agreed():
                if self.checkpointer.last_saved != self.iteration:
                    self.save()
                self.checkpointer.close()  # the signal's save is on disk and named by the pointer before exit 0
                if self.rank0:
                    print(f"stopped by signal at iteration {self.iteration}; resubmit the job to continue", flush=True)
                self.logger.close()
                return 0
        return self._complete()

    def train_step(self) -> dict[str, float]:
        """One optimizer step over a global batch. A non-finite loss skips the update, and (as Megatron-LM) the LR
        schedule does not advance for a skipped step; the data does."""
        s = self.state
        s.ddp.zero_grad_buffer()
        s.optimizer.zero_grad()
        store = self.fwd_bwd(
            forward_step_func=self.step_func, data_iterator=self.train_data, forward_only=False, **self.schedule_kwargs
        )
        lm, z, _ = steps.reduce_sums(store)
        loss, grad_norm = lm + z, float("nan")
        if math.isfinite(loss):
            self.nonfinite_streak = 0
            updated, grad_norm, _ = s.optimizer.step()
            if updated:
                s.scheduler.step(increment=self.gbs)
        else:
            self.nonfinite_streak += 1
            if self.recipe.optimizer.overlap_param_gather:  # the next forward waits on a gather only step() starts
                self.nonfinite_streak = NONFINITE_LIMIT
        self.iteration += 1
        self.consumed += self.gbs
        return {
            "loss": loss,
            "lm_loss": lm,
            "z_loss": z,
            "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
            "lr": s.scheduler.get_lr(s.optimizer.param_groups[0]),
            "consumed_tokens": self.consumed * self.seq,
            "consumed_samples": self.consumed,
            "train_iters": self.train_iters,
        }

    def validate(self) -> None:
        from cptkit.train.data import Prefetcher

        paused = self.logger.pause()
        self.state.ddp.eval()
        iters = self.recipe.eval.iters
        data = iter(Prefetcher(self.valid_data, 0, consumed_samples=0, total_samples=iters * self.gbs, **self.sampler))
        store = []
        with torch.no_grad():
            for _ in range(iters):
                store += self.fwd_bwd(
                    forward_step_func=self.step_func, data_iterator=data, forward_only=True, **self.schedule_kwargs
                )
        lm, _, n = steps.reduce_sums(store)
        self.logger.validation(self.iteration, {"lm_loss": lm, "ppl": math.exp(min(lm, 50.0)), "tokens": int(n)})
        self.state.ddp.train()
        self.logger.resume(paused)

    def record(self) -> dict[str, Any]:
        """What cptkit_state.json holds besides the checkpointer's own fields: what consumed samples mean."""
        r, b = self.recipe, self.blend
        return {
            "consumed_samples": self.consumed,
            "consumed_tokens": self.consumed * self.seq,
            "train_iters": self.train_iters,
            "recipe": r.name,
            "seq_length": self.seq,
            "global_batch_size": self.gbs,
            "data": {"split": r.data.split, "seed": r.training.seed},
            "mixture": {
                "name": b.mixture,
                "file": b.mixture_file,
                "fingerprint": b.fingerprint,
                "fim": any(e.fim for e in b.entries),  # convert mcore-to-hf then names the FIM tokens
                "tokenizer": b.tokenizer,
                "tokenizer_sha256": self.tokenizer_sha256,
            },
        }

    def save(self) -> None:
        paused = self.logger.pause()
        self.checkpointer.save(self.iteration, self.state, self.record())
        self.logger.resume(paused)

    def _complete(self) -> int:
        from cptkit.util.atomic import write_text

        self.checkpointer.close()  # the last save may still be in flight: COMPLETED only once it is committed
        if self.rank0:
            write_text(self.run_dir / COMPLETED, f"{self.iteration}\n")
            print(f"training complete: {self.iteration} iterations, {self.consumed * self.seq:,} tokens", flush=True)
        if hasattr(self, "logger"):
            self.logger.close()
        return 0
