"""The `Checkpointer`: when to save (interval, end of run, signal), what to keep, the `latest` pointer, checksums.

One save:
1. rank 0 creates `iter_N.partial/` (removing what a killed job left), every rank writes its shards into it
   (`checkpoint.write_sharded`, megatron-core dist_checkpointing);
2. the ranks split the shard files and sha256 them; rank 0 writes cptkit_model.json, hf_assets/ and
   cptkit_state.json, hashes those, and writes `cptkit_checksums.json` covering every file;
3. rank 0 renames `iter_N.partial/` to `iter_N/`, then rewrites the pointer. A job killed at any point resumes from
   the previous checkpoint; a checkpoint the pointer names always carries its manifest.

With `checkpoint.async_save` (Megatron-LM's --async-save) step 1 only stages the tensors and hands megatron-core's
AsyncRequest to its AsyncCallsQueue; steps 2-3 are the request's last finalize function, run by `finalize()` once
every rank's background write is done (the trainer polls after each iteration). The next save, the end of the run
and the signal stop wait for a pending save first; a job killed meanwhile leaves only `iter_N.partial/`.

Retention (keep_last / keep_every_iters) deletes only checkpoints the run can account for: those written in this
life, and the one it resumed from and older ones that carry a manifest. Checkpoints newer than the resume point that
this life did not write (a `--resume-from` back past them) and foreign `iter_*` folders are never touched.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import torch

from cptkit.model.integrity import (
    MANIFEST,
    checkpoint_files,
    find_damage,
    hash_files,
    iter_dir_name,
    list_iterations,
    read_manifest,
    write_manifest,
)
from cptkit.train import checkpoint as ckpt
from cptkit.train.step import device
from cptkit.util.atomic import fsync_dir, write_json, write_text


class StopFlag:
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
        flag = torch.tensor([1 if self.signum is not None else 0], dtype=torch.int32, device=device())
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())


def _gather(obj: Any) -> list[Any]:
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def _broadcast(obj: Any) -> Any:
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def writer_rank(name: str) -> int:
    """The rank that wrote a checkpoint file: DCP's `__RANK_N.distcp`; anything else is rank 0's."""
    m = re.match(r"__(\d+)_\d+\.distcp$", name)
    return int(m.group(1)) if m else 0


def accountable(ckpt_dir: Path, written: set[int], resumed_from: int | None) -> set[int]:
    """What retention may delete: this life's saves, and the resume point and older ones that carry a manifest
    (saved by cptkit). Never a foreign `iter_*` folder, never a newer one this life did not write."""
    out = set(written)
    if resumed_from is not None:
        for i in list_iterations(ckpt_dir):
            if i <= resumed_from and (Path(ckpt_dir) / iter_dir_name(i) / MANIFEST).is_file():
                out.add(i)
    return out


class Checkpointer:
    """Owns the run's checkpoint directory for one life of the run (every rank builds one)."""

    def __init__(self, recipe, model_config):
        c = recipe.checkpoint
        self.dir = Path(recipe.checkpoint_dir)
        self.interval, self.keep_last, self.keep_every = c.interval_iters, c.keep_last, c.keep_every_iters
        self.distributed_optimizer = recipe.optimizer.use_distributed_optimizer
        self.fully_parallel = c.fully_parallel_save
        self.async_save = c.async_save
        self.queue = None  # megatron-core's AsyncCallsQueue, made at the first async save
        self.pending: int | None = None  # the iteration of an async save not finalized yet
        self.model_config = model_config
        self.hf_assets: Path | None = None
        self.written: set[int] = set()
        self.resumed_from: int | None = None
        self.last_saved: int | None = None
        self.stop = StopFlag()
        if c.save_on_signal:  # before the long set-up: an early SIGTERM still ends in a save and exit 0
            self.stop.install()

    @property
    def rank0(self) -> bool:
        return torch.distributed.get_rank() == 0

    # -- verification --------------------------------------------------------------------------------------------
    def damage(self, directory: Path) -> str | None:
        """Full verification of a checkpoint, its files split over the ranks (collective; same answer on all)."""
        part = (torch.distributed.get_rank(), torch.distributed.get_world_size())
        found = [d for d in _gather(find_damage(directory, part=part, require_manifest=False)) if d]
        return found[0] if found else None

    def verify(self, point) -> None:
        """Raise (on every rank) if the resume checkpoint is damaged, naming the newest intact one before it."""
        from cptkit.train.resume import damaged_error

        if point.damage is None:
            point.damage = self.damage(point.directory)
        if point.damage is None:
            if self.rank0 and read_manifest(point.directory) is None:
                print(f"note: {point.directory} has no {MANIFEST} (older cptkit): not verified", flush=True)
            return
        older = next(
            (
                i
                for i in reversed(list_iterations(self.dir))
                if i < point.iteration
                and (self.dir / iter_dir_name(i) / MANIFEST).is_file()
                and self.damage(self.dir / iter_dir_name(i)) is None
            ),
            None,
        )
        raise damaged_error(point, older)

    # -- policy --------------------------------------------------------------------------------------------------
    def due(self, iteration: int, last: int) -> bool:
        return bool(self.interval and iteration % self.interval == 0) or iteration == last

    def deletable(self) -> set[int]:
        return accountable(self.dir, self.written, self.resumed_from)

    # -- saving --------------------------------------------------------------------------------------------------
    def save(self, iteration: int, state, record: dict[str, Any]) -> Path:
        """Save `state` (a TrainState) at `iteration` (collective); `record` goes into cptkit_state.json.

        With `checkpoint.async_save` this returns once the tensors are staged: the write goes on in the background
        and steps 2-3 (checksums, rename, pointer, retention) run in `finalize`, once every rank's write is done.
        A pending save is always finalized first, so at most one save is in flight."""
        self.finalize(blocking=True)
        final = self.dir / iter_dir_name(iteration)
        partial = self.dir / (iter_dir_name(iteration) + ckpt.PARTIAL)
        if self.rank0:
            self.dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_leftovers(self.dir)  # nothing of ours is in flight: finalized above
            partial.mkdir()
        torch.distributed.barrier()
        request = ckpt.write_sharded(
            partial,
            iteration,
            state,
            record["consumed_samples"],
            distributed_optimizer=self.distributed_optimizer,
            fully_parallel=self.fully_parallel,
            async_save=self.async_save,
        )
        # What cptkit_state.json records is taken now: training moves the scheduler on while the write runs.
        scheduler = copy.deepcopy(state.scheduler.state_dict())
        commit = functools.partial(self._commit, partial, final, iteration, scheduler, dict(record))
        self.last_saved = iteration
        if request is None:
            commit()
            return final
        request.add_finalize_fn(commit)  # after megatron-core's own (metadata.json): the shards are complete then
        if self.queue is None:
            self.queue = self._new_queue()
        self.queue.schedule_async_request(request)
        self.pending = iteration
        if self.rank0:
            print(f"saving {final} in the background", flush=True)
        return final

    def finalize(self, blocking: bool = False) -> None:
        """Complete a pending async save whose write has finished on every rank (collective; call it on all ranks
        at the same point). `blocking` waits for the write: before the next save, before exit."""
        if self.pending is None:
            return
        self.queue.maybe_finalize_async_calls(blocking=blocking)
        if not self.queue.get_num_unfinalized_calls():
            self.pending = None

    def close(self) -> None:
        """End of this life (normal end, signal, error stop): a save in flight is completed before the job exits."""
        self.finalize(blocking=True)
        if self.queue is not None:
            self.queue.close()
            self.queue = None

    @staticmethod
    def _new_queue():
        # megatron-core's queue, as Megatron-LM's --async-save: a forked writer per save, finalized on all ranks.
        from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

        return AsyncCallsQueue()

    def _commit(self, partial: Path, final: Path, iteration: int, scheduler: dict, record: dict) -> None:
        """Steps 2-3 of a save, on every rank once all shards are on disk: checksums, manifest, rename, pointer,
        retention (only now: a checkpoint is never deleted for one that is not complete)."""
        # One listing (rank 0's); each rank hashes the shards it wrote (DCP names them `__RANK_N.distcp`), still in
        # its page cache, so a save reads nothing back over the network; rank 0 takes the rest.
        shards = _broadcast(checkpoint_files(partial) if self.rank0 else None)
        rank = torch.distributed.get_rank()
        mine = [f for f in shards if writer_rank(f) == rank]
        sums = _gather(hash_files(partial, mine))
        if self.rank0:
            self._finish(partial, final, iteration, scheduler, record, {k: v for s in sums for k, v in s.items()})
        torch.distributed.barrier()
        self.written.add(iteration)
        if self.rank0:
            deleted = ckpt.apply_retention(self.dir, self.keep_last, self.keep_every, self.deletable())
            print(f"saved {final}" + (f" (removed {deleted})" if deleted else ""), flush=True)

    def _finish(self, partial: Path, final: Path, iteration: int, scheduler: dict, record, sums: dict) -> None:
        before = set(sums)
        self.model_config.save(partial)
        if self.hf_assets and Path(self.hf_assets).is_dir():
            shutil.copytree(self.hf_assets, partial / "hf_assets")
        write_json(
            partial / ckpt.STATE_FILE,
            {
                "format_version": ckpt.FORMAT_VERSION,
                **record,
                "iteration": iteration,
                "resumed_from": self.resumed_from,
                "layout": ckpt.layout(),
                "distributed_optimizer": self.distributed_optimizer,
                "distrib_optim_sharding_type": ckpt.DIST_OPT_SHARDING if self.distributed_optimizer else None,
                "opt_param_scheduler": scheduler,
                "saved_at_unix": time.time(),
            },
        )
        extra = [f for f in checkpoint_files(partial) if f not in before]
        write_manifest(partial, {**sums, **hash_files(partial, extra)}, iteration)
        if final.exists():  # the same iteration saved before, but the pointer never reached it
            shutil.rmtree(final)
        os.replace(partial, final)
        fsync_dir(self.dir)
        write_text(self.dir / ckpt.LATEST, f"{iteration}\n")

    # -- loading -------------------------------------------------------------------------------------------------
    def resume(self, point, state, *, keep_schedule: bool = False) -> tuple[int, int, bool]:
        """Load the verified resume checkpoint into `state`: (iteration, consumed samples, RNG restored)."""
        if keep_schedule:  # steps are samples: keep the checkpoint's schedule (megatron's use_checkpoint_...)
            state.scheduler.use_checkpoint_opt_param_scheduler = True
        saved = point.saved.get("opt_param_scheduler", {})
        if state.scheduler.wd_incr_style == "constant" and "wd_incr_steps" in saved:
            # A constant weight decay ignores its step count (train_iters x GBS), which megatron-core still insists on
            # matching: a longer run would fail its assertion for a value that changes nothing.
            state.scheduler.wd_incr_steps = saved["wd_incr_steps"]
        got = ckpt.load_checkpoint(
            point.directory,
            model=state.model,
            optimizer=state.optimizer,
            scheduler=state.scheduler,
            distributed_optimizer=self.distributed_optimizer,
        )
        self.resumed_from = got["iteration"]
        self.last_saved = got["iteration"]
        self.hf_assets = point.directory / "hf_assets"
        return got["iteration"], got["consumed_samples"], got["rng_restored"]

    def load_initial(self, directory: str | os.PathLike, state) -> None:
        """Weights only, from `model.init_checkpoint` (verified when it carries a manifest)."""
        damage = self.damage(Path(directory))
        if damage:
            from cptkit.model.integrity import CheckpointDamaged

            raise CheckpointDamaged(f"model.init_checkpoint is damaged: {damage}", file=str(directory))
        ckpt.load_checkpoint(directory, model=state.model)
        state.optimizer.reload_model_params()  # the fp32 master copy must start from the loaded weights
        self.hf_assets = Path(directory) / "hf_assets"
