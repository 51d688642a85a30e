"""Run megatron-core's real GPU code paths on a CPU, under gloo. For tests and the demo only — never real training.

megatron-core assumes CUDA in a handful of places. Rather than forking its code, we shim exactly those:

1. `torch.cuda.current_device()` is used as the device for new parameters and buffers: it returns "cpu".
2. Tensors created with `device="cuda"` (optimizer scalars, grad-norm buffers, `.cuda()` calls in the schedules and
   the DDP buckets) are redirected to the CPU by a TorchFunctionMode, so the optimizer and DDP run unchanged.
3. The CUDA RNG tracker's `fork()` (dropout inside tensor-parallel regions) becomes a null context: there is no CUDA
   RNG state to fork, and cptkit's CPU tests run without dropout.
4. Gradient clipping asserts CUDA tensors in multi_tensor_applier: `clip_grad_by_total_norm_fp32` and
   `get_grad_norm_fp32` get plain-torch equivalents (the L2 norm accumulated in float64).

`enable_cpu_backend()` is idempotent and process-wide. Everything else (GPTModel, DDP, the optimizer, schedules,
dist_checkpointing) is megatron-core's own code.

Run on CPU:  python -c "from cptkit.backend.cpu import enable_cpu_backend; enable_cpu_backend()"
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch.overrides import TorchFunctionMode

_ENABLED = False


def _is_cuda(device) -> bool:
    if device is None:
        return False
    if isinstance(device, int):
        return True  # a bare index means a CUDA device in torch
    try:
        return torch.device(device).type == "cuda"
    except (RuntimeError, TypeError):
        return False


class _CudaToCpu(TorchFunctionMode):
    """Rewrite `device="cuda"` (and `.cuda()` / `.to("cuda")`) to the CPU for every torch call."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = "cpu"
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda(args[1]) and not isinstance(args[1], torch.dtype):
            args = (args[0], "cpu", *args[2:])
        return func(*args, **kwargs)


def _grad_norm_fp32(grads_for_norm, norm_type=2, grad_stats_parallel_group=None, **_):
    if isinstance(grads_for_norm, torch.Tensor):
        grads_for_norm = [grads_for_norm]
    norm_type = float(norm_type)
    if norm_type == math.inf:
        total = max((g.detach().abs().max().float() for g in grads_for_norm), default=torch.tensor(0.0))
        total = torch.as_tensor(total, dtype=torch.float32)
        if torch.distributed.is_initialized():  # as megatron: group None means the whole world
            torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.MAX, group=grad_stats_parallel_group)
        return total.item()
    # Accumulated in float64: summed in fp32, a 128k-vocabulary output layer's squares lose ~2e-4 of the norm.
    total = torch.zeros((), dtype=torch.float64)
    for g in grads_for_norm:
        total += torch.linalg.vector_norm(g.detach(), norm_type, dtype=torch.float64) ** norm_type
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM, group=grad_stats_parallel_group)
    return total.item() ** (1.0 / norm_type)


def _clip_by_total_norm(parameters, max_norm, total_norm, use_decoupled_grad=False):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff < 1.0:
        for p in parameters:
            g = p.decoupled_grad if use_decoupled_grad else p.grad
            if g is not None:
                g.detach().mul_(clip_coeff)


def enable_cpu_backend() -> None:
    """Install the shims (once per process). Call before building any megatron-core object."""
    global _ENABLED
    if _ENABLED:
        return
    if torch.cuda.is_available():
        raise RuntimeError("cptkit's CPU backend is for machines without a GPU; use the real CUDA path here")

    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
    torch.cuda.device_count = lambda: 0  # type: ignore[assignment]
    torch.cuda.synchronize = lambda *a, **k: None  # type: ignore[assignment]
    torch.cuda.empty_cache = lambda: None  # type: ignore[assignment]
    torch.cuda.memory_allocated = lambda *a, **k: 0  # type: ignore[assignment]
    torch.cuda.max_memory_allocated = lambda *a, **k: 0  # type: ignore[assignment]
    _CudaToCpu().__enter__()  # pushed for the life of the process

    from megatron.core import tensor_parallel
    from megatron.core.tensor_parallel import random as mp_random

    tracker = mp_random.get_cuda_rng_tracker()
    tracker.fork = lambda *a, **k: contextlib.nullcontext()  # type: ignore[method-assign]
    tracker.add = lambda *a, **k: None  # type: ignore[method-assign]
    mp_random.model_parallel_cuda_manual_seed = lambda seed, *a, **k: torch.manual_seed(seed)  # type: ignore
    tensor_parallel.model_parallel_cuda_manual_seed = mp_random.model_parallel_cuda_manual_seed

    from megatron.core.optimizer import clip_grads, optimizer

    clip_grads.get_grad_norm_fp32 = _grad_norm_fp32
    clip_grads.clip_grad_by_total_norm_fp32 = _clip_by_total_norm
    optimizer.get_grad_norm_fp32 = _grad_norm_fp32
    optimizer.clip_grad_by_total_norm_fp32 = _clip_by_total_norm
    _ENABLED = True


def cpu_backend_enabled() -> bool:
    return _ENABLED
