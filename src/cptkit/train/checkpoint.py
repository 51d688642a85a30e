"""Checkpoints in the run directory: dist_checkpointing (torch_dist) with canonical keys, a `latest` pointer written
only after a save completes, and keep-last-K-plus-every-M retention.

Layout (docs/architecture.md):

    RUN_DIR/checkpoints/iter_0000500/        torch_dist shards + common.pt, cptkit_model.json, hf_assets/,
                                             cptkit_state.json (iteration, consumed samples/tokens, fingerprint, ...)
    RUN_DIR/checkpoints/latest_checkpointed_iteration.txt

A save goes to `iter_N.partial/` and is renamed to `iter_N/` by rank 0 once every rank has written its shards; only
then is the pointer rewritten, so a job killed mid-save resumes from the previous checkpoint.

The model is stored under canonical local-spec keys. Transformer Engine fuses the pre-attention and pre-MLP norms into
the following linear layers (`linear_qkv.layer_norm_weight`, `linear_fc1.layer_norm_weight`); those ShardedTensor keys
are renamed to `input_layernorm.weight` / `pre_mlp_layernorm.weight` on save and load, and TE's `_extra_state`
(FP8 scaling history) is not stored, so a checkpoint moves between CPU (local spec) and GPU (TE spec) runs and across
TP/PP layouts (dist_checkpointing reshards).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from cptkit.errors import UserError
from cptkit.util.atomic import fsync_dir, write_json, write_text

LATEST = "latest_checkpointed_iteration.txt"
STATE_FILE = "cptkit_state.json"
FORMAT_VERSION = 1
# Distributed-optimizer state layout: each rank writes its own buffers (fast, fully parallel); resumable with the same
# TP/PP (megatron-core reshards it over DP). Stored in the checkpoint's content metadata and reused on load.
DIST_OPT_SHARDING = "dp_reshardable"

_TE_TO_LOCAL = (
    (re.compile(r"self_attention\.linear_qkv\.layer_norm_(weight|bias)$"), r"input_layernorm.\1"),
    (re.compile(r"mlp\.linear_fc1\.layer_norm_(weight|bias)$"), r"pre_mlp_layernorm.\1"),
)
_LOCAL_TO_TE = (
    (re.compile(r"input_layernorm\.(weight|bias)$"), r"self_attention.linear_qkv.layer_norm_\1"),
    (re.compile(r"pre_mlp_layernorm\.(weight|bias)$"), r"mlp.linear_fc1.layer_norm_\1"),
)


def iter_dir_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def canonical_key(key: str) -> str:
    """A TE-style checkpoint key → the canonical local-spec name (other keys unchanged)."""
    for pattern, repl in _TE_TO_LOCAL:
        if pattern.search(key):
            return pattern.sub(repl, key)
    return key


def te_key(key: str) -> str:
    """The canonical name → megatron-core's own (TE-style) checkpoint name."""
    for pattern, repl in _LOCAL_TO_TE:
        if pattern.search(key):
            return pattern.sub(repl, key)
    return key


def checkpoint_naming(directory: str | os.PathLike) -> str:
    """ "local" for cptkit's canonical keys, "te" for a checkpoint saved with megatron-core's default names (which
    call even the local spec's norms `linear_qkv.layer_norm_weight`), so both kinds of checkpoint load."""
    from torch.distributed.checkpoint import FileSystemReader

    keys = FileSystemReader(str(directory)).read_metadata().state_dict_metadata
    return "te" if any(k.endswith("linear_qkv.layer_norm_weight") for k in keys) else "local"


def canonical_model_state(model, naming: str = "local") -> tuple[dict[str, Any], dict[str, str]]:
    """The model's sharded state dict under canonical (or TE-style) keys, without `_extra_state`, plus
    state-dict key → module key for loading back.

    megatron-core itself names the norms of both specs after TE's fused layers; cptkit stores the local names.
    """
    rename = canonical_key if naming == "local" else te_key
    sharded = model.sharded_state_dict()
    out: dict[str, Any] = {}
    back: dict[str, str] = {}
    for key, value in sharded.items():
        if key.endswith("_extra_state"):
            continue
        if hasattr(value, "key"):
            value.key = rename(canonical_key(value.key))
        new = rename(canonical_key(key))
        out[new] = value
        back[new] = key
    return out, back


def load_model_state(model, loaded: dict[str, Any], back: dict[str, str]) -> None:
    """Put loaded tensors into the model; only `_extra_state` may be missing."""
    state = {back.get(k, k): v for k, v in loaded.items()}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("_extra_state")]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"checkpoint does not fit the model: missing {missing}, unexpected {result.unexpected_keys}")


def read_latest(ckpt_dir: str | os.PathLike) -> int | None:
    path = Path(ckpt_dir) / LATEST
    if not path.is_file():
        return None
    text = path.read_text().strip()
    try:
        return int(text)
    except ValueError:
        raise UserError(f"expected an iteration number, found {text!r}", file=str(path)) from None


def read_state(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError("checkpoint has no cptkit_state.json (not written by cptkit train?)", file=str(path)) from None
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON: {e}", file=str(path)) from None


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[int]:
    out = []
    for p in Path(ckpt_dir).glob("iter_*"):
        m = re.fullmatch(r"iter_(\d+)", p.name)
        if m and p.is_dir():
            out.append(int(m.group(1)))
    return sorted(out)


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


def apply_retention(ckpt_dir: str | os.PathLike, keep_last: int | None, keep_every: int | None) -> list[int]:
    """Delete checkpoints outside the retention policy (rank 0, after the pointer moved). Returns what was deleted."""
    iterations = list_checkpoints(ckpt_dir)
    keep = retained(iterations, keep_last, keep_every, read_latest(ckpt_dir))
    deleted = [i for i in iterations if i not in keep]
    for i in deleted:
        shutil.rmtree(Path(ckpt_dir) / iter_dir_name(i), ignore_errors=True)
    return deleted


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


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    iteration: int,
    *,
    model,
    optimizer,
    scheduler,
    state: dict[str, Any],
    model_config,
    hf_assets: str | os.PathLike | None,
    distributed_optimizer: bool,
    fully_parallel: bool = True,
) -> Path:
    """Save iteration `iteration` (collective: every rank calls it). `state` goes into cptkit_state.json."""
    import torch
    from megatron.core import dist_checkpointing, parallel_state
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy

    root = Path(ckpt_dir)
    final = root / iter_dir_name(iteration)
    partial = root / (iter_dir_name(iteration) + ".partial")
    rank = torch.distributed.get_rank()
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob("iter_*.partial"):  # left by a job killed mid-save
            shutil.rmtree(stale, ignore_errors=True)
        partial.mkdir()
    torch.distributed.barrier()

    model_state, _ = canonical_model_state(model)
    metadata = {"distrib_optim_sharding_type": DIST_OPT_SHARDING} if distributed_optimizer else {}
    sharded = {
        "model": model_state,
        "optimizer": optimizer.sharded_state_dict(model_state, is_loading=False, metadata=metadata),
        "opt_param_scheduler": scheduler.state_dict(),
        "iteration": iteration,
        "consumed_samples": state["consumed_samples"],
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
    dist_checkpointing.save(sharded, str(partial), sharded_strategy=strategy, content_metadata=metadata or None)
    torch.distributed.barrier()
    if rank == 0:
        model_config.save(partial)
        if hf_assets and Path(hf_assets).is_dir():
            shutil.copytree(hf_assets, partial / "hf_assets")
        write_json(
            partial / STATE_FILE,
            {
                "format_version": FORMAT_VERSION,
                **state,
                "iteration": iteration,
                "layout": _layout(),
                "distributed_optimizer": distributed_optimizer,
                "distrib_optim_sharding_type": DIST_OPT_SHARDING if distributed_optimizer else None,
                "opt_param_scheduler": scheduler.state_dict(),
                "saved_at_unix": time.time(),
            },
        )
        if final.exists():  # the same iteration saved before, but the pointer never reached it
            shutil.rmtree(final)
        os.replace(partial, final)
        fsync_dir(root)
        write_text(root / LATEST, f"{iteration}\n")
    torch.distributed.barrier()
    return final


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
