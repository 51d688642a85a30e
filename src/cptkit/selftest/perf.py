"""Throughput arithmetic of the selftest: tokens/s/GPU, MFU, extrapolation from a few layers to the recipe's model
and run, and NCCL bus bandwidth. Torch-free, so it is tested in CI.

The throughput check times a Llama-3.1-8B-shaped model with fewer layers (2 and 4) at the recipe's sequence length,
micro batch and TP. One micro-batch step per GPU costs `fixed + layers * per_layer` seconds (embedding, logits and
loss are the fixed part); two layer counts give both terms, and the full model's step time follows. That is what the
recipe's run would see per micro-batch with PP=1 (the recipes' layout); PP>1 adds a pipeline bubble this does not
model, and the projection says so.

MFU counts model FLOPs as `cptkit.train.plan.flops_per_iteration` does (Megatron-LM's formula for Llama: GQA, SwiGLU,
attention scores, logits), against the dense bf16 peak (H100/H200 SXM: 989 TFLOPS).

Bus bandwidth is nccl-tests' definition (doc/PERFORMANCE.md): algbw = bytes / time; all-reduce busbw = algbw *
2(n-1)/n, all-gather and reduce-scatter busbw = algbw * (n-1)/n, with n ranks in the communicator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# NeMo 24.09 performance summary, Llama-3.1-8B pre-training on H100 (seq 8192, bf16): the published reference.
ANCHOR = {"source": "NeMo 24.09 Llama-3.1-8B H100", "tokens_per_sec_per_gpu": 10_200.0, "mfu": 0.59}
H100_PEAK_TFLOPS = 989.0
# Llama-3.1-8B's shape (HF config.json), with the layer count the throughput check replaces.
LLAMA31_8B = {
    "num_layers": 32,
    "hidden_size": 4096,
    "ffn_hidden_size": 14336,
    "num_attention_heads": 32,
    "num_query_groups": 8,
    "kv_channels": 128,
    "vocab_size": 128256,
    "padded_vocab_size": 128256,
}


def flops_per_token(shape: dict[str, Any], seq_length: int) -> float:
    from cptkit.train.plan import flops_per_iteration  # torch-free

    return flops_per_iteration(shape, 1, seq_length) / seq_length


def mfu(tokens_per_sec_per_gpu: float, shape: dict[str, Any], seq_length: int, peak_tflops: float) -> float:
    return tokens_per_sec_per_gpu * flops_per_token(shape, seq_length) / (peak_tflops * 1e12)


def tokens_per_sec_per_gpu(micro_batch: int, seq_length: int, seconds_per_micro_batch: float, tp: int) -> float:
    """A TP group of `tp` GPUs runs one micro-batch of `micro_batch x seq_length` tokens per step."""
    return micro_batch * seq_length / seconds_per_micro_batch / tp


def fit_layers(points: dict[int, float]) -> tuple[float, float]:
    """(fixed, per_layer) seconds from step times at two or more layer counts (least squares on a line)."""
    if len(points) < 2:
        raise ValueError("need step times at two layer counts at least")
    xs, ys = list(points), list(points.values())
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    per_layer = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - per_layer * mx, per_layer


@dataclass(frozen=True)
class Projection:
    layers: int
    seconds_per_micro_batch: float
    tokens_per_sec_per_gpu: float
    mfu: float
    run_hours: float | None  # the recipe's whole run on its world size, None without a plan
    note: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        anchor = ANCHOR
        run = f", run {self.run_hours:,.1f} h" if self.run_hours is not None else ""
        return (
            f"{self.tokens_per_sec_per_gpu:,.0f} tokens/s/GPU, MFU {self.mfu:.1%} at {self.layers} layers{run} "
            f"(anchor {anchor['source']}: {anchor['tokens_per_sec_per_gpu']:,.0f}, {anchor['mfu']:.0%})"
        )


def project(
    step_times: dict[int, float],
    *,
    shape: dict[str, Any],
    micro_batch: int,
    seq_length: int,
    tp: int,
    peak_tflops: float,
    train_tokens: int | None = None,
    world_size: int | None = None,
    pp: int = 1,
) -> Projection:
    """Per-micro-batch step times measured at a few layer counts → the full model's tokens/s/GPU, MFU, run time."""
    fixed, per_layer = fit_layers(step_times)
    layers = shape["num_layers"]
    step = fixed + per_layer * layers
    tps = tokens_per_sec_per_gpu(micro_batch, seq_length, step, tp)
    hours = None
    if train_tokens is not None and world_size:
        hours = train_tokens / (tps * world_size) / 3600
    note = "PP=1 projection" if pp == 1 else f"PP={pp}: the pipeline bubble is not modelled (optimistic)"
    return Projection(layers, step, tps, mfu(tps, shape, seq_length, peak_tflops), hours, note)


# -- NCCL bus bandwidth (nccl-tests) -------------------------------------------------------------------------------
_BUS_FACTOR = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
}


def bus_bandwidth(op: str, nbytes: int, seconds: float, ranks: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s (1e9 bytes) for one collective of `nbytes` that took `seconds` on `ranks` ranks."""
    if op not in _BUS_FACTOR:
        raise ValueError(f"unknown collective {op!r}")
    algbw = nbytes / seconds / 1e9
    return algbw, algbw * _BUS_FACTOR[op](ranks)
