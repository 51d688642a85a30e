"""Review fixes of issue #13 (train side): the CPU grad-norm shim accumulates in float64; a step skipped for a
non-finite loss does not advance the LR schedule (as Megatron-LM); `data.eod_mask_loss` does what the docs say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_helpers import write_recipe

from cptkit.backend.spawn import run_spawned


def test_cpu_grad_norm_accumulates_in_float64():
    from cptkit.backend.cpu import _grad_norm_fp32

    g = torch.Generator().manual_seed(0)
    # A 128k-vocabulary output layer's gradient (most entries tiny) plus a few small tensors.
    grads = [
        torch.randn(128256, 64, generator=g) * 1e-3,
        torch.randn(64, generator=g),
        torch.randn(64, 64, generator=g),
    ]
    reference = torch.linalg.vector_norm(torch.cat([x.flatten().double() for x in grads])).item()
    assert abs(_grad_norm_fp32(grads) - reference) / reference < 1e-12
    # Not blind: the fp32 accumulation the shim used before is measurably off at this precision.
    old = sum((x.float().norm() ** 2 for x in grads), torch.zeros((), dtype=torch.float32)).item() ** 0.5
    assert abs(old - reference) / reference > 1e-10


def _train_with_nan(rank, world, recipe, run_dir, nan_at):
    from cptkit.train import loop, step
    from cptkit.train.recipe import load_recipe

    real, calls = step.reduce_sums, []

    def reduce_sums(store):  # the loss of training iteration `nan_at` comes out non-finite
        calls.append(1)
        lm, z, n = real(store)
        return (float("nan"), z, n) if len(calls) == nan_at else (lm, z, n)

    step.reduce_sums = reduce_sums
    overrides = [f"run_dir={run_dir}", "training.train_iters=5", "checkpoint.interval_iters=null"]
    return loop.train(load_recipe(recipe, [*overrides, "eval.interval_iters=null"]))


def _metrics(run: Path) -> dict[int, dict]:
    lines = (run / "logs" / "metrics.jsonl").read_text().splitlines()
    return {r["iteration"]: r for r in map(json.loads, lines)}


@pytest.mark.slow  # two short training runs
def test_a_skipped_step_does_not_advance_the_lr_schedule(tiny_data, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_data["mixture"], tmp_path / "unused")
    assert run_spawned(_train_with_nan, 1, recipe, tmp_path / "clean", 0) == [0]
    assert run_spawned(_train_with_nan, 1, recipe, tmp_path / "skip", 3) == [0]
    clean, skip = _metrics(tmp_path / "clean"), _metrics(tmp_path / "skip")
    lr = {i: clean[i]["lr"] for i in clean}
    assert len(set(lr.values())) == 5  # warmup then decay: the LR moves every step, so the check is not blind
    assert [skip[i]["lr"] for i in (1, 2, 3, 4, 5)] == [lr[1], lr[2], lr[2], lr[3], lr[4]]
    assert skip[3]["consumed_samples"] == clean[3]["consumed_samples"]  # the batch itself is consumed
    assert "non-finite loss" in " ".join(skip[3].get("warnings", []))


def test_eod_mask_loss_masks_positions_whose_input_is_eod():
    """What docs/recipe.md says data.eod_mask_loss does, checked against megatron-core's own mask builder."""
    from megatron.core.datasets.gpt_dataset import _get_ltor_masks_and_position_ids

    from cptkit.train.schema import DataSection

    eod = 9
    text = torch.tensor([5, 6, eod, 7, 8, eod, 1, 2, 3])
    tokens, labels = text[:-1], text[1:]
    _, loss_mask, _ = _get_ltor_masks_and_position_ids(tokens, eod, False, False, True, False)
    assert loss_mask[tokens == eod].eq(0).all() and loss_mask[tokens != eod].eq(1).all()
    assert loss_mask[labels == eod].eq(1).all()  # predicting EOD itself is still trained
    doc = DataSection.model_fields["eod_mask_loss"].description
    assert (
        "whose input is the end-of-document token" in doc
        and "Predicting the end-of-document token itself is still trained" in doc
    )
