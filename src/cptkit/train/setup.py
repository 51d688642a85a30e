"""Building the training state from a recipe with megatron-core's own parts: TransformerConfig/GPTModel (TE spec on
GPU, local spec on CPU), DistributedDataParallel, `get_megatron_optimizer` and `OptimizerParamScheduler`.

Learning-rate and weight-decay steps are counted in samples, as Megatron-LM does (warmup = lr_warmup_iters × GBS),
so its schedule and a cptkit schedule agree step for step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from pydantic import ValidationError

from cptkit.config import user_error
from cptkit.errors import UserError
from cptkit.model.config import FILENAME, ModelConfig, check_against_checkpoint


@dataclass
class TrainState:
    model: Any  # the GPTModel (this pipeline stage)
    ddp: Any  # megatron DistributedDataParallel around it
    optimizer: Any
    scheduler: Any
    tconfig: Any


def model_config_for(recipe) -> ModelConfig:
    """The ModelConfig to build: the initial checkpoint's, checked against the recipe's model.config if both exist."""
    inline = recipe.model.config
    ckpt = recipe.model.init_checkpoint
    if ckpt:
        cfg = ModelConfig.load(ckpt)
        check_against_checkpoint(inline, cfg.model_dump(mode="json"), f"{ckpt}/{FILENAME}", recipe.file_of)
        return cfg
    try:
        return ModelConfig.model_validate(inline or {})
    except ValidationError as e:
        raise user_error(e, recipe.file_of, prefix=("model", "config")) from None


def check_cpu_settings(recipe) -> None:
    """The CPU backend runs megatron-core's fp32, replicated-optimizer path; name the override otherwise."""
    if torch.cuda.is_available():
        return
    wrong = []
    if recipe.training.precision != "fp32":
        wrong.append("training.precision=fp32")
    if recipe.optimizer.use_distributed_optimizer:
        wrong.append("optimizer.use_distributed_optimizer=false")
    if recipe.optimizer.overlap_param_gather:
        wrong.append("optimizer.overlap_param_gather=false")
    if recipe.parallel.sequence_parallel:  # the local spec's torch norms cannot shard the sequence
        wrong.append("parallel.sequence_parallel=false")
    if recipe.parallel.tp_comm_overlap:  # Transformer Engine userbuffers: CUDA only
        wrong.append("parallel.tp_comm_overlap=false")
    if wrong:
        raise UserError(
            f"no CUDA GPU here: CPU runs (tests, demo) need {' '.join(wrong)}",
            file=recipe.source_file,
            field="training.precision" if "training.precision=fp32" in wrong else "optimizer",
        )


def megatron_configs(recipe, cfg: ModelConfig):
    """megatron-core's TransformerConfig, DistributedDataParallelConfig and OptimizerConfig for the recipe (their own
    validation runs here; no process group or GPU needed, so CI builds them for every shipped recipe). Which recipe
    field fills which config field: the tables in `cptkit.model.mcore`."""
    from megatron.core.distributed import DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig

    from cptkit.model.mcore import DDP_FIELDS, OPTIMIZER_FIELDS, mapped, precision_settings

    tconfig = cfg.to_mcore(recipe)
    ddp_config = DistributedDataParallelConfig(**mapped(recipe, DDP_FIELDS))
    opt_config = OptimizerConfig(
        optimizer="adam", **mapped(recipe, OPTIMIZER_FIELDS), **precision_settings(recipe.training.precision)
    )
    return tconfig, ddp_config, opt_config


def build_train_state(recipe, cfg: ModelConfig, plan) -> TrainState:
    """Model, DDP, optimizer and scheduler for this rank (after `initialize_model_parallel`)."""
    from megatron.core.distributed import DistributedDataParallel, finalize_model_grads
    from megatron.core.optimizer import get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    from cptkit.model.build import build_gpt_model

    t, o, s = recipe.training, recipe.optimizer, recipe.schedule
    tconfig, ddp_config, opt_config = megatron_configs(recipe, cfg)
    model = build_gpt_model(cfg, tconfig, max_sequence_length=max(t.seq_length, cfg.max_position_embeddings))
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    ddp = DistributedDataParallel(config=tconfig, ddp_config=ddp_config, module=model)
    optimizer = get_megatron_optimizer(opt_config, [ddp])
    gbs = t.global_batch_size
    scheduler = OptimizerParamScheduler(
        optimizer,
        init_lr=s.lr_warmup_init,
        max_lr=o.lr,
        min_lr=o.min_lr,
        lr_warmup_steps=plan.warmup_iters * gbs,
        lr_decay_steps=plan.decay_iters * gbs,
        lr_decay_style=s.lr_decay_style,
        start_wd=o.weight_decay,
        end_wd=o.weight_decay,
        wd_incr_steps=plan.train_iters * gbs,
        wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=False,
        override_opt_param_scheduler=s.override_on_resume,
        wsd_decay_steps=s.lr_wsd_decay_iters * gbs if s.lr_wsd_decay_iters else None,
        lr_wsd_decay_style=s.lr_wsd_decay_style,
    )
    # Hooks the pipeline schedules call (as Megatron-LM's training loop sets them).
    tconfig.grad_scale_func = optimizer.scale_loss
    tconfig.finalize_model_grads_func = finalize_model_grads
    if o.overlap_grad_reduce:
        tconfig.no_sync_func = ddp.no_sync
        tconfig.grad_sync_func = ddp.start_grad_sync
    if o.overlap_param_gather:
        tconfig.param_sync_func = ddp.start_param_sync
    return TrainState(model=model, ddp=ddp, optimizer=optimizer, scheduler=scheduler, tconfig=tconfig)


def check_schedule_unchanged(
    recipe, saved: dict[str, Any], scheduler, file: str, *, steps_in_samples_kept: bool = False
) -> None:
    """Refuse, with the key to change, to resume under a different LR/WD schedule (unless override_on_resume).

    `steps_in_samples_kept`: the global batch size changed (or a finished run goes on) and the checkpoint's sample-counted warmup/decay are kept
    (megatron-core's use_checkpoint_opt_param_scheduler), so only the values, not the step counts, must match."""
    if recipe.schedule.override_on_resume or not saved:
        return
    current = scheduler.state_dict()
    names = {
        "max_lr": "optimizer.lr",
        "min_lr": "optimizer.min_lr",
        "lr_warmup_steps": "schedule.lr_warmup_iters",
        "lr_decay_steps": "schedule.lr_decay_iters",
        "lr_decay_style": "schedule.lr_decay_style",
        "start_wd": "optimizer.weight_decay",
    }
    if recipe.schedule.lr_decay_iters is None:  # the decay follows the run's length
        names["lr_decay_steps"] = "training.train_iters"
        gbs = recipe.training.global_batch_size
        old, new = saved.get("lr_decay_steps"), current.get("lr_decay_steps")
        if old is not None and old != new and not steps_in_samples_kept and old % gbs == 0:
            raise UserError(
                f"the LR decay follows the run's length (schedule.lr_decay_iters unset) and the checkpoint decays over "
                f"{old // gbs} iterations, this recipe over {new // gbs}: set schedule.lr_decay_iters={old // gbs} to "
                "keep the checkpoint's decay while training longer, or schedule.override_on_resume=true to stretch it",
                file=recipe.file_of("training.train_iters") or file,
                field="training.train_iters",
            )
    if steps_in_samples_kept:
        for key in ("lr_warmup_steps", "lr_decay_steps"):
            names.pop(key)
    for key, recipe_key in names.items():
        if key in saved and saved[key] != current.get(key):
            raise UserError(
                f"the checkpoint's schedule has {key}={saved[key]!r}, the recipe gives {current.get(key)!r}; "
                "restore the recipe value or pass schedule.override_on_resume=true",
                file=recipe.file_of(recipe_key) or file,
                field=recipe_key,
            )
