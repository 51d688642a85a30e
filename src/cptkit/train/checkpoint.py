"""Checkpoints in the run directory, the dist_checkpointing (torch_dist) side: what one save writes and one load
reads. When to save, what to keep, the `latest` pointer and the checksums are `cptkit.train.checkpointer`'s job.

Layout (docs/architecture.md):

    RUN_DIR/checkpoints/iter_0000500/        torch_dist shards + common.pt, cptkit_model.json, hf_assets/,
                                             cptkit_state.json (iteration, consumed samples/tokens, fingerprint, ...),
                                             cptkit_checksums.json (size + sha256 of every other file)
    RUN_DIR/checkpoints/latest_checkpointed_iteration.txt

The model is stored under canonical local-spec keys (`cptkit.model.keys`), without TE's `_extra_state`, so a
checkpoint moves between CPU (local spec) and GPU (TE spec) runs and across TP/PP layouts (dist_checkpointing
reshards).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from cptkit.errors import UserError
from cptkit.model.integrity import LATEST, iter_dir_name, list_iterations, read_pointer  # noqa: F401
from cptkit.model.keys import (  # noqa: F401  (re-exported: the names tests and callers used before model/keys.py)
    canonical_key,
    canonical_model_state,
    checkpoint_naming,
    load_model_state,
    te_key,
)

STATE_FILE = "cptkit_state.json"
FORMAT_VERSION = 1
# Distributed-optimizer state layout: each rank writes its own buffers (fast, fully parallel); resumable with the same
# TP/PP (megatron-core reshards it over DP). Stored in the checkpoint's content metadata and reused on load.
DIST_OPT_SHARDING = "dp_reshardable"
PARTIAL = ".partial"  # a save in progress: renamed to iter_N/ once complete
DELETING = ".deleting"  # retention renames a checkpoint to this before removing it


def read_latest(ckpt_dir: str | os.PathLike) -> int | None:
    return read_pointer(ckpt_dir)


def read_state(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError("checkpoint has no cptkit_state.json (not written by cptkit train?)", file=str(path)) from None
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON: {e}", file=str(path)) from None


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[int]:
    return list_iterations(ckpt_dir)


def retained(iterations: list[int], keep_last: int | None, keep_every: int | None, latest: int | None) -> set[int]:
    """Which checkpoints to keep: the newest `keep_last`, every multiple of `keep_every`, and the latest."""
    if keep_last is None:
        return set(iterations)
    keep = set(sorted(iterations)[-keep_last:])
    if keep_every:
        keep |= {i for i in iterations if i % keep_every == 0}
    if latest is not None:
        keep.add(latest)
    return keep


def apply_retention(
    ckpt_dir: str | os.PathLike, keep_last: int | None, keep_every: int | None, deletable: set[int] | None = None
) -> list[int]:
    """Delete checkpoints outside the retention policy (rank 0, after the pointer moved). Returns what was deleted.

    Only iterations in `deletable` (None: all) are considered at all, so a checkpoint the run cannot account for is
    neither deleted nor counted against `keep_last`. A checkpoint is renamed away before it is removed, so a kill
    mid-delete never leaves a half-deleted `iter_N/`."""
    iterations = list_checkpoints(ckpt_dir)
    pool = iterations if deletable is None else [i for i in iterations if i in deletable]
    keep = retained(pool, keep_last, keep_every, read_latest(ckpt_dir))
    deleted = [i for i in pool if i not in keep]
    for i in deleted:
        doomed = Path(ckpt_dir) / (iter_dir_name(i) + DELETING)
        os.replace(Path(ckpt_dir) / iter_dir_name(i), doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    return deleted


def remove_leftovers(ckpt_dir: str | os.PathLike) -> None:
    """Directories a killed job left: an unfinished save (`.partial`) or an unfinished delete."""
    for suffix in (PARTIAL, DELETING):
        for stale in Path(ckpt_dir).glob(f"iter_*{suffix}"):
            shutil.rmtree(stale, ignore_errors=True)


def _rng_state() -> dict[str, Any]:
    import random

    import numpy as np
    import torch

    state = {"random": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        from megatron.core import tensor_parallel

        state["cuda"] = torch.cuda.get_rng_state()
        state["tracker"] = tensor_parallel.get_cuda_rng_tracker().get_states()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and "cuda" in state:
        from megatron.core import tensor_parallel

        torch.cuda.set_rng_state(state["cuda"])
        tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _rng_sharded_object():
    from megatron.core import parallel_state
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    pp, tp = (
        parallel_state.get_pipeline_model_parallel_world_size(),
        parallel_state.get_tensor_model_parallel_world_size(),
    )
    return ShardedObject(
        "rng_state",
        _rng_state(),
        (pp, tp),
        (parallel_state.get_pipeline_model_parallel_rank(), parallel_state.get_tensor_model_parallel_rank()),
        replica_id=parallel_state.get_data_parallel_rank(with_context_parallel=True),
    )


def _layout() -> dict[str, int]:
    import torch
    from megatron.core import parallel_state as ps

    return {
        "world_size": torch.distributed.get_world_size(),
        "tensor_model_parallel_size": ps.get_tensor_model_parallel_world_size(),
        "pipeline_model_parallel_size": ps.get_pipeline_model_parallel_world_size(),
        "context_parallel_size": ps.get_context_parallel_world_size(),
        "data_parallel_size": ps.get_data_parallel_world_size(),
    }


def write_sharded(
    partial: Path,
    iteration: int,
    state,
    consumed_samples: int,
    *,
    distributed_optimizer: bool,
    fully_parallel: bool = True,
    async_save: bool = False,
):
    """The collective part of a save (every rank calls it): model, optimizer, scheduler and RNG of `state` (a
    `TrainState`) into the (existing) directory `partial` with megatron-core's dist_checkpointing.

    With `async_save` the tensors are staged to host memory and megatron-core's `AsyncRequest` is returned: its
    write runs in a background process once scheduled on an `AsyncCallsQueue`, and the checkpoint is complete only
    after the queue ran its finalize functions (the caller adds its own after megatron-core's). Otherwise the
    write is done on return and None is returned."""
    from megatron.core import dist_checkpointing, parallel_state
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy

    model_state, _ = canonical_model_state(state.model)
    metadata = {"distrib_optim_sharding_type": DIST_OPT_SHARDING} if distributed_optimizer else {}
    sharded = {
        "model": model_state,
        "optimizer": state.optimizer.sharded_state_dict(model_state, is_loading=False, metadata=metadata),
        "opt_param_scheduler": state.scheduler.state_dict(),
        "iteration": iteration,
        "consumed_samples": consumed_samples,
        "rng_state": _rng_sharded_object(),
        "checkpoint_version": FORMAT_VERSION,
    }
    strategy = get_default_save_sharded_strategy()
    dp = parallel_state.get_data_parallel_world_size(with_context_parallel=True)
    if fully_parallel and dp > 1:
        from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper

        strategy = FullyParallelSaveStrategyWrapper(
            strategy, parallel_state.get_data_parallel_group(with_context_parallel=True)
        )
    return dist_checkpointing.save(
        sharded,
        str(partial),
        sharded_strategy=strategy,
        content_metadata=metadata or None,
        async_sharded_save=async_save,
    )


def layout() -> dict[str, int]:
    return _layout()


def load_checkpoint(
    directory: str | os.PathLike, *, model, optimizer=None, scheduler=None, distributed_optimizer: bool = False
) -> dict[str, Any]:
    """Load a checkpoint dir into `model` (and, when given, optimizer, scheduler and RNG).

    Model-only loading (the converted base weights) ignores everything else in the directory. Returns the common
    state (iteration, consumed_samples, ...) or {} for a model-only load.
    """
    from megatron.core import dist_checkpointing

    directory = Path(directory)
    if not (directory / "metadata.json").is_file():
        raise UserError("not a torch_dist checkpoint directory (no metadata.json)", file=str(directory))
    model_state, back = canonical_model_state(model, checkpoint_naming(directory))
    request: dict[str, Any] = {"model": model_state}
    full = optimizer is not None
    same_layout = False
    if full:
        saved = read_state(directory)
        same_layout = saved.get("layout", {}) == _layout()
        metadata = dist_checkpointing.load_content_metadata(str(directory)) or {}
        if distributed_optimizer != bool(saved.get("distributed_optimizer")):
            raise UserError(
                "the checkpoint was saved with optimizer.use_distributed_optimizer="
                f"{str(saved.get('distributed_optimizer')).lower()}; resume with the same setting",
                file=str(directory / STATE_FILE),
                field="distributed_optimizer",
            )
        request["optimizer"] = optimizer.sharded_state_dict(model_state, is_loading=True, metadata=metadata)
        if same_layout:
            request["rng_state"] = _rng_sharded_object()
    # The common (non-sharded) entries - opt_param_scheduler, iteration, consumed_samples - always come back whole.
    loaded = dist_checkpointing.load(request, str(directory))
    load_model_state(model, loaded["model"], back)
    if not full:
        return {}
    optimizer.load_state_dict(loaded["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(loaded["opt_param_scheduler"])
    if same_layout and "rng_state" in loaded:
        _set_rng_state(loaded["rng_state"])
    return {
        "iteration": int(loaded["iteration"]),
        "consumed_samples": int(loaded["consumed_samples"]),
        "rng_restored": same_layout,
    }
