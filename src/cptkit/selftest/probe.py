"""Versions and hardware the selftest reports: torch, CUDA, NCCL, Transformer Engine, apex, megatron-core, GPUs.

Every probe reports "absent" rather than failing: a missing TE or apex is a finding for the table, not a crash.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import socket
from typing import Any


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _module_version(module: str) -> str | None:
    try:
        m = importlib.import_module(module)
    except Exception:  # a broken install (ImportError, OSError from a missing .so) is also "absent"
        return None
    return str(getattr(m, "__version__", "present"))


def versions() -> dict[str, Any]:
    """What this process sees; values are strings or None (absent)."""
    import torch

    out: dict[str, Any] = {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "nccl": None,
        "cudnn": None,
        "transformer_engine": _dist_version("transformer-engine", "transformer_engine")
        or _module_version("transformer_engine"),
        "apex": _dist_version("apex") or _module_version("apex"),
        "megatron_core": _dist_version("megatron-core", "megatron_core"),
        "gpus": [],
    }
    if torch.cuda.is_available():
        try:
            out["nccl"] = ".".join(str(v) for v in torch.cuda.nccl.version())
        except Exception:
            out["nccl"] = None
        out["cudnn"] = str(torch.backends.cudnn.version())
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out["gpus"].append({"name": p.name, "memory_gib": round(p.total_memory / 1024**3, 1)})
    return out


def summary(v: dict[str, Any]) -> str:
    gpus = v["gpus"]
    gpu = f"{len(gpus)} x {gpus[0]['name']} {gpus[0]['memory_gib']} GiB" if gpus else "no GPU"
    keys = ("torch", "cuda", "nccl", "transformer_engine", "apex", "megatron_core")
    return f"{gpu}; " + ", ".join(f"{k} {v[k] or 'absent'}" for k in keys)


def missing_for_gpu(v: dict[str, Any]) -> list[str]:
    """What a GPU node needs for the recipes' settings (TE layers, fused kernels) and does not have."""
    return [k for k in ("cuda", "nccl", "transformer_engine", "megatron_core") if not v.get(k)]
