"""The recipe schema: every field typed, with its unit and meaning. Checks that need several sections live in plan.py.

Names follow Megatron-LM's arguments where one exists (`micro_batch_size`, `lr_warmup_iters`, `clip_grad`), so a
Megatron user can read a recipe without a glossary. Counts say their unit: `*_iters` are optimizer steps,
`*_tokens` are tokens, batch sizes are sequences of `training.seq_length` tokens.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, PrivateAttr, field_validator, model_validator

from cptkit.util.units import parse_tokens


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ModelSection(_Section):
    init_checkpoint: str | None = Field(
        None,
        description="Directory written by `cptkit convert hf-to-mcore` (cptkit_model.json + weights). The first run "
        "loads its weights (no optimizer state, no RNG); later runs resume from the run's own checkpoints. "
        "null = random initialisation (tests, from-scratch runs).",
    )
    config: dict[str, Any] | None = Field(
        None,
        description="cptkit.model.ModelConfig fields. Needed when init_checkpoint is null; otherwise used to plan "
        "without the checkpoint (login node, CI) and checked against the checkpoint's cptkit_model.json at start.",
    )
    init_method_std: float = Field(0.02, gt=0, description="Std of the normal init (random initialisation only).")


class DataSection(_Section):
    mixture: str = Field(..., description="Mixture file (data_mix/*.yaml), resolved in-process by cptkit.mix.")
    split: str = Field(
        "990,10,0", description="train,valid,test split of every prefix's documents, Megatron style (weights)."
    )
    allow_mixture_change: bool = Field(
        False, description="Resume even though the resolved mixture's fingerprint differs from the checkpoint's."
    )
    cache_dir: str | None = Field(
        None, description="Where GPTDataset writes its index caches (default RUN_DIR/data_cache)."
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes per rank.")
    reset_position_ids: bool = Field(False, description="Restart position ids after every end-of-document token.")
    reset_attention_mask: bool = Field(False, description="Mask attention across documents (needs an attention mask).")
    eod_mask_loss: bool = Field(False, description="Do not train on predicting end-of-document tokens.")
    eod_token_id: int | None = Field(
        None, ge=0, description="End-of-document id (Llama-3: 128001); needed by reset_* and eod_mask_loss."
    )

    @field_validator("split")
    @classmethod
    def _split(cls, v: str) -> str:
        parts = v.split(",")
        try:
            weights = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"split is three comma-separated weights like '990,10,0', got {v!r}") from None
        if len(weights) != 3 or any(w < 0 for w in weights) or weights[0] <= 0:
            raise ValueError(f"split is three non-negative weights with train > 0, like '990,10,0', got {v!r}")
        return v

    @model_validator(mode="after")
    def _eod(self) -> DataSection:
        if (self.reset_position_ids or self.reset_attention_mask or self.eod_mask_loss) and self.eod_token_id is None:
            raise ValueError("eod_token_id is required by reset_position_ids, reset_attention_mask and eod_mask_loss")
        return self


class TrainingSection(_Section):
    seq_length: PositiveInt = Field(..., description="Tokens per sequence.")
    global_batch_size: PositiveInt = Field(
        ..., description="Sequences per optimizer step, over all data-parallel ranks."
    )
    micro_batch_size: PositiveInt = Field(..., description="Sequences per forward/backward pass on one GPU.")
    train_iters: PositiveInt | None = Field(None, description="Optimizer steps to train for (this or train_tokens).")
    train_tokens: int | None = Field(
        None, description="Token budget ('50B'); iterations = ceil(budget / tokens per iteration)."
    )
    z_loss_coef: float = Field(0.0, ge=0, description="Adds coef * logsumexp(logits)^2 per token to the loss; 0 = off.")
    seed: int = Field(1234, ge=0, description="Seed for init, dropout and data order.")
    precision: Literal["bf16", "fp16", "fp32"] = Field(
        "bf16", description="Compute precision; master weights are fp32."
    )
    grad_reduce_in_fp32: bool = Field(True, description="Accumulate and all-reduce gradients in fp32.")
    activation_recompute: Literal["none", "selective", "full"] = Field(
        "none", description="Recompute activations in backward: selective = core attention, full = whole layers."
    )
    recompute_method: Literal["uniform", "block"] = Field(
        "uniform", description="Full recompute: how layers are grouped."
    )
    recompute_num_layers: PositiveInt = Field(
        1, description="Full recompute: layers per group (uniform) or count (block)."
    )
    attention_backend: Literal["auto", "flash", "fused", "unfused", "local"] = Field(
        "auto", description="megatron-core AttnBackend; auto picks the best available (CPU: local)."
    )

    @field_validator("train_tokens", mode="before")
    @classmethod
    def _tokens(cls, v: Any) -> Any:
        return None if v is None else parse_tokens(v)

    @model_validator(mode="after")
    def _budget(self) -> TrainingSection:
        if self.train_iters is None and self.train_tokens is None:
            raise ValueError("give training.train_iters or training.train_tokens")
        if self.train_tokens is not None and self.train_tokens <= 0:
            raise ValueError("train_tokens must be positive")
        return self


class OptimizerSection(_Section):
    lr: float = Field(..., gt=0, description="Peak learning rate, reached at the end of warmup.")
    min_lr: float = Field(0.0, ge=0, description="Learning rate at the end of the decay.")
    weight_decay: float = Field(0.1, ge=0, description="Decoupled (AdamW) weight decay; not applied to norms/biases.")
    adam_beta1: float = Field(0.9, gt=0, lt=1, description="Adam β1 (first-moment decay).")
    adam_beta2: float = Field(0.95, gt=0, lt=1, description="Adam β2 (second-moment decay).")
    adam_eps: float = Field(1e-8, gt=0, description="Adam ε.")
    clip_grad: float = Field(1.0, ge=0, description="Global gradient-norm clip; 0 = off.")
    use_distributed_optimizer: bool = Field(
        True, description="Shard optimizer state over data-parallel ranks (ZeRO-1). Needs CUDA; CPU runs set false."
    )
    overlap_grad_reduce: bool = Field(False, description="Overlap gradient reduce-scatter with backward.")
    overlap_param_gather: bool = Field(False, description="Overlap parameter all-gather with forward (dist. opt.).")

    @model_validator(mode="after")
    def _lrs(self) -> OptimizerSection:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) is larger than lr ({self.lr})")
        if self.overlap_param_gather and not self.use_distributed_optimizer:
            raise ValueError("overlap_param_gather needs use_distributed_optimizer")
        return self


class ScheduleSection(_Section):
    lr_decay_style: Literal["cosine", "linear", "constant", "inverse-square-root", "WSD"] = Field(
        "cosine", description="Shape of the decay from lr to min_lr after warmup (megatron-core's styles)."
    )
    lr_warmup_iters: int | None = Field(None, ge=0, description="Linear warmup from lr_warmup_init, in iterations.")
    lr_warmup_tokens: int | None = Field(None, description="Warmup as a token count ('8B'); or lr_warmup_iters.")
    lr_warmup_init: float = Field(0.0, ge=0, description="Learning rate at iteration 0.")
    lr_decay_iters: PositiveInt | None = Field(
        None, description="Iterations over which the LR decays to min_lr, warmup included (default: all iterations)."
    )
    lr_wsd_decay_iters: PositiveInt | None = Field(None, description="WSD only: length of the final decay, iterations.")
    lr_wsd_decay_style: Literal["linear", "cosine", "exponential", "minus_sqrt"] = Field(
        "linear", description="WSD only: shape of the final decay."
    )
    override_on_resume: bool = Field(
        False, description="On resume, use this schedule even if it differs from the checkpoint's (else an error)."
    )

    @field_validator("lr_warmup_tokens", mode="before")
    @classmethod
    def _tokens(cls, v: Any) -> Any:
        return None if v is None else parse_tokens(v)

    @model_validator(mode="after")
    def _one_warmup(self) -> ScheduleSection:
        if self.lr_warmup_iters is not None and self.lr_warmup_tokens is not None:
            raise ValueError("give lr_warmup_iters or lr_warmup_tokens, not both")
        if self.lr_decay_style == "WSD" and self.lr_wsd_decay_iters is None:
            raise ValueError("lr_decay_style WSD needs lr_wsd_decay_iters")
        return self


class ParallelSection(_Section):
    num_gpus: PositiveInt = Field(..., description="World size the recipe is planned for (one process per GPU).")
    tensor_model_parallel_size: PositiveInt = Field(1, description="TP: GPUs sharing each layer's matrices.")
    pipeline_model_parallel_size: PositiveInt = Field(1, description="PP: pipeline stages (layers split in order).")
    context_parallel_size: PositiveInt = Field(1, description="CP: GPUs sharing each sequence (long context).")
    sequence_parallel: bool = Field(False, description="Shard norms/dropout activations along the sequence (TP > 1).")


class CheckpointSection(_Section):
    dir: str | None = Field(None, description="Checkpoint directory (default RUN_DIR/checkpoints).")
    interval_iters: PositiveInt | None = Field(None, description="Save every N iterations; null = only at the end.")
    keep_last: PositiveInt | None = Field(None, description="Keep the newest K checkpoints; null = keep all.")
    keep_every_iters: PositiveInt | None = Field(
        None, description="Also keep, forever, checkpoints whose iteration is a multiple of this."
    )
    save_on_signal: bool = Field(True, description="On SIGTERM/SIGUSR1 save a checkpoint and exit 0 (requeue).")
    fully_parallel_save: bool = Field(True, description="Spread the save work over data-parallel ranks.")


class EvalSection(_Section):
    interval_iters: PositiveInt | None = Field(None, description="Validation every N iterations; null = never.")
    iters: PositiveInt = Field(10, description="Validation batches (of global_batch_size sequences) per evaluation.")


class LoggingSection(_Section):
    interval_iters: PositiveInt = Field(1, description="Log (console, metrics.jsonl, TensorBoard, wandb) every N.")
    tensorboard: bool = Field(True, description="Write TensorBoard events to RUN_DIR/tensorboard.")
    wandb_project: str | None = Field(None, description="wandb project; null = no wandb.")
    wandb_entity: str | None = Field(None, description="wandb team or user; null = your default.")
    wandb_mode: Literal["offline", "online"] = Field("offline", description="offline needs no network.")
    peak_tflops_per_gpu: float = Field(
        989.0, gt=0, description="Dense bf16 peak for MFU (H100 SXM 989, H200 989, A100 312)."
    )
    loss_spike_factor: float = Field(
        1.5, gt=1, description="Warn when the loss exceeds this factor times its recent average."
    )


class Recipe(_Section):
    inherit: str | None = Field(None, description="Base recipe file, relative to this recipe's directory.")
    name: str = Field(..., min_length=1, description="Run name; also ${name} in paths.")
    description: str = Field("", description="Free text: what this run or ablation is.")
    run_dir: str = Field("runs/${name}", description="Run directory (checkpoints, logs); ${VAR} expanded.")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection
    training: TrainingSection
    optimizer: OptimizerSection
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    parallel: ParallelSection
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)

    _source_file: str | None = PrivateAttr(None)
    _origin: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def source_file(self) -> str | None:
        return self._source_file

    def file_of(self, key: str) -> str | None:
        """The file (or "command line") that set dotted `key`, for error messages."""
        while key:
            if key in self._origin:
                return self._origin[key]
            key = key.rpartition(".")[0]
        return self._source_file

    def path_fields(self):
        """(dotted key, owner object, attribute) of every path field, for ${VAR} expansion."""
        yield "run_dir", self, "run_dir"
        yield "model.init_checkpoint", self.model, "init_checkpoint"
        yield "data.mixture", self.data, "mixture"
        yield "data.cache_dir", self.data, "cache_dir"
        yield "checkpoint.dir", self.checkpoint, "dir"

    @property
    def checkpoint_dir(self) -> str:
        return self.checkpoint.dir or f"{self.run_dir}/checkpoints"


def known_keys(model: type[BaseModel] = Recipe, prefix: str = "") -> set[str]:
    """Every dotted key the schema accepts (sections and leaves)."""
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        dotted = prefix + name
        keys.add(dotted)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= known_keys(ann, dotted + ".")
    return keys
