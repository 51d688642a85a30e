"""The 64-GPU layout of the Swallow recipes, checked on CPU: megatron-core builds the real Llama-3.1-8B model, its
DistributedDataParallel buffers and the distributed optimizer's shard ranges for one rank of a 64-rank world —
torch's fake process group (no peers, no communication) and the meta device (no memory) — and this is compared
with what `cptkit plan` prints.

Asserted per rank: every parameter's shape (TP-sharded QKV/proj/fc1/fc2/embedding/output), the parameter count of
the rank's pipeline stage, the distributed optimizer's shard (the parameters this DP rank's optimizer owns, from
megatron-core's own `DistributedOptimizer._build_gbuf_range_map`, for all 32/8 DP ranks), and `cptkit plan`'s
weights / gradients / optimizer memory for the most loaded rank within MARGIN (1%). Activations are not measured
(the meta device has no memory to measure); the plan's activation formula is tested elsewhere.

The model is built with the local spec (TE needs CUDA; parameter shapes are the same, only the norms' dtype
differs: fp32 here, bf16 with TE — 8 KiB per layer) and without sequence parallelism (the local norm refuses it;
SP shards activations, not parameters).

    python tests/train/test_layout_64gpu.py        # prints the per-rank table of SwallowCode exp1 (TP=2, DP=32)
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORLD = 64
MARGIN = 0.01
GiB = 1024**3


def _rank_layout(recipe_path: str, overrides: list[str], rank: int) -> dict:
    """In a fresh process: rank `rank` of 64 under the fake process group; shapes, counts, shards of every DP rank."""
    import torch
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from cptkit.backend.cpu import enable_cpu_backend

    enable_cpu_backend()
    torch.cuda.current_device = lambda: "meta"  # DDP's buffers: on the meta device, no memory
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=WORLD)
    from megatron.core import parallel_state as ps
    from megatron.core.distributed import DistributedDataParallel
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    from cptkit.model.build import build_gpt_model
    from cptkit.model.config import ModelConfig
    from cptkit.train.plan import make_plan
    from cptkit.train.recipe import load_recipe
    from cptkit.train.setup import megatron_configs

    recipe = load_recipe(ROOT / recipe_path, overrides)
    plan = make_plan(recipe)
    p = recipe.parallel
    ps.initialize_model_parallel(
        tensor_model_parallel_size=p.tensor_model_parallel_size,
        pipeline_model_parallel_size=p.pipeline_model_parallel_size,
        context_parallel_size=p.context_parallel_size,
        create_gloo_process_groups=False,
    )
    cfg = ModelConfig.model_validate(plan.model)
    tconfig, ddp_config, _ = megatron_configs(recipe, cfg)
    tconfig = dataclasses.replace(
        tconfig, perform_initialization=False, use_cpu_initialization=True, sequence_parallel=False
    )
    with torch.device("meta"):
        model = build_gpt_model(cfg, tconfig, use_te=False)
    ddp = DistributedDataParallel(config=tconfig, ddp_config=ddp_config, module=model)
    shapes = {n: tuple(t.shape) for n, t in model.named_parameters()}
    dtypes = {n: str(t.dtype) for n, t in model.named_parameters()}
    dp = ps.get_data_parallel_world_size()

    class _Group:  # megatron asks the buffer's DP group for its rank: answer for each DP rank in turn
        def __init__(self, r):
            self.r = r

        def rank(self):
            return self.r

        def size(self):
            return dp

    shards = []
    for r in range(dp):
        owned = 0
        for buf in ddp.buffers:
            real, buf.data_parallel_group = buf.data_parallel_group, _Group(r)
            try:
                ranges = DistributedOptimizer._build_gbuf_range_map(buf)
            finally:
                buf.data_parallel_group = real
            owned += sum(v["param"].size for b in next(iter(ranges.values())) for v in b["param_map"].values())
        shards.append(owned)
    return {
        "rank": rank,
        "tp_rank": ps.get_tensor_model_parallel_rank(),
        "pp_rank": ps.get_pipeline_model_parallel_rank(),
        "dp_rank": ps.get_data_parallel_rank(),
        "dp": dp,
        "shapes": shapes,
        "dtypes": dtypes,
        "params": sum(torch.Size(s).numel() for s in shapes.values()),
        "grad_buffer": sum(b.grad_data.numel() for b in ddp.buffers),
        "grad_bytes": sum(b.grad_data.numel() * b.grad_data.element_size() for b in ddp.buffers),
        "shards": shards,
    }


def layouts(recipe_path: str, overrides: list[str], ranks: list[int]) -> list[dict]:
    """One spawned process per rank (a process group and megatron's groups are per process)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return [pool.apply(_rank_layout, (recipe_path, overrides, r)) for r in ranks]


def plan_of(recipe_path: str, overrides: list[str]):
    from cptkit.train.plan import make_plan
    from cptkit.train.recipe import load_recipe

    return make_plan(load_recipe(ROOT / recipe_path, overrides))


def check_memory(plan, rank_layouts: list[dict]) -> None:
    """The plan's weights/grads/optimizer per GPU against the most loaded built rank (bf16 weights, fp32 grads,
    fp32 master + 2 Adam moments on the rank's optimizer shard)."""
    heavy = max(rank_layouts, key=lambda r: r["params"])
    weights = heavy["params"] * 2
    grads = heavy["grad_bytes"]
    optimizer = max(max(r["shards"]) for r in rank_layouts) * 12
    m = plan.memory
    for what, measured, planned in (("weights", weights, m.weights), ("grads", grads, m.grads),
                                    ("optimizer", optimizer, m.optimizer)):  # fmt: skip
        assert abs(planned - measured) <= MARGIN * measured, (
            f"{what}: plan {planned / GiB:.3f} GiB, megatron-core {measured / GiB:.3f} GiB (margin {MARGIN:.0%})"
        )


def table(plan, rank_layouts: list[dict]) -> str:
    """Every rank of the world: its TP/PP/DP coordinates, parameters, optimizer shard and memory (GiB)."""
    built = {(r["tp_rank"], r["pp_rank"]): r for r in rank_layouts}
    p = plan.recipe.parallel
    tp, pp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size
    dp = WORLD // (tp * pp)
    lines = [
        f"{plan.recipe.name}: TP {tp} PP {pp} DP {dp} on {WORLD} ranks (megatron-core order tp-dp-pp); GiB per GPU",
        "rank  tp pp  dp  params         opt-shard      weights  grads  optimizer   plan: weights grads optimizer",
    ]
    for rank in range(WORLD):
        t, d, s = rank % tp, rank // tp % dp, rank // (tp * dp)
        r = built.get((t, s)) or built[(0, s)]  # TP ranks of one stage have the same shapes
        shard = r["shards"][d]
        lines.append(
            f"{rank:4d}  {t:2d} {s:2d} {d:3d}  {r['params']:13,d}  {shard:13,d}  {r['params'] * 2 / GiB:7.2f} "
            f"{r['grad_bytes'] / GiB:6.2f} {shard * 12 / GiB:9.3f}   {plan.memory.weights / GiB:13.2f} "
            f"{plan.memory.grads / GiB:5.2f} {plan.memory.optimizer / GiB:9.3f}"
        )
    return "\n".join(lines)


EXP1 = "recipes/swallowcode_exp1.yaml"


@pytest.fixture(scope="module")
def exp1():
    return plan_of(EXP1, []), layouts(EXP1, [], [0, 1])


@pytest.mark.slow
def test_exp1_tp2_dp32_shapes_shards_and_plan_memory(exp1):
    plan, built = exp1
    r0, r1 = built
    assert (r0["tp_rank"], r0["dp"], r1["tp_rank"]) == (0, 32, 1)
    for r in built:  # Llama-3.1-8B at TP=2: column-parallel rows and row-parallel columns halved, GQA kept
        s = r["shapes"]
        assert s["embedding.word_embeddings.weight"] == (128256 // 2, 4096)
        assert s["output_layer.weight"] == (128256 // 2, 4096)
        assert s["decoder.layers.0.self_attention.linear_qkv.weight"] == ((32 + 2 * 8) * 128 // 2, 4096)
        assert s["decoder.layers.0.self_attention.linear_proj.weight"] == (4096, 32 * 128 // 2)
        assert s["decoder.layers.0.mlp.linear_fc1.weight"] == (2 * 14336 // 2, 4096)
        assert s["decoder.layers.0.mlp.linear_fc2.weight"] == (4096, 14336 // 2)
        assert s["decoder.layers.31.input_layernorm.weight"] == (4096,) and "decoder.layers.32.mlp" not in str(s)
        assert r["params"] * 2 == pytest.approx(plan.parameters, rel=0.001)  # both TP halves = the 8.03B model
        # The distributed optimizer: 32 shards that cover every parameter once, each ~1/32 of the buffer.
        assert sum(r["shards"]) == r["params"]
        assert max(r["shards"]) - min(r["shards"]) <= r["grad_buffer"] // 32 // 10
    check_memory(plan, built)
    print("\n" + table(plan, built))


@pytest.mark.slow
def test_a_wrong_plan_formula_fails_the_check(exp1, monkeypatch):
    """Not blind: a plan that forgets to shard the optimizer over DP, or counts fp32 weights, fails check_memory."""
    plan, built = exp1
    m = plan.memory
    for wrong in (dataclasses.replace(m, optimizer=m.optimizer * 32), dataclasses.replace(m, weights=m.weights * 2),
                  dataclasses.replace(m, grads=m.grads * 1.05)):  # fmt: skip
        with pytest.raises(AssertionError):
            check_memory(dataclasses.replace(plan, memory=wrong), built)


@pytest.mark.slow
def test_tp4_pp2_both_stages():
    over = ["parallel.tensor_model_parallel_size=4", "parallel.pipeline_model_parallel_size=2"]
    plan = plan_of(EXP1, over)
    first, last = layouts(EXP1, over, [0, 63])
    assert (first["pp_rank"], last["pp_rank"], first["dp"]) == (0, 1, 8)
    for r in (first, last):
        assert r["shapes"]["decoder.layers.0.self_attention.linear_qkv.weight"] == ((32 + 2 * 8) * 128 // 4, 4096)
        assert r["shapes"]["decoder.layers.0.mlp.linear_fc2.weight"] == (4096, 14336 // 4)
        assert "decoder.layers.15.mlp.linear_fc1.weight" in r["shapes"]
        assert "decoder.layers.16.mlp.linear_fc1.weight" not in r["shapes"]  # 16 layers per stage
        assert sum(r["shards"]) == r["params"]
    assert "embedding.word_embeddings.weight" in first["shapes"] and "output_layer.weight" not in first["shapes"]
    assert "output_layer.weight" in last["shapes"] and "embedding.word_embeddings.weight" not in last["shapes"]
    check_memory(plan, [first, last])


@pytest.mark.slow
def test_v05_recipe():
    rec = "recipes/swallow_v05_210b.yaml"
    plan = plan_of(rec, [])
    (r,) = layouts(rec, [], [5])
    assert (r["tp_rank"], r["dp_rank"], r["dp"]) == (1, 2, 32)
    assert sum(r["shards"]) == r["params"]
    check_memory(plan, [r])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    print(table(plan_of(EXP1, []), layouts(EXP1, [], [0, 1])))
