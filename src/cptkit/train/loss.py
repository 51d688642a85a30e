"""The training loss on vocabulary-parallel logits: cross-entropy plus the optional z-loss.

z-loss (PaLM; the Swallow ablations' Megatron fork) is `coef * logsumexp(logits)^2` per token, added to the
cross-entropy; it keeps the softmax normaliser near 1 so bf16 logits do not drift. With tensor parallelism each rank
holds a slice of the vocabulary, so the log-sum-exp is reduced over the TP group (max, then sum of exponentials);
the reduction's backward is the identity, which is the exact gradient of a sum.

    ce, z = token_losses(logits_sbv, labels_sb, z_loss_coef=1e-4)   # both [seq, batch], fp32
"""

from __future__ import annotations

import torch


def vocab_parallel_logsumexp(logits: torch.Tensor) -> torch.Tensor:
    """log-sum-exp over the last (vocabulary-parallel) dimension, differentiable, fp32."""
    from megatron.core import parallel_state, tensor_parallel

    logits = logits.float()
    local_max = logits.detach().max(dim=-1, keepdim=True).values
    group = parallel_state.get_tensor_model_parallel_group()
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        torch.distributed.all_reduce(local_max, op=torch.distributed.ReduceOp.MAX, group=group)
    sum_exp = torch.exp(logits - local_max).sum(dim=-1)
    sum_exp = tensor_parallel.reduce_from_tensor_model_parallel_region(sum_exp)
    return torch.log(sum_exp) + local_max.squeeze(-1)


def token_losses(logits: torch.Tensor, labels: torch.Tensor, z_loss_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy and z-loss (zeros when `z_loss_coef` is 0). `logits` [..., vocab/TP], `labels` [...]."""
    from megatron.core import tensor_parallel

    if z_loss_coef > 0:
        z = z_loss_coef * vocab_parallel_logsumexp(logits) ** 2
    else:
        z = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    # megatron's cross-entropy shifts its input in place: give it a tensor nobody else reads.
    as_fp32 = logits.float()
    ce = tensor_parallel.vocab_parallel_cross_entropy(as_fp32 if as_fp32 is not logits else logits.clone(), labels)
    return ce, z
