"""The selftest's throughput arithmetic: MFU against the published NeMo anchor, the layer extrapolation, and NCCL
bus bandwidth as nccl-tests defines it."""

from __future__ import annotations

import pytest

from cptkit.selftest import perf
from cptkit.train.plan import make_plan
from cptkit.train.recipe import load_recipe
from tests.launch.launchtest_util import ROOT


def test_mfu_formula_reproduces_the_nemo_anchor():
    """NeMo 24.09 publishes both numbers for Llama-3.1-8B on H100: 10.2k tokens/s/GPU and 59% MFU. Our FLOPs count
    must turn the one into the other (within a point), else every MFU the selftest prints is off."""
    got = perf.mfu(perf.ANCHOR["tokens_per_sec_per_gpu"], perf.LLAMA31_8B, 8192, perf.H100_PEAK_TFLOPS)
    assert got == pytest.approx(perf.ANCHOR["mfu"], abs=0.01)
    # Not blind: a formula that forgets the attention-score FLOPs (seq/h term) lands far from 59%.
    six_n = 6 * 8.03e9 * perf.ANCHOR["tokens_per_sec_per_gpu"] / (perf.H100_PEAK_TFLOPS * 1e12)
    assert abs(six_n - perf.ANCHOR["mfu"]) > 0.05


def test_fit_layers_recovers_fixed_and_per_layer_cost():
    fixed, per_layer = perf.fit_layers({2: 0.30 + 2 * 0.05, 4: 0.30 + 4 * 0.05})
    assert fixed == pytest.approx(0.30) and per_layer == pytest.approx(0.05)
    with pytest.raises(ValueError):
        perf.fit_layers({2: 1.0})


def test_projection_to_exp1_run():
    """Step times that correspond to the anchor's speed project to the anchor's tokens/s and MFU, and to the
    exp1 run time `cptkit plan` would compute at that MFU."""
    plan = make_plan(load_recipe(ROOT / "recipes" / "swallowcode_exp1.yaml"))
    tp, mbs, seq = 2, plan.recipe.training.micro_batch_size, 8192
    step32 = mbs * seq / perf.ANCHOR["tokens_per_sec_per_gpu"] / tp  # seconds per micro-batch at 32 layers
    per_layer = step32 * 0.9 / 32
    fixed = step32 - 32 * per_layer
    proj = perf.project(
        {2: fixed + 2 * per_layer, 4: fixed + 4 * per_layer},
        shape=perf.LLAMA31_8B,
        micro_batch=mbs,
        seq_length=seq,
        tp=tp,
        peak_tflops=989.0,
        train_tokens=plan.train_tokens,
        world_size=plan.world_size,
    )
    assert proj.tokens_per_sec_per_gpu == pytest.approx(10_200, rel=1e-6)
    assert proj.mfu == pytest.approx(0.597, abs=0.002)
    assert proj.run_hours == pytest.approx(plan.train_tokens / (10_200 * 64) / 3600)
    assert "anchor NeMo 24.09" in proj.line() and "32 layers" in proj.line()
    # Not blind: extrapolating with the fixed cost counted per layer would be a different (slower) answer.
    wrong = perf.project({2: 2 * step32 / 32 * 1.5, 4: 4 * step32 / 32 * 1.5}, shape=perf.LLAMA31_8B,
                         micro_batch=mbs, seq_length=seq, tp=tp, peak_tflops=989.0)  # fmt: skip
    assert wrong.tokens_per_sec_per_gpu < 0.7 * proj.tokens_per_sec_per_gpu


@pytest.mark.parametrize(
    ("op", "ranks", "factor"),
    [("all_reduce", 8, 2 * 7 / 8), ("all_reduce", 16, 2 * 15 / 16), ("all_gather", 8, 7 / 8), ("broadcast", 8, 1.0)],
)
def test_bus_bandwidth_is_nccl_tests_definition(op, ranks, factor):
    """nccl-tests doc/PERFORMANCE.md: busbw = algbw * 2(n-1)/n for all-reduce, (n-1)/n for all-gather."""
    algbw, busbw = perf.bus_bandwidth(op, 1 << 30, 0.01, ranks)
    assert algbw == pytest.approx((1 << 30) / 0.01 / 1e9)
    assert busbw == pytest.approx(algbw * factor)


def test_bus_bandwidth_rejects_unknown_op():
    with pytest.raises(ValueError):
        perf.bus_bandwidth("all_to_all", 1, 1.0, 2)
