"""Tensor-parallel communication overlap (`parallel.tp_comm_overlap`, Megatron-LM's --tp-comm-overlap).

megatron-core's TransformerConfig.tp_comm_overlap makes Transformer Engine's linear layers split the sequence-parallel
all-gather / reduce-scatter into chunks that run on userbuffers while the GEMM computes. Those buffers are set up
once per process, before the model is built, for the activation shape of one micro-batch:
[seq_length x micro_batch_size / CP, hidden_size] (what Megatron-LM's training initialisation passes to TE).

Without a CUDA GPU and Transformer Engine there are no userbuffers; the recipe is refused with the field to change
(on CPU by `cptkit.train.setup.check_cpu_settings`, here on a GPU node without TE).
"""

from __future__ import annotations

from cptkit.errors import UserError

MIN_TE = "1.9.0"  # initialize_ub's bootstrap_backend (NCCL bootstrap; older TE needs an MPI-enabled torch)
BOOTSTRAP = "nccl"  # Megatron-LM's default --tp-comm-bootstrap-backend


def ub_shape(recipe, hidden_size: int) -> list[int]:
    """The userbuffer shape TE is initialised with: tokens of one micro-batch on this CP rank x hidden size."""
    t, p = recipe.training, recipe.parallel
    return [t.seq_length * t.micro_batch_size // p.context_parallel_size, hidden_size]


def check_settings(recipe) -> None:
    """Before a run starts (after `check_cpu_settings`, so a CPU run is told to turn it off): refuse
    tp_comm_overlap where it cannot run: without sequence parallelism (megatron-core overlaps the sequence-parallel
    all-gather / reduce-scatter; Megatron-LM refuses it the same way), without CUDA + Transformer Engine, or with a TE
    too old for the NCCL bootstrap."""
    if not recipe.parallel.tp_comm_overlap:
        return
    where = dict(file=recipe.source_file, field="parallel.tp_comm_overlap")
    if not recipe.parallel.sequence_parallel:
        raise UserError(
            "parallel.tp_comm_overlap needs parallel.sequence_parallel=true (and so TP > 1); or set "
            "parallel.tp_comm_overlap=false",
            **where,
        )
    if recipe.training.precision != "bf16":  # TE's userbuffers are set up for bf16 activations (its default)
        raise UserError(
            "parallel.tp_comm_overlap is set up for bf16 activations: set training.precision=bf16 or "
            "parallel.tp_comm_overlap=false",
            **where,
        )
    from cptkit.model.build import te_available

    if not te_available():
        raise UserError(
            "parallel.tp_comm_overlap needs a CUDA GPU with Transformer Engine (userbuffers); set "
            "parallel.tp_comm_overlap=false",
            **where,
        )
    from megatron.core.utils import get_te_version, is_te_min_version

    if not is_te_min_version(MIN_TE):
        raise UserError(
            f"parallel.tp_comm_overlap needs Transformer Engine >= {MIN_TE} (found {get_te_version()}); "
            "set parallel.tp_comm_overlap=false or upgrade TE",
            **where,
        )


def initialize_tp_communicators(recipe, model_config) -> None:
    """Set up TE's userbuffers on every rank (collective over the TP groups), after model-parallel initialisation."""
    check_settings(recipe)
    from transformer_engine.pytorch import module as te_module

    te_module.base.initialize_ub(
        shape=ub_shape(recipe, model_config.hidden_size),
        tp_size=recipe.parallel.tensor_model_parallel_size,
        use_fp8=False,  # cptkit trains bf16 / fp32
        ub_cfgs=None,  # TE's per-GEMM defaults, as Megatron-LM without --tp-comm-overlap-cfg
        bootstrap_backend=BOOTSTRAP,
    )
