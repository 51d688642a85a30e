"""Recipe settings → megatron-core config fields, as tables: a knob that maps 1:1 is its schema field plus one line.

`ModelConfig.to_mcore(recipe)` builds the TransformerConfig from `transformer_settings(recipe)`; the trainer's DDP and
optimizer configs are filled from `DDP_FIELDS` / `OPTIMIZER_FIELDS` (`cptkit.train.setup.megatron_configs`). Values
that need translating (precision → dtypes, recompute choices, the attention backend enum) are derived below the
tables. megatron-core validates every value when the config is built (no GPU needed):

    python -c "from cptkit.train.recipe import load_recipe; from cptkit.model.config import ModelConfig; \\
r = load_recipe('recipes/tiny_cpu.yaml'); print(ModelConfig.model_validate(r.model.config).to_mcore(r))"
"""

from __future__ import annotations

from typing import Any

# recipe field → TransformerConfig field
TRANSFORMER_FIELDS = {
    "parallel.tensor_model_parallel_size": "tensor_model_parallel_size",
    "parallel.pipeline_model_parallel_size": "pipeline_model_parallel_size",
    "parallel.context_parallel_size": "context_parallel_size",
    "parallel.sequence_parallel": "sequence_parallel",
    "parallel.tp_comm_overlap": "tp_comm_overlap",
    "model.init_method_std": "init_method_std",
}
# recipe field → DistributedDataParallelConfig field
DDP_FIELDS = {
    "training.grad_reduce_in_fp32": "grad_reduce_in_fp32",
    "optimizer.overlap_grad_reduce": "overlap_grad_reduce",
    "optimizer.overlap_param_gather": "overlap_param_gather",
    "optimizer.use_distributed_optimizer": "use_distributed_optimizer",
}
# recipe field → OptimizerConfig field
OPTIMIZER_FIELDS = {
    "optimizer.lr": "lr",
    "optimizer.min_lr": "min_lr",
    "optimizer.weight_decay": "weight_decay",
    "optimizer.adam_beta1": "adam_beta1",
    "optimizer.adam_beta2": "adam_beta2",
    "optimizer.adam_eps": "adam_eps",
    "optimizer.clip_grad": "clip_grad",
    "optimizer.use_distributed_optimizer": "use_distributed_optimizer",
    "optimizer.overlap_param_gather": "overlap_param_gather",
}


def recipe_value(recipe, dotted: str) -> Any:
    value = recipe
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def mapped(recipe, table: dict[str, str]) -> dict[str, Any]:
    return {field: recipe_value(recipe, key) for key, field in table.items()}


def precision_settings(precision: str) -> dict[str, Any]:
    """TransformerConfig / OptimizerConfig precision fields for `training.precision`."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    return {"params_dtype": dtype, "bf16": precision == "bf16", "fp16": precision == "fp16"}


def transformer_settings(recipe) -> dict[str, Any]:
    """Every TransformerConfig field a training recipe sets (the model's shape comes from ModelConfig)."""
    t = recipe.training
    out = {**mapped(recipe, TRANSFORMER_FIELDS), **precision_settings(t.precision)}
    if t.attention_backend != "auto":
        from megatron.core.transformer.enums import AttnBackend

        out["attention_backend"] = AttnBackend[t.attention_backend]
    if t.activation_recompute == "selective":
        out["recompute_granularity"] = "selective"
    elif t.activation_recompute == "full":
        out.update(
            recompute_granularity="full",
            recompute_method=t.recompute_method,
            recompute_num_layers=t.recompute_num_layers,
        )
    return out
