"""`train(recipe)`: check everything a user can get wrong, start torch.distributed, run a `Trainer` (train/trainer.py).

One process per GPU (torchrun or mpirun); on a machine without CUDA it runs on CPU under gloo with
`cptkit.backend.cpu` (tests and the demo only):

    cptkit train recipes/tiny_cpu.yaml run_dir=/tmp/tiny data.mixture=/tmp/mix.yaml

Start and resume (`cptkit.train.resume`): if RUN_DIR's checkpoints have a `latest` pointer (or `--resume-from ITER`
names one), the run verifies that checkpoint's checksums and resumes from it with optimizer, scheduler, RNG and
consumed samples, refusing anything that changes what those samples mean; otherwise it loads
`model.init_checkpoint` (weights only) or initialises randomly. SIGTERM / SIGUSR1 finish the current iteration,
save, and exit 0 so a scheduler can requeue the job; COMPLETED is written once the last iteration is saved, and a run
that finds it exits 0 at once — unless training.train_iters was raised since, then it continues and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cptkit.train.trainer import COMPLETED, Trainer


@dataclass
class Prepared:
    """Everything checked before torch.distributed starts (and before megatron-core is imported)."""

    plan: Any
    cfg: Any  # ModelConfig
    blend: Any  # ResolvedBlend
    point: Any  # ResumePoint | None
    keep_schedule: bool = False  # resume with the checkpoint's sample-counted LR schedule
    notes: tuple[str, ...] = ()
    tokenizer_sha256: str | None = None


def completed_at(run_dir: Path) -> int | None:
    """The iteration recorded in RUN_DIR/COMPLETED (0 if it holds none), None if the run is not complete."""
    path = run_dir / COMPLETED
    if not path.is_file():
        return None
    text = path.read_text().strip()
    return int(text) if text.isdigit() else 0


def train(recipe) -> int:
    """Run (or resume) the recipe; returns the process exit code."""
    from cptkit.backend.dist import destroy, init_distributed, rank_info_from_env

    run_dir = Path(recipe.run_dir)
    plan = recipe.plan(world_size=rank_info_from_env()[2])
    done = completed_at(run_dir)
    if done is not None:
        if done == 0 or done >= plan.train_iters:
            print(f"{run_dir} is COMPLETED; nothing to do", flush=True)
            return 0
        print(
            f"{run_dir} was COMPLETED at iteration {done}; training.train_iters is now {plan.train_iters}: "
            f"continuing for {plan.train_iters - done} more iterations",
            flush=True,
        )
    prepared = _prepare(recipe, plan)
    info = init_distributed()
    try:
        return Trainer(recipe, prepared, info).run()
    finally:
        destroy()


def _prepare(recipe, plan) -> Prepared:
    from cptkit.mix.resolve import resolve_file
    from cptkit.mix.settings import check_tokenization
    from cptkit.train.data import check_split
    from cptkit.train.resume import check_compatible, find_resume_point, tokenizer_sha256
    from cptkit.train.setup import check_cpu_settings, model_config_for
    from cptkit.train.tp_overlap import check_settings as check_tp_overlap_settings

    check_cpu_settings(recipe)
    check_tp_overlap_settings(recipe)
    cfg = model_config_for(recipe)
    blend = resolve_file(recipe.data.mixture)
    check_tokenization(recipe.data.mixture, blend, model_vocab_size=cfg.vocab_size)
    check_split(recipe, blend)
    point = find_resume_point(recipe)
    tok = tokenizer_sha256(blend)
    if point is None or not point.saved:
        return Prepared(plan, cfg, blend, point, tokenizer_sha256=tok)
    keep, notes = check_compatible(recipe, point.saved, blend, point.directory, plan.train_iters)
    return Prepared(plan, cfg, blend, point, keep, tuple(notes), tok)
