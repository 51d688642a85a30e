"""The training loss on vocabulary-parallel logits: cross-entropy plus the optional z-loss, in one pass.

z-loss (PaLM; the Swallow ablations' Megatron fork) is `coef * logsumexp(logits)^2` per token, added to the
cross-entropy; it keeps the softmax normaliser near 1 so bf16 logits do not drift. Both terms need the same
log-sum-exp over the (TP-sharded) vocabulary, so they are computed together in one autograd function built from
megatron-core's own `VocabParallelCrossEntropy` steps: one exponential pass and one saved softmax, as for the plain
cross-entropy. (A separate z-loss pass would hold another [tokens × vocab/TP] fp32 tensor: 4 GiB per micro-batch of
2 × 8192 tokens at TP 2.) The gradient is `softmax · (g_ce + 2·coef·lse·g_z) − onehot(target) · g_ce`.

    ce, z = token_losses(logits, labels, z_loss_coef=1e-4)   # logits [..., vocab/TP]; ce, z [...] in fp32
"""

from __future__ import annotations

import torch


class _CrossEntropyWithZLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, coef: float):
        from megatron.core import parallel_state as ps
        from megatron.core.tensor_parallel.cross_entropy import VocabParallelCrossEntropy as VPCE
        from megatron.core.tensor_parallel.utils import VocabUtility

        group = ps.get_tensor_model_parallel_group()
        logits, logits_max = VPCE.calculate_logits_max(logits)  # fp32 (a copy for bf16; shifted in place below)
        torch.distributed.all_reduce(logits_max, op=torch.distributed.ReduceOp.MAX, group=group)
        start, end = VocabUtility.vocab_range_from_per_partition_vocab_size(
            logits.size(-1), ps.get_tensor_model_parallel_rank(), ps.get_tensor_model_parallel_world_size()
        )
        target_mask, masked_target_1d, predicted, sum_exp, exp_logits = VPCE.calculate_predicted_logits(
            logits, target, logits_max, start, end
        )
        torch.distributed.all_reduce(predicted, op=torch.distributed.ReduceOp.SUM, group=group)
        torch.distributed.all_reduce(sum_exp, op=torch.distributed.ReduceOp.SUM, group=group)
        softmax, ce = VPCE.calculate_cross_entropy_loss(exp_logits, predicted, sum_exp)
        lse = torch.log(sum_exp) + logits_max
        ctx.coef = coef
        ctx.save_for_backward(softmax, target_mask, masked_target_1d, lse)
        return ce, coef * lse * lse

    @staticmethod
    def backward(ctx, grad_ce, grad_z):
        softmax, target_mask, masked_target_1d, lse = ctx.saved_tensors
        grad_ce = torch.zeros_like(lse) if grad_ce is None else grad_ce
        scale = grad_ce if grad_z is None else grad_ce + 2.0 * ctx.coef * lse * grad_z
        grad = softmax  # reused in place, as megatron's cross-entropy does
        grad.mul_(scale.unsqueeze(-1))
        grad_2d = grad.view(-1, grad.size(-1))
        rows = torch.arange(grad_2d.size(0), device=grad_2d.device)
        grad_2d[rows, masked_target_1d] -= (1.0 - target_mask.view(-1).float()) * grad_ce.reshape(-1)
        return grad, None, None


def token_losses(logits: torch.Tensor, labels: torch.Tensor, z_loss_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy and z-loss (zeros when `z_loss_coef` is 0). `logits` [..., vocab/TP], `labels` [...].

    `logits` may be modified in place (as megatron-core's cross-entropy does); nothing else reads them.
    """
    if z_loss_coef > 0:
        return _CrossEntropyWithZLoss.apply(logits, labels, z_loss_coef)
    from megatron.core import tensor_parallel

    ce = tensor_parallel.vocab_parallel_cross_entropy(logits, labels)
    return ce, torch.zeros_like(ce)
