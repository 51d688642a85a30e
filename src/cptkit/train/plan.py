"""What a recipe implies before any GPU is touched: parallel layout, batch arithmetic, schedule, memory per GPU.

`make_plan(recipe)` checks every cross-field constraint (GBS vs MBS × DP, heads and KV heads vs TP, layers vs PP,
budget vs iterations, ...) and raises a one-line `UserError` naming the recipe file and key; `Plan.render()` is what
`cptkit plan` and `cptkit train --dry-run` print. Torch-free: it runs on a login node.

    from cptkit.train.recipe import load_recipe
    from cptkit.train.plan import make_plan
    print(make_plan(load_recipe("recipes/swallowcode_exp1.yaml")).render())
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cptkit.errors import UserError
from cptkit.model.config import FILENAME, ModelConfig, check_against_checkpoint
from cptkit.model.shape import count_parameters, layer_parameters
from cptkit.train.schema import Recipe
from cptkit.util.units import format_tokens

GiB = 1024**3
_SHAPE_KEYS = (
    "num_layers",
    "hidden_size",
    "ffn_hidden_size",
    "num_attention_heads",
    "num_query_groups",
    "vocab_size",
)


@dataclass
class MemoryEstimate:
    """Bytes per GPU on the most loaded pipeline stage."""

    weights: float
    grads: float
    optimizer: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations + self.logits


@dataclass
class Plan:
    recipe: Recipe
    model: dict[str, Any]
    model_source: str
    world_size: int
    data_parallel_size: int
    grad_accum_steps: int
    tokens_per_iteration: int
    train_iters: int
    train_tokens: int
    warmup_iters: int
    decay_iters: int
    parameters: int
    flops_per_iteration: float
    memory: MemoryEstimate
    notes: list[str] = field(default_factory=list)
    mixture_summary: str = ""

    @property
    def warmup_tokens(self) -> int:
        return self.warmup_iters * self.tokens_per_iteration

    def layout(self) -> str:
        """One line for job scripts (`cptkit launch`): parallel layout, batch and length of the run."""
        p, t = self.recipe.parallel, self.recipe.training
        length = f"{self.train_iters} iterations"
        if t.train_iters is None:  # planned from the token budget: say both
            length += f" = {format_tokens(self.train_tokens)} tokens"
        return (
            f"TP {p.tensor_model_parallel_size} PP {p.pipeline_model_parallel_size} CP {p.context_parallel_size} "
            f"DP {self.data_parallel_size}; global batch {t.global_batch_size}, micro batch {t.micro_batch_size}, "
            f"{length}"
        )

    def render(self) -> str:
        r, m = self.recipe, self.memory
        p = r.parallel
        lines = [
            f"recipe            {r.name}  ({r.source_file})",
            f"run dir           {r.run_dir}",
            f"model             {_describe_model(self.model)}  [{self.model_source}]",
            f"parameters        {_human(self.parameters)}",
            f"initial weights   {r.model.init_checkpoint or 'random initialisation'}",
            f"mixture           {r.data.mixture}  (split {r.data.split}){self.mixture_summary}",
            f"world size        {self.world_size} GPUs = TP {p.tensor_model_parallel_size} x PP "
            f"{p.pipeline_model_parallel_size} x CP {p.context_parallel_size} x DP {self.data_parallel_size}"
            f"{'  (sequence parallel)' if p.sequence_parallel else ''}",
            f"batch             global {r.training.global_batch_size} = micro {r.training.micro_batch_size} x DP "
            f"{self.data_parallel_size} x {self.grad_accum_steps} gradient-accumulation steps",
            f"tokens/iteration  {self.tokens_per_iteration:,} ({r.training.global_batch_size} x "
            f"{r.training.seq_length} tokens)",
            f"iterations        {self.train_iters:,} = {format_tokens(self.train_tokens)} tokens",
            f"learning rate     {r.optimizer.lr:g} -> {r.optimizer.min_lr:g}, {r.schedule.lr_decay_style}, warmup "
            f"{self.warmup_iters:,} iterations ({format_tokens(self.warmup_tokens)} tokens), decay over "
            f"{self.decay_iters:,}",
            f"optimizer         Adam b1 {r.optimizer.adam_beta1} b2 {r.optimizer.adam_beta2} eps "
            f"{r.optimizer.adam_eps:g}, weight decay {r.optimizer.weight_decay}, clip {r.optimizer.clip_grad}, "
            f"{'distributed' if r.optimizer.use_distributed_optimizer else 'replicated'}",
            f"precision         {r.training.precision}, grads reduced in "
            f"{'fp32' if r.training.grad_reduce_in_fp32 else r.training.precision}, z-loss "
            f"{r.training.z_loss_coef:g}, recompute {r.training.activation_recompute}",
            f"checkpoints       {r.checkpoint_dir} every {r.checkpoint.interval_iters or 'end only'} iterations, "
            f"keep last {r.checkpoint.keep_last or 'all'}"
            + (f" + every {r.checkpoint.keep_every_iters}" if r.checkpoint.keep_every_iters else ""),
            "validation        "
            + (
                f"every {r.eval.interval_iters} iterations for {r.eval.iters} iterations"
                if r.eval.interval_iters
                else "off"
            ),
            f"model FLOPs       {self.flops_per_iteration / self.world_size / 1e12:,.4g} TFLOP per GPU per iteration",
            "memory per GPU    (estimate, most loaded pipeline stage)",
            f"  weights         {m.weights / GiB:8.3g} GiB",
            f"  gradients       {m.grads / GiB:8.3g} GiB",
            f"  optimizer       {m.optimizer / GiB:8.3g} GiB  (fp32 master + Adam moments"
            f"{', sharded over DP' if r.optimizer.use_distributed_optimizer else ''})",
            f"  activations     {m.activations / GiB:8.3g} GiB  (recompute {r.training.activation_recompute})",
            f"  logits/loss     {m.logits / GiB:8.3g} GiB",
            f"  total           {m.total / GiB:8.3g} GiB  (+ CUDA context, NCCL buffers, fragmentation: a few GiB)",
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def load_model_shape(recipe: Recipe) -> tuple[dict[str, Any], str]:
    """The model config to plan with: the initial checkpoint's cptkit_model.json if present, else model.config."""
    ckpt = recipe.model.init_checkpoint
    inline = recipe.model.config
    if ckpt and (Path(ckpt) / FILENAME).is_file():
        path = Path(ckpt) / FILENAME
        on_disk = ModelConfig.load(path).model_dump(mode="json")
        check_against_checkpoint(inline, on_disk, f"the initial checkpoint {path}", recipe.file_of)
        return on_disk, str(path)
    if inline is None:
        where = f"{ckpt}/cptkit_model.json not found" if ckpt else "model.init_checkpoint is null"
        raise UserError(f"{where}; give model.config to plan without it", file=recipe.source_file, field="model")
    missing = [k for k in _SHAPE_KEYS if k not in inline]
    if missing:
        raise UserError(f"missing {', '.join(missing)}", file=recipe.file_of("model.config"), field="model.config")
    return inline, f"{recipe.file_of('model.config')}: model.config"


def make_plan(recipe: Recipe, world_size: int | None = None) -> Plan:
    """Check the recipe's arithmetic and estimate memory. `world_size` (when running) must equal parallel.num_gpus."""
    shape, source = load_model_shape(recipe)
    r, p, t = recipe, recipe.parallel, recipe.training

    def fail(key: str, message: str) -> UserError:
        return UserError(message, file=r.file_of(key), field=key)

    world = p.num_gpus
    if world_size is not None and world_size != world:
        raise fail(
            "parallel.num_gpus",
            f"this job has {world_size} processes but the recipe is planned for {world} GPUs; pass "
            f"parallel.num_gpus={world_size} (and check training.global_batch_size) or launch {world} processes",
        )
    tp, pp, cp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size, p.context_parallel_size
    if world % (tp * pp * cp):
        raise fail("parallel.num_gpus", f"{world} GPUs is not a multiple of TP x PP x CP = {tp * pp * cp}")
    dp = world // (tp * pp * cp)
    heads, groups = shape["num_attention_heads"], shape.get("num_query_groups") or shape["num_attention_heads"]
    layers = shape["num_layers"]
    vocab = shape.get("padded_vocab_size") or shape["vocab_size"]
    if heads % tp:
        raise fail("parallel.tensor_model_parallel_size", f"{heads} attention heads are not divisible by TP {tp}")
    if groups % tp:
        raise fail(
            "parallel.tensor_model_parallel_size", f"{groups} KV heads (query groups) are not divisible by TP {tp}"
        )
    if vocab % tp:
        raise fail("parallel.tensor_model_parallel_size", f"padded vocabulary {vocab} is not divisible by TP {tp}")
    if layers % pp:
        raise fail("parallel.pipeline_model_parallel_size", f"{layers} layers are not divisible by PP {pp}")
    if p.sequence_parallel and tp == 1:
        raise fail("parallel.sequence_parallel", "sequence parallelism needs tensor_model_parallel_size > 1")
    if cp > 1 and t.seq_length % (2 * cp):
        raise fail("training.seq_length", f"{t.seq_length} is not divisible by 2 x context_parallel_size = {2 * cp}")
    if p.sequence_parallel and t.seq_length % (tp * cp):
        raise fail("training.seq_length", f"{t.seq_length} is not divisible by TP x CP = {tp * cp} (sequence parallel)")
    max_pos = shape.get("max_position_embeddings")
    if max_pos and t.seq_length > max_pos:
        raise fail("training.seq_length", f"{t.seq_length} is longer than the model's {max_pos} positions")
    if t.global_batch_size % (t.micro_batch_size * dp):
        raise fail(
            "training.global_batch_size",
            f"{t.global_batch_size} is not divisible by micro_batch_size x DP = {t.micro_batch_size} x {dp}",
        )
    accum = t.global_batch_size // (t.micro_batch_size * dp)
    tokens_per_iter = t.global_batch_size * t.seq_length
    iters = t.train_iters
    if t.train_tokens is not None:
        from_budget = math.ceil(t.train_tokens / tokens_per_iter)
        if iters is not None and iters != from_budget:
            raise fail(
                "training.train_iters",
                f"{iters} iterations x {tokens_per_iter:,} tokens disagrees with train_tokens "
                f"{format_tokens(t.train_tokens)} ({from_budget} iterations); give one of them",
            )
        iters = from_budget
    s = r.schedule
    warmup = s.lr_warmup_iters or 0
    if s.lr_warmup_tokens is not None:
        warmup = math.ceil(s.lr_warmup_tokens / tokens_per_iter)
    decay = s.lr_decay_iters or iters
    if warmup >= decay:
        raise fail("schedule.lr_warmup_iters", f"warmup ({warmup} iterations) must be shorter than the decay ({decay})")
    if s.lr_wsd_decay_iters and s.lr_wsd_decay_iters > decay - warmup:
        raise fail("schedule.lr_wsd_decay_iters", f"longer than the {decay - warmup} post-warmup decay iterations")
    if r.eval.interval_iters and float(r.data.split.split(",")[1]) == 0:
        raise fail("data.split", "eval.interval_iters is set but the split gives validation no documents")
    notes = []
    if pp > 1 and accum < pp:
        notes.append(
            f"only {accum} micro-batches per iteration for {pp} pipeline stages: the pipeline bubble dominates"
        )
    if s.lr_decay_iters and s.lr_decay_iters < iters:
        notes.append(f"LR reaches min_lr at iteration {s.lr_decay_iters} and stays there for the rest")
    mixture_summary = _mixture_summary(r, iters * tokens_per_iter, notes)
    params = count_parameters(shape)
    return Plan(
        recipe=r,
        model=shape,
        model_source=source,
        world_size=world,
        data_parallel_size=dp,
        grad_accum_steps=accum,
        tokens_per_iteration=tokens_per_iter,
        train_iters=iters,
        train_tokens=iters * tokens_per_iter,
        warmup_iters=warmup,
        decay_iters=decay,
        parameters=params,
        flops_per_iteration=flops_per_iteration(shape, t.global_batch_size, t.seq_length),
        memory=estimate_memory(r, shape, dp, accum),
        notes=notes,
        mixture_summary=mixture_summary,
    )


def _mixture_summary(recipe: Recipe, train_tokens: int, notes: list[str]) -> str:
    """Name and token target of the mixture file, read without resolving it (its data may live elsewhere)."""
    import yaml

    from cptkit.util.units import parse_tokens

    path = Path(recipe.data.mixture)
    if not path.is_file():
        notes.append(f"mixture file {path} does not exist here; `cptkit train` resolves it and fails without it")
        return ""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        target = parse_tokens(raw["total_tokens"]) if raw.get("total_tokens") is not None else None
    except (yaml.YAMLError, ValueError, TypeError, AttributeError) as e:
        raise UserError(f"cannot read the mixture: {' '.join(str(e).split())}", file=str(path)) from None
    if target is None:
        return f"  [{raw.get('name', '?')}]"
    if abs(target - train_tokens) > 0.1 * train_tokens:
        notes.append(
            f"the mixture targets {format_tokens(target)} tokens but the run trains {format_tokens(train_tokens)}: "
            "Megatron normalises the weights, so every source is scaled by the same factor"
        )
    return f"  [{raw.get('name', '?')}: {format_tokens(target)} tokens]"


def _human(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _describe_model(shape: dict[str, Any]) -> str:
    return (
        f"{shape.get('architecture', 'llama')}: {shape['num_layers']} layers, hidden {shape['hidden_size']}, "
        f"FFN {shape['ffn_hidden_size']}, {shape['num_attention_heads']} heads / "
        f"{shape.get('num_query_groups') or shape['num_attention_heads']} KV, vocab {shape['vocab_size']}"
    )


def flops_per_iteration(shape: dict[str, Any], global_batch_size: int, seq_length: int) -> float:
    """Model FLOPs of one training iteration (forward + backward = 3 x forward), as Megatron-LM counts them for
    Llama: GQA projections, causal-agnostic attention scores, SwiGLU MLP and the logit layer."""
    h, f, L = shape["hidden_size"], shape["ffn_hidden_size"], shape["num_layers"]
    heads = shape["num_attention_heads"]
    groups = shape.get("num_query_groups") or heads
    kv = shape.get("kv_channels") or h // heads
    vocab = shape.get("padded_vocab_size") or shape["vocab_size"]
    q_ratio = heads * kv / h
    per_token_layer = (
        (1 + groups / heads + seq_length / h) * q_ratio  # QKV + proj, and attention scores/values
        + (f / h) * 1.5  # gated MLP: three matrices
    )
    return 12 * global_batch_size * seq_length * L * h * h * (per_token_layer + vocab / (2 * L * h))


def estimate_memory(recipe: Recipe, shape: dict[str, Any], dp: int, accum: int) -> MemoryEstimate:
    """Bytes per GPU. Activations follow Korthikanti et al. 2022 adapted to GQA + SwiGLU with flash attention."""
    p, t = recipe.parallel, recipe.training
    tp, pp, cp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size, p.context_parallel_size
    h, f, L = shape["hidden_size"], shape["ffn_hidden_size"], shape["num_layers"]
    heads = shape["num_attention_heads"]
    kv = shape.get("kv_channels") or h // heads
    groups = shape.get("num_query_groups") or heads
    vocab = shape.get("padded_vocab_size") or shape["vocab_size"]
    sharded, replicated = layer_parameters(shape)
    layer_params = sharded / tp + replicated
    emb = vocab * h / tp
    stage_layers = L // pp
    # The first stage holds the embedding, the last the output layer (both when PP = 1 or untied).
    first = stage_layers * layer_params + emb + (emb if pp == 1 and not shape.get("tie_word_embeddings") else 0)
    last = stage_layers * layer_params + emb + h
    params = max(first, last)
    act_bytes = 4 if t.precision == "fp32" else 2
    weights = params * act_bytes
    grads = params * (4 if t.grad_reduce_in_fp32 or t.precision == "fp32" else 2)
    opt_per_param = 8 if t.precision == "fp32" else 12  # (fp32 master) + exp_avg + exp_avg_sq
    optimizer = params * opt_per_param / (dp * cp if recipe.optimizer.use_distributed_optimizer else 1)

    tokens = t.micro_batch_size * t.seq_length / cp
    sp = tp if p.sequence_parallel else 1
    # Saved per layer (elements per token): norm inputs, QKV/FC1 inputs (sequence-sharded under SP), and
    # head/FFN-sharded tensors: q, k, v, attention output, fc1 output (gate+up), SwiGLU output.
    seq_sharded = 4 * h / sp
    head_sharded = (h + 2 * groups * kv + heads * kv + 3 * f) / tp
    per_layer = tokens * (seq_sharded + head_sharded) * act_bytes
    if t.attention_backend in ("unfused", "local"):  # the full score matrix is materialised (and kept)
        per_layer += t.micro_batch_size * heads / tp * (t.seq_length / cp) * t.seq_length * act_bytes * 2
    if t.activation_recompute == "full":
        per_layer = tokens * h / sp * act_bytes + per_layer / stage_layers  # inputs only, plus one live layer
    in_flight = min(pp, accum)  # 1F1B: the first stage holds up to PP micro-batches
    activations = per_layer * stage_layers * in_flight
    logits = tokens * vocab / tp * (act_bytes + 4)  # output logits + the fp32 copy in the cross-entropy
    return MemoryEstimate(weights, grads, optimizer, activations, logits)


# -- walltime: does one job finish the run? (`cptkit plan RECIPE --cluster PROFILE`) -----------------------------------
# MFU assumed when nothing was measured: below NeMo 24.09's 59% anchor for Llama-3.1-8B on H100, because a continual
# pre-training run also pays for checkpoint saves, validation and restarts. `cptkit selftest` measures the real one.
PLANNING_MFU = 0.40


@dataclass(frozen=True)
class WalltimeEstimate:
    seconds_per_iteration: float
    run_seconds: float  # the whole run, start to end, at the assumed MFU
    job_seconds: float  # what one job trains: walltime minus the checkpoint lead and start-up
    jobs: int  # jobs of that walltime the run needs (`--chain N`)
    mfu: float

    def warning(self, walltime: str, cluster: str) -> str | None:
        if self.jobs <= 1:
            return None
        return (
            f"the run needs about {self.run_seconds / 3600:,.1f} h at {self.mfu:.0%} MFU "
            f"({self.seconds_per_iteration:.2f} s/iteration), more than one {walltime} job on {cluster} "
            f"can train: submit it as a chain, `cptkit launch train ... --chain {self.jobs}`"
        )


def estimate_walltime(
    plan: Plan, walltime_s: int, *, lead_s: int = 0, startup_s: int = 900, mfu: float = PLANNING_MFU
) -> WalltimeEstimate:
    """Time of the run at `mfu` of the recipe's `logging.peak_tflops_per_gpu`, and how many jobs of `walltime_s` it
    takes; each job loses `lead_s` (the checkpoint signal before the end) and `startup_s` (start-up, loading the
    latest checkpoint, building the data index)."""
    if not 0 < mfu <= 1:
        raise UserError(f"MFU must be in (0, 1], got {mfu}", field="--mfu")
    peak = plan.recipe.logging.peak_tflops_per_gpu * 1e12
    per_iter = plan.flops_per_iteration / (plan.world_size * peak * mfu)
    run = per_iter * plan.train_iters
    per_job = walltime_s - lead_s - startup_s
    if per_job <= 0:
        raise UserError(f"a {walltime_s} s job has no time left to train after start-up and the checkpoint lead")
    return WalltimeEstimate(per_iter, run, per_job, max(1, math.ceil(run / per_job)), mfu)
