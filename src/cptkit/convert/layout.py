"""Tensor layouts: HF shapes, megatron-core fused layouts, and how tensor parallelism cuts each tensor.

megatron-core layouts (per layer; layer tensors carry a leading global-layer axis in the checkpoint):
- `linear_qkv` rows are grouped per KV group: [q_g (heads/groups x head_dim rows), k_g, v_g] for g = 0..groups-1.
  Tensor parallelism gives each rank a contiguous block of whole groups, so the global layout is the same at any TP.
- `linear_fc1` is [gate; up]. Under SwiGLU megatron-core's sharded factory saves each rank's gate half and up half as
  separate chunks at offsets r*F/tp and F + r*F/tp, so the global tensor is [all gate rows; all up rows] at any TP.
- Embedding and output rows are padded to `padded_vocab_size` (zeros) and split on rows.

`chunks()` lists the pieces a TP=tp trainer would save, so a converted checkpoint has the same chunking as one the
trainer wrote at that TP (dist_checkpointing reshards either to any TP/PP on load).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cptkit.convert.spec import WeightSpec
from cptkit.model.config import ModelConfig

RowReader = Callable[[int, int, int], torch.Tensor]  # (hf tensor number, first row, stop row) -> rows


def hf_shapes(w: WeightSpec, cfg: ModelConfig) -> list[tuple[int, ...]]:
    """Shapes of the HF tensor(s) behind one megatron-core tensor."""
    h, d = cfg.hidden_size, cfg.kv_channels
    q_rows, kv_rows = cfg.num_attention_heads * d, cfg.num_query_groups * d
    is_bias = w.mcore.endswith(".bias")
    if w.kind == "qkv":
        return [(q_rows,), (kv_rows,), (kv_rows,)] if is_bias else [(q_rows, h), (kv_rows, h), (kv_rows, h)]
    if w.kind == "gate_up":
        return [(cfg.ffn_hidden_size, h)] * 2
    if w.kind == "vocab":
        return [(cfg.vocab_size, h)]
    if w.kind == "replicated":
        return [(h,)]
    if "linear_proj" in w.mcore or w.kind == "column":
        return [(h, q_rows)] if "linear_proj" in w.mcore else [(cfg.ffn_hidden_size, h)]
    if w.kind == "row":  # linear_fc2
        return [(h, cfg.ffn_hidden_size)]
    raise ValueError(f"no HF shape rule for {w.mcore} ({w.kind})")


def mcore_shape(w: WeightSpec, cfg: ModelConfig) -> tuple[int, ...]:
    """Shape of one megatron-core tensor (one layer's, for layer tensors)."""
    shapes = hf_shapes(w, cfg)
    if w.kind == "vocab":
        return (cfg.padded_vocab_size, *shapes[0][1:])
    if w.kind in ("qkv", "gate_up"):
        return (sum(s[0] for s in shapes), *shapes[0][1:])
    return shapes[0]


# -- fusing math ------------------------------------------------------------------------------------------------------
def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: int) -> torch.Tensor:
    """[q; k; v] (HF) → per-group [q_g, k_g, v_g] (megatron-core), for weights or biases."""
    rest = q.shape[1:]
    return torch.cat(
        [q.reshape(groups, -1, *rest), k.reshape(groups, -1, *rest), v.reshape(groups, -1, *rest)], dim=1
    ).reshape(-1, *rest)


def split_qkv(qkv: torch.Tensor, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of `fuse_qkv`."""
    d, g = cfg.kv_channels, cfg.num_query_groups
    per_group = cfg.num_attention_heads // g
    grouped = qkv.reshape(g, (per_group + 2) * d, *qkv.shape[1:])
    q, k, v = torch.split(grouped, [per_group * d, d, d], dim=1)
    return (q.reshape(-1, *qkv.shape[1:]), k.reshape(-1, *qkv.shape[1:]), v.reshape(-1, *qkv.shape[1:]))


def fuse_gate_up(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return torch.cat([gate, up], dim=0)


def split_gate_up(fc1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gate, up = torch.chunk(fc1, 2, dim=0)
    return gate, up


def to_hf(w: WeightSpec, t: torch.Tensor, cfg: ModelConfig) -> list[torch.Tensor]:
    """One megatron-core tensor (one layer's) → its HF tensor(s)."""
    if w.kind == "qkv":
        return list(split_qkv(t, cfg))
    if w.kind == "gate_up":
        return list(split_gate_up(t))
    if w.kind == "vocab":
        return [t[: cfg.vocab_size]]  # padding rows removed
    return [t]


# -- tensor-parallel chunks -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chunk:
    """A piece of one megatron-core tensor: where it sits and how to make it from HF rows."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    make: Callable[[], torch.Tensor]


def check_tp(cfg: ModelConfig, tp: int) -> list[str]:
    """Why `tp` cannot split this model (empty when it can)."""
    problems = []
    for name, value in (
        ("num_attention_heads", cfg.num_attention_heads),
        ("num_query_groups (KV heads)", cfg.num_query_groups),
        ("ffn_hidden_size", cfg.ffn_hidden_size),
        ("padded_vocab_size", cfg.padded_vocab_size),
    ):
        if value % tp:
            problems.append(f"{name}={value}")
    return problems


def chunks(w: WeightSpec, cfg: ModelConfig, tp: int, read_rows: RowReader) -> list[Chunk]:
    """The chunks a TP=`tp` model saves for one (layer's) megatron-core tensor, each made lazily from HF rows."""
    shape = mcore_shape(w, cfg)
    zeros = (0,) * (len(shape) - 1)
    if w.kind == "replicated":
        return [Chunk((0,) * len(shape), shape, lambda: read_rows(0, 0, shape[0]))]
    if w.kind in ("column", "row"):
        dim = 0 if w.kind == "column" else 1
        step = shape[dim] // tp
        out = []
        for r in range(tp):
            offsets = tuple(r * step if a == dim else 0 for a in range(len(shape)))
            sizes = tuple(step if a == dim else s for a, s in enumerate(shape))
            make = (
                (lambda r=r: read_rows(0, r * step, (r + 1) * step))
                if dim == 0
                else (lambda r=r: read_rows(0, 0, shape[0])[:, r * step : (r + 1) * step].contiguous())
            )
            out.append(Chunk(offsets, sizes, make))
        return out
    if w.kind == "vocab":
        step = shape[0] // tp

        def make_vocab(r: int) -> torch.Tensor:
            lo, hi = r * step, (r + 1) * step
            real = read_rows(0, min(lo, cfg.vocab_size), min(hi, cfg.vocab_size))
            if real.shape[0] == step:
                return real
            pad = torch.zeros((step - real.shape[0], *shape[1:]), dtype=real.dtype)
            return torch.cat([real, pad])

        return [Chunk((r * step, *zeros), (step, *shape[1:]), lambda r=r: make_vocab(r)) for r in range(tp)]
    if w.kind == "qkv":
        d, groups = cfg.kv_channels, cfg.num_query_groups
        q_per_group = cfg.num_attention_heads // groups * d
        g_step = groups // tp
        rows = (q_per_group + 2 * d) * g_step

        def make_qkv(r: int) -> torch.Tensor:
            g0, g1 = r * g_step, (r + 1) * g_step
            q = read_rows(0, g0 * q_per_group, g1 * q_per_group)
            k = read_rows(1, g0 * d, g1 * d)
            v = read_rows(2, g0 * d, g1 * d)
            return fuse_qkv(q, k, v, g_step)

        return [Chunk((r * rows, *zeros), (rows, *shape[1:]), lambda r=r: make_qkv(r)) for r in range(tp)]
    if w.kind == "gate_up":
        f = cfg.ffn_hidden_size
        step = f // tp
        out = []
        for half in (0, 1):  # gate, then up: megatron's swiglu factory saves them as separate chunks
            for r in range(tp):
                out.append(
                    Chunk(
                        (half * f + r * step, *zeros),
                        (step, *shape[1:]),
                        lambda half=half, r=r: read_rows(half, r * step, (r + 1) * step),
                    )
                )
        return out
    raise ValueError(f"unknown kind {w.kind}")
