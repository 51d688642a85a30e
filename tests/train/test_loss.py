"""The fused cross-entropy + z-loss against plain PyTorch autograd on full logits, computed on a TP=2-sharded vocabulary."""

from __future__ import annotations

import torch

from cptkit.backend.spawn import run_spawned

COEF = 0.1  # large, so a wrong z-loss gradient would show far above the tolerance


def _reference(logits, labels, coef):
    x = logits.clone().requires_grad_(True)
    ce = torch.nn.functional.cross_entropy(x.view(-1, x.size(-1)), labels.view(-1), reduction="none").view(labels.shape)
    z = coef * torch.logsumexp(x, dim=-1) ** 2
    weights = torch.linspace(0.5, 1.5, labels.numel()).view(labels.shape)  # uneven upstream gradients
    ((ce + z) * weights).sum().backward()
    return ce.detach(), z.detach(), x.grad, weights


def _ours(rank, world):
    return {"z_on": _errors(world, COEF), "z_off": _errors(world, 0.0)}


def _errors(world, coef):
    from megatron.core import parallel_state

    from cptkit.backend.dist import initialize_model_parallel
    from cptkit.train.loss import token_losses

    if not parallel_state.model_parallel_is_initialized():
        initialize_model_parallel(tp=world)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 64, generator=g) * 3
    labels = torch.randint(0, 64, (3, 5), generator=g)
    ce_ref, z_ref, grad_ref, weights = _reference(logits, labels, COEF)
    shard = 64 // world
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    mine = logits[..., tp_rank * shard : (tp_rank + 1) * shard].clone().requires_grad_(True)
    ce, z = token_losses(mine, labels, coef)
    ((ce + z) * weights).sum().backward()
    return {
        "ce": (ce.detach() - ce_ref).abs().max().item(),
        "z": (z.detach() - (z_ref if coef else 0)).abs().max().item(),
        "grad": (mine.grad - grad_ref[..., tp_rank * shard : (tp_rank + 1) * shard]).abs().max().item(),
    }


def test_cross_entropy_with_z_loss_matches_autograd_on_a_tp2_sharded_vocabulary():
    for errors in run_spawned(_ours, 2):
        assert max(errors["z_on"].values()) < 1e-5, errors
        # Not blind: without the z-loss term the gradient is off the reference by far more than the tolerance.
        assert errors["z_off"]["ce"] < 1e-5 and errors["z_off"]["grad"] > 1e-2, errors
