"""One training or validation step's pieces, handed to megatron-core's pipeline schedules: the forward step (batch →
logits + loss function), the loss function (summed CE + z-loss with token counts), and the reduction of the reported
sums over micro-batches and ranks.
"""

from __future__ import annotations

from functools import partial

import torch


def device():
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def forward_step(z_loss_coef: float, cp_size: int, data_iterator, model):
    from megatron.core.utils import get_batch_on_this_cp_rank

    from cptkit.train.data import to_model_inputs

    batch = to_model_inputs(next(data_iterator), device())
    if cp_size > 1:
        batch = get_batch_on_this_cp_rank(batch)
    logits = model(batch["tokens"], batch["position_ids"], batch["attention_mask"])
    return logits, partial(loss_func, z_loss_coef, batch["labels"], batch["loss_mask"])


def loss_func(z_loss_coef: float, labels, loss_mask, logits):
    from cptkit.train.loss import token_losses

    ce, z = token_losses(logits, labels, z_loss_coef)
    mask = loss_mask.float()
    ce_sum, z_sum = (ce * mask).sum(), (z * mask).sum()
    n = mask.sum()
    report = torch.stack([ce_sum.detach(), z_sum.detach(), n.detach()]).double()
    return ce_sum + z_sum, n.to(torch.int), {"sums": report}


def reduce_sums(store: list[dict]) -> tuple[float, float, float]:
    """(lm loss, z loss, tokens) over micro-batches and ranks (TP duplicates cancel in the ratio)."""
    total = torch.zeros(3, dtype=torch.float64, device=device())
    for item in store:
        total += item["sums"].to(total.device)
    torch.distributed.all_reduce(total)
    ce, z, n = total.tolist()
    return (ce / n, z / n, n) if n else (float("nan"), float("nan"), 0.0)
