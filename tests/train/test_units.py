"""Fast unit tests: checkpoint key naming and retention, loss-spike / NaN warnings, throughput arithmetic."""

from __future__ import annotations

import json
import math

import pytest
from train_helpers import REPO

from cptkit.train.checkpoint import apply_retention, canonical_key, iter_dir_name, read_latest, retained, te_key
from cptkit.train.metrics import MetricsLogger
from cptkit.train.recipe import load_recipe


@pytest.mark.parametrize(
    ("te", "local"),
    [
        ("decoder.layers.self_attention.linear_qkv.layer_norm_weight", "decoder.layers.input_layernorm.weight"),
        ("decoder.layers.3.self_attention.linear_qkv.layer_norm_weight", "decoder.layers.3.input_layernorm.weight"),
        ("decoder.layers.mlp.linear_fc1.layer_norm_weight", "decoder.layers.pre_mlp_layernorm.weight"),
        ("decoder.layers.mlp.linear_fc1.layer_norm_bias", "decoder.layers.pre_mlp_layernorm.bias"),
    ],
)
def test_te_and_canonical_names_round_trip(te, local):
    assert canonical_key(te) == local
    assert te_key(local) == te
    assert canonical_key(local) == local  # already canonical


@pytest.mark.parametrize(
    "key",
    [
        "decoder.layers.self_attention.linear_qkv.weight",
        "decoder.final_layernorm.weight",
        "output_layer.weight",
        "embedding.word_embeddings.weight",
        "decoder.layers.mlp.linear_fc1.weight",
    ],
)
def test_other_keys_are_untouched(key):
    assert canonical_key(key) == key and te_key(key) == key


def test_retention_keeps_last_k_and_every_m(tmp_path):
    iters = [500, 1000, 1500, 2000, 2500, 3000, 3500]
    assert retained(iters, keep_last=2, keep_every=2000, latest=3500) == {2000, 3000, 3500}
    assert retained(iters, keep_last=None, keep_every=None, latest=3500) == set(iters)
    assert retained(iters, keep_last=1, keep_every=None, latest=3000) == {3000, 3500}  # the pointer is never deleted
    for i in iters:
        (tmp_path / iter_dir_name(i)).mkdir()
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("3500\n")
    assert apply_retention(tmp_path, 2, 2000) == [500, 1000, 1500, 2500]
    assert sorted(p.name for p in tmp_path.glob("iter_*")) == ["iter_0002000", "iter_0003000", "iter_0003500"]
    assert read_latest(tmp_path) == 3500


def _values(loss):
    return {"loss": loss, "lm_loss": loss, "z_loss": 0.0, "grad_norm": 1.0, "lr": 1e-4, "consumed_tokens": 0}


def test_loss_spike_and_nan_warnings(tmp_path, capsys):
    recipe = load_recipe(REPO / "recipes/tiny_cpu.yaml", ["logging.tensorboard=false", "logging.interval_iters=100"])
    logger = MetricsLogger(recipe, tmp_path, enabled=True, flops_per_iteration=1e12, world_size=1)
    for i in range(1, 11):
        assert logger.train_step(i, _values(2.0 + 0.01 * (i % 2)), log=False) is None  # not a logging iteration
    spike = logger.train_step(11, _values(3.5), log=False)  # 1.75x the recent mean > factor 1.5
    assert spike is not None and "loss spike at iteration 11" in spike["warnings"][0]
    assert logger.train_step(12, _values(2.9), log=False) is None  # 1.4x: within the factor
    nan = logger.train_step(13, _values(float("nan")), log=False)
    assert "non-finite loss" in nan["warnings"][0]
    logger.close()
    lines = [json.loads(x) for x in (tmp_path / "logs/metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [11, 13] and math.isnan(lines[1]["loss"])
    assert "WARNING: loss spike" in capsys.readouterr().err


def test_throughput_and_mfu_arithmetic(tmp_path):
    recipe = load_recipe(REPO / "recipes/tiny_cpu.yaml", ["logging.tensorboard=false", "logging.peak_tflops_per_gpu=2"])
    logger = MetricsLogger(recipe, tmp_path, enabled=True, flops_per_iteration=4e12, world_size=2)
    logger.mark_start()
    rec = logger.train_step(1, _values(2.0), log=True)
    logger.close()
    per_iter = rec["seconds_per_iteration"]
    assert rec["tokens_per_sec_per_gpu"] == pytest.approx(8 * 64 / per_iter / 2)
    assert rec["tflops_per_gpu"] == pytest.approx(4 / per_iter / 2)
    assert rec["mfu"] == pytest.approx(rec["tflops_per_gpu"] / 2)


def test_split_that_starves_validation_is_refused_before_training(tiny_data):
    """megatron-core would loop forever looking for validation epochs in a prefix whose split has no documents."""
    from cptkit.errors import UserError
    from cptkit.mix.resolve import resolve_file
    from cptkit.train.data import check_split

    blend = resolve_file(tiny_data["mixture"])
    ok = load_recipe(REPO / "recipes/tiny_cpu.yaml", [f"data.mixture={tiny_data['mixture']}"])
    check_split(ok, blend)  # 120 documents per prefix: 5% is 6 validation documents
    starved = load_recipe(
        REPO / "recipes/tiny_cpu.yaml", [f"data.mixture={tiny_data['mixture']}", "data.split=999,1,0"]
    )
    with pytest.raises(UserError, match=r"has 120 documents: split 999,1,0 gives validation none; give it a weight"):
        check_split(starved, blend)
    no_eval = load_recipe(
        REPO / "recipes/tiny_cpu.yaml",
        [f"data.mixture={tiny_data['mixture']}", "data.split=999,1,0", "eval.interval_iters=null"],
    )
    check_split(no_eval, blend)  # no validation asked for: fine


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_builds_megatron_configs(path):
    """megatron-core's own config validation accepts every shipped recipe (TP/SP/recompute/precision/dist. opt.)."""
    from cptkit.model.config import ModelConfig
    from cptkit.train.setup import megatron_configs

    recipe = load_recipe(path)
    tconfig, ddp_config, opt_config = megatron_configs(recipe, ModelConfig.model_validate(recipe.model.config))
    assert tconfig.tensor_model_parallel_size == recipe.parallel.tensor_model_parallel_size
    assert tconfig.sequence_parallel == recipe.parallel.sequence_parallel
    assert tconfig.num_query_groups == recipe.model.config["num_query_groups"]
    assert ddp_config.use_distributed_optimizer == opt_config.use_distributed_optimizer
    assert opt_config.bf16 == (recipe.training.precision == "bf16")


def test_megatron_rejects_what_it_cannot_run():
    """Not blind: a setting megatron-core refuses fails in the same call (full recompute without a method)."""
    from cptkit.model.config import ModelConfig
    from cptkit.train.setup import megatron_configs

    recipe = load_recipe(REPO / "recipes/tiny_cpu.yaml", ["training.activation_recompute=full"])
    recipe.training.recompute_method = None  # bypass the schema to reach megatron's own check
    with pytest.raises((AssertionError, ValueError)):
        megatron_configs(recipe, ModelConfig.model_validate(recipe.model.config))
