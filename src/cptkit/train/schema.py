"""The recipe schema: every field typed, with its unit and meaning. Checks that need several sections live in plan.py.

Names follow Megatron-LM's arguments where one exists (`micro_batch_size`, `lr_warmup_iters`, `clip_grad`), so a
Megatron user can read a recipe without a glossary. Counts say their unit: `*_iters` are optimizer steps,
`*_tokens` are tokens, batch sizes are sequences of `training.seq_length` tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, PrivateAttr, field_validator, model_validator

from cptkit.config import ConfigModel, KeysOf, Origins, Section
from cptkit.config.keys import known_keys as _known_keys
from cptkit.model.config import ModelConfig
from cptkit.release.name import DEFAULT_NAME_TEMPLATE
from cptkit.util.units import parse_tokens


class _Section(Section):
    model_config = ConfigDict(validate_default=True)


class ModelSection(_Section):
    """The model to train: where its weights come from and its shape. `cptkit convert hf-to-mcore` writes the
    checkpoint `init_checkpoint` names; `config` lets `cptkit plan` work on a login node without it."""

    init_checkpoint: str | None = Field(
        None,
        description="Directory written by `cptkit convert hf-to-mcore` (cptkit_model.json + weights). The first run "
        "loads its weights (no optimizer state, no RNG); later runs resume from the run's own checkpoints. "
        "null = random initialisation (tests, from-scratch runs).",
    )
    # A plain mapping (a partial shape is enough to plan; values are checked against the checkpoint at start), but
    # its keys are ModelConfig's: a typo is refused at load time like any other key.
    config: Annotated[dict[str, Any] | None, KeysOf(ModelConfig)] = Field(
        None,
        description="cptkit.model.ModelConfig fields. Needed when init_checkpoint is null; otherwise used to plan "
        "without the checkpoint (login node, CI) and checked against the checkpoint's cptkit_model.json at start.",
    )
    init_method_std: float = Field(
        0.02,
        gt=0,
        description="Standard deviation of the normal weight init (random initialisation only; ignored when "
        "init_checkpoint is loaded).",
    )


class DataSection(_Section):
    """The training data: a mixture file, resolved in-process by `cptkit.mix` into a megatron-core blend
    (BlendedMegatronDatasetBuilder + GPTDataset over the tokenized prefixes). The resolved blend's fingerprint is
    stored in every checkpoint."""

    mixture: str = Field(
        ...,
        description="Mixture file (data_mix/*.yaml), resolved in-process by cptkit.mix; its prefixes must be "
        "tokenized (`cptkit tokenize`). ${VAR} expanded.",
    )
    split: str = Field(
        "990,10,0",
        description="train,valid,test split of every prefix's documents, Megatron style: three non-negative "
        "weights, train > 0 ('990,10,0' = 99% / 1% / 0%). Validation (eval.interval_iters) needs valid > 0.",
    )
    allow_mixture_change: bool = Field(
        False,
        description="Resume even though the resolved mixture's fingerprint (weights, sources and every "
        "prefix's .idx bytes) differs from the checkpoint's; without it such a resume is refused.",
    )
    cache_dir: str | None = Field(
        None,
        description="Where GPTDataset writes its sample-index caches (null = RUN_DIR/data_cache). ${VAR} expanded.",
    )
    num_workers: int = Field(
        2, ge=0, description="DataLoader worker processes per rank (0 = load in the training process)."
    )
    reset_position_ids: bool = Field(False, description="Restart position ids after every end-of-document token.")
    reset_attention_mask: bool = Field(
        False, description="Mask attention across documents (builds an explicit attention mask: slower, more memory)."
    )
    eod_mask_loss: bool = Field(
        False,
        description="Zero the loss at positions whose input is the end-of-document token, i.e. do not train on "
        "predicting the first token of the next document from the EOD (megatron-core's GPTDataset mask). "
        "Predicting the end-of-document token itself is still trained.",
    )
    eod_token_id: int | None = Field(
        None,
        ge=0,
        description="End-of-document token id (Llama-3: 128001, `<|end_of_text|>`); required when reset_position_ids, "
        "reset_attention_mask or eod_mask_loss is true.",
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

    def build(self, recipe: Recipe, blend: Any, *, vocab_size: int, train_iters: int, cache_dir: str):
        """The train and validation datasets this section configures, through the one builder `train` and `mix
        check` share (train/data.py: BlendedMegatronDatasetBuilder over the resolved blend, FIM per source)."""
        from cptkit.train.data import build_datasets

        return build_datasets(recipe, blend, vocab_size=vocab_size, train_iters=train_iters, cache_dir=cache_dir)


class TrainingSection(_Section):
    """Sequence length, batch sizes, the token budget and numerics. One iteration is one optimizer step over
    `global_batch_size` sequences of `seq_length` tokens; gradient-accumulation steps =
    global_batch_size / (micro_batch_size x DP)."""

    seq_length: PositiveInt = Field(
        ..., description="Tokens per sequence (at most the model's max_position_embeddings)."
    )
    global_batch_size: PositiveInt = Field(
        ...,
        description="Sequences per optimizer step, over all data-parallel ranks; must be divisible by "
        "micro_batch_size x DP.",
    )
    micro_batch_size: PositiveInt = Field(..., description="Sequences per forward/backward pass on one GPU.")
    train_iters: PositiveInt | None = Field(
        None, description="Optimizer steps to train for. Give this or train_tokens (both: they must agree)."
    )
    train_tokens: int | None = Field(
        None,
        description="Token budget, > 0 ('50B', '850M' or an integer); iterations = ceil(budget / (global_batch_size x "
        "seq_length)). Give this or train_iters.",
    )
    z_loss_coef: float = Field(
        0.0,
        ge=0,
        description="Adds coef x logsumexp(logits)^2 per token to the loss (PaLM's z-loss; 1e-4 in the Swallow "
        "ablations); 0 = off.",
    )
    seed: int = Field(1234, ge=0, description="Seed for init, dropout and the data order (GPTDataset shuffling).")
    precision: Literal["bf16", "fp16", "fp32"] = Field(
        "bf16", description="Compute precision; master weights are fp32. CPU runs need fp32."
    )
    grad_reduce_in_fp32: bool = Field(
        True, description="Accumulate and all-reduce gradients in fp32 (costs 4 bytes per parameter instead of 2)."
    )
    activation_recompute: Literal["none", "selective", "full"] = Field(
        "none", description="Recompute activations in backward: selective = core attention, full = whole layers."
    )
    recompute_method: Literal["uniform", "block"] = Field(
        "uniform",
        description="Full recompute only: uniform = every layer, in groups of recompute_num_layers; block = "
        "only the first recompute_num_layers layers of each pipeline stage.",
    )
    recompute_num_layers: PositiveInt = Field(
        1, description="Full recompute only: layers per group (uniform) or recomputed layers per stage (block)."
    )
    attention_backend: Literal["auto", "flash", "fused", "unfused", "local"] = Field(
        "auto",
        description="megatron-core AttnBackend; auto picks the best available (flash attention on GPU, "
        "local on CPU). unfused and local keep the full score matrix (more memory).",
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
    """AdamW through megatron-core's `get_megatron_optimizer` (fp32 master weights, grad clipping, distributed
    optimizer)."""

    lr: float = Field(..., gt=0, description="Peak learning rate, reached at the end of warmup.")
    min_lr: float = Field(0.0, ge=0, description="Learning rate at the end of the decay; at most lr.")
    weight_decay: float = Field(0.1, ge=0, description="Decoupled (AdamW) weight decay; not applied to norms/biases.")
    adam_beta1: float = Field(0.9, gt=0, lt=1, description="Adam β1 (first-moment decay).")
    adam_beta2: float = Field(0.95, gt=0, lt=1, description="Adam β2 (second-moment decay).")
    adam_eps: float = Field(1e-8, gt=0, description="Adam ε.")
    clip_grad: float = Field(1.0, ge=0, description="Clip the global gradient L2 norm to this value; 0 = off.")
    use_distributed_optimizer: bool = Field(
        True,
        description="Shard optimizer state over data-parallel ranks (ZeRO-1; saved dp_reshardable: resume "
        "with the same TP/PP). Needs CUDA; CPU runs set false.",
    )
    overlap_grad_reduce: bool = Field(False, description="Overlap gradient reduce-scatter with backward.")
    overlap_param_gather: bool = Field(
        False, description="Overlap parameter all-gather with forward; needs use_distributed_optimizer."
    )

    @model_validator(mode="after")
    def _lrs(self) -> OptimizerSection:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) is larger than lr ({self.lr})")
        if self.overlap_param_gather and not self.use_distributed_optimizer:
            raise ValueError("overlap_param_gather needs use_distributed_optimizer")
        return self


class ScheduleSection(_Section):
    """The learning-rate schedule, run by megatron-core's `OptimizerParamScheduler`: linear warmup from
    `lr_warmup_init` to `optimizer.lr`, then a decay to `optimizer.min_lr`. Saved in every checkpoint and checked on
    resume."""

    lr_decay_style: Literal["cosine", "linear", "constant", "inverse-square-root", "WSD"] = Field(
        "cosine",
        description="Shape of the decay from lr to min_lr after warmup (megatron-core's styles). WSD "
        "(warmup-stable-decay) holds lr, then decays over the last lr_wsd_decay_iters.",
    )
    lr_warmup_iters: int | None = Field(
        None,
        ge=0,
        description="Linear warmup from lr_warmup_init to lr. Give this or lr_warmup_tokens, not both; must be "
        "shorter than the decay. null = no warmup.",
    )
    lr_warmup_tokens: int | None = Field(
        None, description="Warmup as a token count ('8B'), rounded up to whole iterations; or lr_warmup_iters."
    )
    lr_warmup_init: float = Field(0.0, ge=0, description="Learning rate at iteration 0 (start of the warmup).")
    lr_decay_iters: PositiveInt | None = Field(
        None, description="Iterations over which the LR decays to min_lr, warmup included (default: all iterations)."
    )
    lr_wsd_decay_iters: PositiveInt | None = Field(
        None,
        description="WSD only (and required by it): length of the final decay; at most the post-warmup iterations.",
    )
    lr_wsd_decay_style: Literal["linear", "cosine", "exponential", "minus_sqrt"] = Field(
        "linear", description="WSD only: shape of the final decay."
    )
    override_on_resume: bool = Field(
        False,
        description="On resume, use this schedule even if it differs from the checkpoint's (lr, min_lr, warmup, "
        "decay iterations and style, weight decay); without it such a resume is refused naming the key.",
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
    """The parallel layout the recipe is planned for. DP (data-parallel size) = num_gpus / (TP x PP x CP); the
    checks `cptkit plan` runs on it are listed under "What `plan` checks"."""

    num_gpus: PositiveInt = Field(
        ...,
        description="World size the recipe is planned for (one process per GPU); a multiple of TP x PP x CP. A job "
        "with a different number of processes is refused, naming the override to pass.",
    )
    tensor_model_parallel_size: PositiveInt = Field(
        1,
        description="TP: GPUs sharing each layer's matrices; must divide the attention heads, KV heads and padded "
        "vocabulary. Keep it within a node.",
    )
    pipeline_model_parallel_size: PositiveInt = Field(
        1, description="PP: pipeline stages (layers split in order); must divide num_layers."
    )
    context_parallel_size: PositiveInt = Field(
        1, description="CP: GPUs sharing each sequence (long context); seq_length must be divisible by 2 x CP."
    )
    sequence_parallel: bool = Field(
        False,
        description="Shard norm/dropout activations along the sequence; needs TP > 1, seq_length divisible by TP x "
        "CP. Not on CPU.",
    )
    tp_comm_overlap: bool = Field(
        False,
        description="Overlap the tensor-parallel all-gather / reduce-scatter with the GEMMs (megatron-core "
        "TransformerConfig.tp_comm_overlap, Megatron-LM's --tp-comm-overlap) through Transformer Engine userbuffers, "
        "set up at start for seq_length x micro_batch_size / CP tokens. Needs sequence_parallel and a CUDA GPU with "
        "Transformer Engine >= 1.9; `cptkit train` refuses it otherwise (`plan` does not: it only estimates).",
    )


class CheckpointSection(_Section):
    """When to save, what to keep. Checkpoints are megatron-core `dist_checkpointing` (torch_dist) directories
    `iter_NNNNNNN/` (see "Checkpoints" above); the latest one is always kept."""

    dir: str | None = Field(None, description="Checkpoint directory (null = RUN_DIR/checkpoints). ${VAR} expanded.")
    interval_iters: PositiveInt | None = Field(
        None, description="Save every N iterations; null = only at the end (and on SIGTERM/SIGUSR1)."
    )
    keep_last: PositiveInt | None = Field(
        None,
        description="Keep the newest K checkpoints (plus keep_every_iters multiples and the latest); null = keep all.",
    )
    keep_every_iters: PositiveInt | None = Field(
        None, description="Also keep, forever, checkpoints whose iteration is a multiple of this."
    )
    save_on_signal: bool = Field(True, description="On SIGTERM/SIGUSR1 save a checkpoint and exit 0 (requeue).")
    fully_parallel_save: bool = Field(
        True, description="Spread the save work over data-parallel ranks (megatron-core's fully parallel save)."
    )
    async_save: bool = Field(
        False,
        description="Write checkpoints in the background while training goes on (megatron-core dist_checkpointing's "
        "async path, Megatron-LM's --async-save): checksums, the rename to iter_N/ and the latest pointer follow "
        "once every rank's write is done; a pending save is completed before the next one and before the job exits; "
        "a job killed meanwhile resumes from the previous checkpoint.",
    )
    resume_from: PositiveInt | None = Field(
        None,
        description="Resume from this saved iteration instead of the latest pointer (`cptkit train --resume-from "
        "ITER`), e.g. the newest intact checkpoint before a damaged one. Applied once: a requeued job whose latest "
        "checkpoint continues from it resumes from the pointer.",
    )

    def build(self, recipe: Recipe, model_cfg: Any):
        """The `Checkpointer` this section configures: interval, retention, signal saves, the latest pointer and
        the checksums of every save (train/checkpointer.py)."""
        from cptkit.train.checkpointer import Checkpointer

        return Checkpointer(recipe, model_cfg)


class EvalSection(_Section):
    """Validation loss during training, on the validation split of the same mixture (results in
    `RUN_DIR/logs/validation.jsonl`). Benchmark evaluation of saved checkpoints is `cptkit eval`."""

    interval_iters: PositiveInt | None = Field(
        None, description="Validation every N iterations; null = never. Needs a validation split (data.split)."
    )
    iters: PositiveInt = Field(
        10,
        description="Validation batches (of global_batch_size sequences) per evaluation; the same batches every "
        "time, so losses are comparable.",
    )


class LoggingSection(_Section):
    """Training metrics: console, `RUN_DIR/logs/metrics.jsonl`, TensorBoard and wandb (see "Logs" above)."""

    interval_iters: PositiveInt = Field(
        1, description="Log (console, metrics.jsonl, TensorBoard, wandb) every N iterations."
    )
    tensorboard: bool = Field(True, description="Write TensorBoard events to RUN_DIR/tensorboard.")
    wandb_project: str | None = Field(None, description="wandb project; null = no wandb. Runs go to RUN_DIR/wandb.")
    wandb_entity: str | None = Field(None, description="wandb team or user; null = your default.")
    wandb_mode: Literal["offline", "online"] = Field(
        "offline",
        description="offline needs no network (upload later with `wandb sync RUN_DIR/wandb/offline-run-*`).",
    )
    peak_tflops_per_gpu: float = Field(
        989.0,
        gt=0,
        description="Dense bf16 peak of one GPU, the denominator of MFU (H100 SXM 989, H200 989, A100 312).",
    )
    loss_spike_factor: float = Field(
        1.5, gt=1, description="Warn when the loss exceeds this factor times the mean of the last 20 logged losses."
    )

    def build(self, recipe: Recipe, *, enabled: bool, flops_per_iteration: float, world_size: int):
        """The `MetricsLogger` this section configures (console, metrics.jsonl, TensorBoard, wandb)."""
        from cptkit.train.metrics import MetricsLogger

        return MetricsLogger(
            recipe,
            Path(recipe.run_dir),
            enabled=enabled,
            flops_per_iteration=flops_per_iteration,
            world_size=world_size,
        )


class ReleaseSection(_Section):
    """How `cptkit release` names and describes this run's checkpoints as Hugging Face releases (docs/release.md).
    The name template's `{variables}`: `base_model_name` (the last part of base_model), `ablation`, `name` (the
    recipe's), `lr`, `min_lr`, `weight_decay`, `iteration`, `tokens` (consumed), `seq_length`; format specs `:sci`
    / `:SCI` write a number as `2.5e-5` / `2.5E-6`, `:units` a token count as `50B`, `:07d` pads the iteration."""

    name: str = Field(
        DEFAULT_NAME_TEMPLATE,
        min_length=1,
        description="Release (folder and Hub repository) name template, Python `str.format` syntax. The default is "
        "the Swallow ablations' scheme: Llama-3.1-8B-code-ablation-exp1-LR2.5e-5-MINLR2.5E-6-WD0.1-iter0012500. The "
        "name must follow the Hub's rules (letters, digits, `-`, `_`, `.`; at most 96 characters; no `--` or `..`).",
    )
    ablation: str | None = Field(
        None,
        description="`{ablation}` in the name (e.g. `code-ablation-exp1`); null = the recipe's name with `_` → `-`. "
        "Set it in every recipe that inherits another's: an inherited value names the other run.",
    )
    base_model: str | None = Field(
        None,
        description="Hub id of the model training started from (`meta-llama/Llama-3.1-8B`): the card's base model "
        "and license, `{base_model_name}` in the name. null = the `_name_or_path` the initial checkpoint's HF config "
        "recorded, if any.",
    )
    license: str | None = Field(
        None,
        description="Hub license id for the card (`llama3.1`, `apache-2.0`, `other`); null = the base model "
        "family's license (Llama 3.x community licenses, Qwen, Gemma, Mistral), or none stated when not known.",
    )
    citation: str | None = Field(None, description="Citation block (BibTeX or free text) for the card; null = none.")
    card_template: str | None = Field(
        None,
        description="Jinja2 model-card template (relative to the recipe's directory; ${VAR} expanded). null = "
        "`model_card.md.j2` beside the recipe if there is one, else the packaged default "
        "(src/cptkit/release/templates/model_card.md.j2).",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        from cptkit.release.name import check_template

        check_template(v)  # unknown variables, bad format specs, characters the Hub refuses
        return v


class Recipe(ConfigModel):
    """Top-level keys. `data`, `training`, `optimizer` and `parallel` are required sections (in the file or inherited
    from its base); the others may be left out (every key has a default)."""

    inherit: str | None = Field(
        None,
        description="Base recipe file, relative to this recipe's directory; loaded first, this file merged over it "
        "(see Inheritance and overrides).",
    )
    name: str = Field(
        ...,
        min_length=1,
        description="Run name; ${name} in path fields. With inherit, defaults to the file's stem (never the base's).",
    )
    description: str = Field("", description="Free text: what this run or ablation is.")
    run_dir: str = Field(
        "runs/${name}",
        description="Run directory (checkpoints, logs, recipe.resolved.yaml); ${VAR} expanded. Rerunning with the "
        "same run_dir resumes.",
    )
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection
    training: TrainingSection
    optimizer: OptimizerSection
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    parallel: ParallelSection
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    release: ReleaseSection = Field(default_factory=ReleaseSection)

    model_config = ConfigDict(validate_default=True)
    file_kind: ClassVar[str] = "recipe file"
    merge_whole: ClassVar[frozenset[str]] = frozenset({"model.config"})  # a model shape is never half-inherited

    _source_file: str | None = PrivateAttr(None)
    _origin: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def on_inherit(cls, data: dict[str, Any], path: Path) -> None:
        data.setdefault("name", path.stem)  # a recipe's name is its own, never its base's

    @classmethod
    def variables(cls, data: dict[str, Any]) -> dict[str, str]:
        name = data.get("name")
        return {"name": name} if isinstance(name, str) else {}  # `run_dir: runs/${name}`

    def loaded(self, file: str, origin: Origins) -> None:
        self._source_file = file
        self._origin = dict(origin)
        self._locate_card_template()

    def _locate_card_template(self) -> None:
        """release.card_template relative to the file that set it; unset: `model_card.md.j2` beside the recipe.

        Made absolute here, so recipe.resolved.yaml records which template the run's releases use."""
        from cptkit.config.source import COMMAND_LINE

        release = self.release
        if release.card_template is not None:
            setter = self.file_of("release.card_template")
            base = Path(setter).parent if setter and setter != COMMAND_LINE else Path.cwd()
            release.card_template = str((base / release.card_template).resolve())
        elif self._source_file and (beside := Path(self._source_file).parent / "model_card.md.j2").is_file():
            release.card_template = str(beside.resolve())

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
        yield "release.card_template", self.release, "card_template"

    def plan(self, world_size: int | None = None):
        """The `Plan` of this recipe: the parallel section and the model shape → batch arithmetic, iterations and
        memory (train/plan.py, the one owner of that arithmetic; `cptkit plan`, `train` and `launch` use it)."""
        from cptkit.train.plan import make_plan

        return make_plan(self, world_size=world_size)

    @property
    def checkpoint_dir(self) -> str:
        return self.checkpoint.dir or f"{self.run_dir}/checkpoints"


def known_keys(model: type[BaseModel] = Recipe, prefix: str = "") -> set[str]:
    """Every dotted key the schema accepts (sections and leaves, and the ModelConfig keys of `model.config`)."""
    return _known_keys(model, prefix)
