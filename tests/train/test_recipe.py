"""Recipe schema, inheritance, overrides and the plan arithmetic (torch-free, fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cptkit.errors import UserError
from cptkit.train.plan import count_parameters, flops_per_iteration, make_plan
from cptkit.train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def test_all_recipes_found():
    names = {p.stem for p in RECIPES}
    assert {
        "llama31_8b",
        "swallowcode_exp1",
        "swallowcode_exp2",
        "swallowcode_exp3",
        "swallowcode_exp4",
        "swallowmath_exp1",
        "swallow_v05_210b",
        "tiny_cpu",
    } <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_plans(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    plan = make_plan(recipe)
    text = plan.render()
    assert "memory per GPU" in text and f"{plan.train_iters:,}" in text


def test_dry_run_of_every_recipe_without_torch():
    """`cptkit train --dry-run` on every shipped recipe, in one process that must never import torch."""
    code = (
        "import sys\n"
        "from cptkit.cli import main\n"
        f"for p in {[str(p) for p in RECIPES]!r}:\n"
        "    assert main(['train', p, '--dry-run']) == 0, p\n"
        "bad = [m for m in ('torch', 'megatron') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("# plan") == len(RECIPES)


def test_swallowcode_exp1_matches_the_published_ablation():
    r = load_recipe(REPO / "recipes/swallowcode_exp1.yaml")
    plan = make_plan(r)
    assert (r.training.global_batch_size, r.training.micro_batch_size, r.training.seq_length) == (512, 2, 8192)
    assert (r.optimizer.lr, r.optimizer.min_lr, r.schedule.lr_decay_style) == (2.5e-5, 2.5e-6, "cosine")
    assert (r.optimizer.weight_decay, r.optimizer.clip_grad, r.training.z_loss_coef) == (0.1, 1.0, 1e-4)
    assert (r.optimizer.adam_beta1, r.optimizer.adam_beta2, r.optimizer.adam_eps) == (0.9, 0.95, 1e-8)
    assert r.parallel.tensor_model_parallel_size == 2 and r.parallel.sequence_parallel
    assert r.optimizer.use_distributed_optimizer
    assert (r.checkpoint.interval_iters, r.eval.interval_iters, r.eval.iters) == (500, 500, 10)
    assert (plan.world_size, plan.data_parallel_size, plan.grad_accum_steps) == (64, 32, 8)
    assert plan.tokens_per_iteration == 512 * 8192
    assert plan.train_iters == 12_500 and plan.train_tokens == 52_428_800_000
    assert plan.warmup_iters == 1000 and plan.warmup_tokens == 1000 * 512 * 8192
    assert plan.decay_iters == 12_500
    assert r.data.mixture == "data_mix/swallowcode_exp1.yaml"


def test_inheritance_merges_sections_and_keeps_own_name():
    exp3 = load_recipe(REPO / "recipes/swallowcode_exp3.yaml")
    exp1 = load_recipe(REPO / "recipes/swallowcode_exp1.yaml")
    assert exp3.name == "swallowcode_exp3" and exp3.run_dir.endswith("runs/swallowcode_exp3")
    assert exp3.data.mixture == "data_mix/swallowcode_exp3.yaml"
    assert exp3.training == exp1.training and exp3.optimizer == exp1.optimizer
    assert exp3.file_of("data.mixture").endswith("swallowcode_exp3.yaml")
    assert exp3.file_of("optimizer.lr").endswith("llama31_8b.yaml")


def test_llama31_8b_base_design_card():
    r = load_recipe(REPO / "recipes/llama31_8b.yaml")
    plan = make_plan(r)
    assert (r.optimizer.lr, r.optimizer.min_lr, r.optimizer.weight_decay) == (2.5e-5, 2.5e-6, 0.1)
    assert (r.training.seq_length, r.training.global_batch_size, r.parallel.num_gpus) == (8192, 1024, 64)
    assert abs(plan.parameters - 8.03e9) < 0.01e9  # Llama-3.1-8B: 8,030,261,248


def test_overrides_are_typed_and_recorded():
    r = load_recipe(
        REPO / "recipes/tiny_cpu.yaml",
        ["training.train_iters=7", "optimizer.lr=1e-2", "data.allow_mixture_change=true", "run_dir=/tmp/x/${name}"],
    )
    assert r.training.train_iters == 7 and r.optimizer.lr == 1e-2 and r.data.allow_mixture_change is True
    assert r.run_dir == "/tmp/x/tiny_cpu"
    assert r.file_of("training.train_iters") == "command line"
    r = load_recipe(REPO / "recipes/tiny_cpu.yaml", ["model.config.num_layers=4"])
    assert r.model.config["num_layers"] == 4 and r.model.config["hidden_size"] == 64


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["training.train_iter=5"],
            "command line: training.train_iter: unknown key; did you mean 'training.train_iters'?",
        ),
        (["train_iters=5"], "did you mean 'training.train_iters'?"),
        (["training.train_iters=abc"], "command line: training.train_iters: Input should be a valid integer"),
        (["training.train_iters"], "not of the form key=value"),
        (["optimizer.min_lr=1"], "optimizer: min_lr (1.0) is larger than lr"),
        (["parallel.num_gpus=3"], "training.global_batch_size: 8 is not divisible by micro_batch_size x DP = 2 x 3"),
        (
            ["parallel.num_gpus=4", "parallel.tensor_model_parallel_size=4"],
            "2 KV heads (query groups) are not divisible by TP 4",
        ),
        (["parallel.num_gpus=4", "parallel.pipeline_model_parallel_size=4"], "2 layers are not divisible by PP 4"),
        (["parallel.sequence_parallel=true"], "sequence parallelism needs tensor_model_parallel_size > 1"),
        (["training.train_tokens=100k"], "disagrees with train_tokens"),
        (["schedule.lr_warmup_iters=30"], "warmup (30 iterations) must be shorter than the decay (30)"),
        (["training.seq_length=2048"], "longer than the model's 1024 positions"),
        (["training.train_iters=null"], "give training.train_iters or training.train_tokens"),
    ],
)
def test_mistakes_are_one_line_errors_naming_the_key(overrides, expected):
    with pytest.raises(UserError) as e:
        make_plan(load_recipe(REPO / "recipes/tiny_cpu.yaml", overrides))
    assert expected in e.value.one_line()
    assert "\n" not in e.value.one_line()


def test_token_budget_sets_iterations():
    r = load_recipe(REPO / "recipes/tiny_cpu.yaml", ["training.train_iters=null", "training.train_tokens=10k"])
    assert make_plan(r).train_iters == 20  # ceil(10,000 / (8 x 64))


def test_world_size_mismatch_names_the_override():
    r = load_recipe(REPO / "recipes/swallowcode_exp1.yaml")
    with pytest.raises(UserError, match=r"pass parallel.num_gpus=8"):
        make_plan(r, world_size=8)
    make_plan(r, world_size=64)


def test_unknown_key_in_file_and_inherit_loop(tmp_path):
    (tmp_path / "a.yaml").write_text("inherit: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("inherit: a.yaml\n")
    with pytest.raises(UserError, match="inherit from each other in a loop"):
        load_recipe(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text(f"inherit: {REPO}/recipes/tiny_cpu.yaml\noptimizer:\n  weight_decy: 0.0\n")
    with pytest.raises(UserError) as e:
        load_recipe(tmp_path / "c.yaml")
    assert (
        e.value.one_line()
        == f"{tmp_path}/c.yaml: optimizer.weight_decy: unknown key; did you mean 'optimizer.weight_decay'?"
    )


def test_unset_env_var_in_a_path_is_an_error(tmp_path):
    (tmp_path / "r.yaml").write_text(
        f"inherit: {REPO}/recipes/tiny_cpu.yaml\ndata:\n  mixture: ${{NO_SUCH_VAR_X}}/m.yaml\n"
    )
    with pytest.raises(UserError, match=r"data.mixture: environment variable \$\{NO_SUCH_VAR_X\} is not set"):
        load_recipe(tmp_path / "r.yaml", env={})


def test_memory_estimate_reacts_to_sharding_and_recompute():
    base = make_plan(load_recipe(REPO / "recipes/swallowcode_exp1.yaml"))
    params_per_gpu = base.memory.weights / 2
    assert abs(params_per_gpu - base.parameters / 2) / base.parameters < 0.01  # TP 2, bf16
    assert base.memory.grads == 2 * base.memory.weights  # fp32 grads
    replicated = make_plan(
        load_recipe(
            REPO / "recipes/swallowcode_exp1.yaml",
            ["optimizer.use_distributed_optimizer=false", "optimizer.overlap_param_gather=false"],
        )
    )
    assert replicated.memory.optimizer == pytest.approx(32 * base.memory.optimizer)
    full = make_plan(load_recipe(REPO / "recipes/swallowcode_exp1.yaml", ["training.activation_recompute=full"]))
    no_sp = make_plan(load_recipe(REPO / "recipes/swallowcode_exp1.yaml", ["parallel.sequence_parallel=false"]))
    assert full.memory.activations < base.memory.activations / 5 < no_sp.memory.activations


def test_flops_match_6n_plus_attention():
    shape = load_recipe(REPO / "recipes/llama31_8b.yaml").model.config
    n = count_parameters(shape) - shape["vocab_size"] * shape["hidden_size"]  # the input embedding is a lookup
    tokens = 8192
    ratio = flops_per_iteration(shape, 1, 8192) / (6 * n * tokens)
    assert 1.1 < ratio < 1.3  # attention scores at 8k context add ~20% on an 8B model
    short = flops_per_iteration(shape, 1, 128) / (6 * n * 128)
    assert 0.95 < short < 1.02


def test_recipe_doc_is_generated():
    """docs/recipe.md is `cptkit train schema`'s output (tests/train/test_recipe_doc.py checks the generator)."""
    from cptkit.train.schema_doc import markdown

    def stale(doc_text: str) -> bool:
        return doc_text != markdown()

    text = (REPO / "docs" / "recipe.md").read_text(encoding="utf-8")
    assert not stale(text), "docs/recipe.md is stale: run `cptkit train schema -o docs/recipe.md`"
    # Not blind: a hand edit of one field's description, or of the prose, is detected.
    row = next(line for line in text.splitlines() if line.startswith("| `training.seq_length` |"))
    assert stale(text.replace(row, row.replace("Tokens per sequence", "Tokens per batch")))
    assert stale(text.replace("## Inheritance and overrides", "## Inheritance"))
