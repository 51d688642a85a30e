"""Distributed start-up for every launcher cptkit renders (torchrun, mpirun, a plain single process).

Ranks come from torchrun's `RANK/LOCAL_RANK/WORLD_SIZE` or, under `mpirun`, from Open MPI's `OMPI_COMM_WORLD_*`
(what TSUBAME and ABCI scripts use: `--use-mpi` in Megatron-LM). `MASTER_ADDR`/`MASTER_PORT` must be exported by the
job script; a single process with no environment gets localhost and a free port. NCCL when CUDA is available, else
gloo with `cptkit.backend.cpu` (tests and the demo).
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass

import torch

from cptkit.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    backend: str


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise UserError(f"environment variable {name}={value!r} is not an integer") from None
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_info_from_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun or Open MPI variables; (0, 0, 1) when there are none."""
    rank = _env_int("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")
    world = _env_int("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
    local = _env_int("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID")
    if rank is None or world is None:
        return 0, 0, 1
    return rank, (local if local is not None else 0), world


def init_distributed(backend: str | None = None, timeout_minutes: int = 30) -> DistInfo:
    """Initialise torch.distributed once (idempotent) and return this process's place in the world."""
    if torch.distributed.is_initialized():
        return DistInfo(
            torch.distributed.get_rank(),
            int(os.environ.get("LOCAL_RANK", 0)),
            torch.distributed.get_world_size(),
            torch.distributed.get_backend(),
        )
    rank, local_rank, world = rank_info_from_env()
    from cptkit.util.children import die_with_parent, forks_die_with_this_process

    if os.environ.get("TORCHELASTIC_RUN_ID"):
        # torchrun starts ranks in sessions of their own: a `kill -9` of torchrun would leave them training (or
        # hanging in a collective) with nobody to stop them. Die with it.
        die_with_parent()
    forks_die_with_this_process()  # DataLoader workers and any other fork of a rank die with it
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "gloo" and not torch.cuda.is_available():
        from cptkit.backend.cpu import enable_cpu_backend

        enable_cpu_backend()
    if world > 1 and not os.environ.get("MASTER_ADDR"):
        raise UserError("MASTER_ADDR is not set: the job script must export MASTER_ADDR and MASTER_PORT")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    # Megatron and torch read these names; mpirun only sets the OMPI_* ones.
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group(
        backend=backend, rank=rank, world_size=world, timeout=datetime.timedelta(minutes=timeout_minutes)
    )
    return DistInfo(rank, local_rank, world, backend)


def initialize_model_parallel(tp: int = 1, pp: int = 1, cp: int = 1, seed: int = 1234) -> None:
    """megatron-core's parallel groups plus its model-parallel RNG seeding (TP-rank-dependent dropout streams)."""
    from megatron.core import parallel_state, tensor_parallel

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    world = torch.distributed.get_world_size()
    if world % (tp * pp * cp):
        raise UserError(f"world size {world} is not divisible by TP*PP*CP = {tp}*{pp}*{cp}")
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, context_parallel_size=cp
    )
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def destroy() -> None:
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
