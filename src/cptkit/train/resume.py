"""Where a run resumes from, and whether it may (checked before torch.distributed starts; every rank decides alike).

- The `latest` pointer names the checkpoint, unless `cptkit train --resume-from ITER` (= `checkpoint.resume_from`)
  chooses one. A resume_from that an earlier job of the chain already applied (the pointer's checkpoint records that
  its life started there or later) is not applied again, so a requeued job continues instead of going back.
- A checkpoints directory with `iter_*` folders but no pointer is refused (starting over would train from the base
  weights over them, and retention would then delete them); the error gives the command that rebuilds the pointer.
- The checkpoint's small files (state, metadata) are verified here, its shards by every rank after start-up
  (`Checkpointer.verify`): a damaged checkpoint is never used and never silently replaced by an older one.
- What gives consumed samples their meaning must not change: sequence length, data split and seed (they define
  which sample index holds which tokens), the tokenizer, and the mixture (unless `data.allow_mixture_change`).
  A global-batch-size change is allowed: the data position is a sample count, carried over as megatron-core does,
  and the LR schedule keeps the checkpoint's sample counts. A finished run whose train_iters is raised continues
  (after its finished decay, unless the schedule is re-planned with schedule.override_on_resume).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cptkit.errors import UserError
from cptkit.model.integrity import (
    LATEST,
    MANIFEST,
    CheckpointDamaged,
    find_damage,
    iter_dir_name,
    list_iterations,
    read_pointer,
)
from cptkit.train.checkpoint import read_state


@dataclass
class ResumePoint:
    iteration: int
    directory: Path
    told: bool  # chosen with --resume-from / checkpoint.resume_from rather than by the pointer
    saved: dict[str, Any] = field(default_factory=dict)  # its cptkit_state.json ({} while damage is known)
    damage: str | None = None


def _cmd_hint(recipe) -> str:
    return f"cptkit status {recipe.run_dir} --rebuild-pointer"


def find_resume_point(recipe) -> ResumePoint | None:
    """The checkpoint this run continues from, or None for a fresh start (refusing the unsafe cases)."""
    ckpt_dir = Path(recipe.checkpoint_dir)
    iterations = list_iterations(ckpt_dir) if ckpt_dir.is_dir() else []
    pointer = read_pointer(ckpt_dir) if ckpt_dir.is_dir() else None
    wanted = recipe.checkpoint.resume_from
    if wanted is not None and pointer is not None and pointer > wanted and _applied(ckpt_dir, pointer, wanted):
        print(
            f"note: checkpoint.resume_from={wanted} was applied by an earlier job; {iter_dir_name(pointer)} continues "
            "from it, so this job resumes from the latest pointer",
            flush=True,
        )
        wanted = None
    if wanted is not None:
        if wanted not in iterations:
            have = ", ".join(map(str, iterations)) or "none"
            raise UserError(
                f"no checkpoint {iter_dir_name(wanted)} in {ckpt_dir} (have: {have})",
                file=recipe.file_of("checkpoint.resume_from") or "command line",
                field="checkpoint.resume_from",
            )
        target, told = wanted, True
        newer = [i for i in iterations if i > wanted]
        if newer:
            print(
                f"note: resuming from {iter_dir_name(wanted)} as told; the newer checkpoints {newer} are kept until "
                "this run saves the same iteration again (retention never deletes them)",
                flush=True,
            )
    elif pointer is None:
        if iterations:
            raise UserError(
                f"{ckpt_dir} holds checkpoints {iterations} but no {LATEST}; refusing to start over them. Rebuild the "
                f"pointer with `{_cmd_hint(recipe)}` (newest intact checkpoint), choose one with "
                "`cptkit train RECIPE --resume-from ITER`, or use a new run_dir",
                file=str(ckpt_dir),
            )
        return None
    else:
        target, told = pointer, False
        if target not in iterations:
            raise UserError(
                f"{LATEST} names iteration {pointer} but {iter_dir_name(pointer)}/ is missing; rebuild the pointer "
                f"with `{_cmd_hint(recipe)}` or choose a checkpoint with --resume-from ITER",
                file=str(ckpt_dir / LATEST),
            )
    point = ResumePoint(target, ckpt_dir / iter_dir_name(target), told)
    point.damage = find_damage(point.directory, small_only=True, require_manifest=False)
    if point.damage is None:
        point.saved = read_state(point.directory)
    return point


def _applied(ckpt_dir: Path, pointer: int, wanted: int) -> bool:
    try:
        started = read_state(ckpt_dir / iter_dir_name(pointer)).get("resumed_from")
    except UserError:
        return False
    return started is not None and started >= wanted


def damaged_error(point: ResumePoint, older: int | None) -> CheckpointDamaged:
    """The refusal for a damaged checkpoint, with the choice spelled out (`older`: the newest intact one before it)."""
    what = "the checkpoint chosen with resume_from" if point.told else f"the latest checkpoint ({LATEST})"
    if older is not None:
        choice = (
            f"to continue from the newest intact one, run `cptkit train RECIPE --resume-from {older}` (or set "
            f"checkpoint.resume_from: {older}); or start a new run_dir"
        )
    else:
        choice = "no earlier checkpoint is intact: start a new run_dir (model.init_checkpoint for the base weights)"
    return CheckpointDamaged(
        f"{what} is damaged and will not be used: {point.damage}; {choice}", file=str(point.directory)
    )


def tokenizer_sha256(blend) -> str | None:
    """sha256 of the mixture's tokenizer file (what `cptkit tokenize` records in every manifest), None if it cannot
    be found here (then only the mixture fingerprint guards the data)."""
    from cptkit.tokenize.tokenizers import ALIASES, resolve_tokenizer_file, sha256_file

    spec = blend.tokenizer
    if spec not in ALIASES and not Path(spec).expanduser().is_absolute() and blend.mixture_file:
        spec = str(Path(blend.mixture_file).parent / spec)
    try:
        return sha256_file(resolve_tokenizer_file(spec))
    except (UserError, OSError):
        return None


def check_compatible(recipe, saved: dict[str, Any], blend, resume_dir: Path, plan_iters: int) -> tuple[bool, list[str]]:
    """Refuse a resume that changes what the consumed samples mean. Returns (keep the checkpoint's LR schedule,
    notes) for the changes that are handled: a new global batch size, more iterations for a finished run."""
    t = recipe.training
    mixture = saved.get("mixture", {})
    old_tok, new_tok = mixture.get("tokenizer_sha256"), tokenizer_sha256(blend)
    if old_tok and new_tok and old_tok != new_tok:
        raise UserError(
            f"the checkpoint trained on data tokenized with {mixture.get('tokenizer')!r} (sha256 {old_tok[:12]}), the "
            f"mixture's tokenizer {blend.tokenizer!r} is another one (sha256 {new_tok[:12]}): the same token ids "
            "would mean different text; start a new run_dir",
            file=recipe.file_of("data.mixture"),
            field="data.mixture",
        )
    if mixture and mixture.get("fingerprint") != blend.fingerprint:
        if not recipe.data.allow_mixture_change:
            raise UserError(
                f"the mixture changed since {resume_dir} (fingerprint {mixture['fingerprint'][:12]} -> "
                f"{blend.fingerprint[:12]}); resuming would silently change the data. Pass "
                "data.allow_mixture_change=true to continue on the new mixture, or start a new run_dir",
                file=recipe.file_of("data.mixture"),
                field="data.mixture",
            )
        print("WARNING: resuming on a changed mixture (data.allow_mixture_change=true)", file=sys.stderr)
    seq = saved.get("seq_length")
    if seq is None and saved.get("consumed_samples"):  # checkpoints before seq_length was recorded
        seq = saved["consumed_tokens"] // saved["consumed_samples"]
    data = saved.get("data", {})
    for key, old, new in (
        ("training.seq_length", seq, t.seq_length),
        ("data.split", data.get("split"), recipe.data.split),
        ("training.seed", data.get("seed"), t.seed),
    ):
        if old is not None and old != new:
            raise UserError(
                f"the checkpoint consumed {saved.get('consumed_samples', 0):,} samples with {key}={old!r}; with "
                f"{new!r} the same sample count would name different data (consumed tokens and the data position "
                f"would be wrong). Restore {key}={old!r}, or start a new run_dir with "
                f"model.init_checkpoint={resume_dir} to keep the weights",
                file=recipe.file_of(key) or recipe.source_file,
                field=key,
            )
    return _schedule_notes(recipe, saved, plan_iters)


def _schedule_notes(recipe, saved: dict[str, Any], plan_iters: int) -> tuple[bool, list[str]]:
    """(keep the checkpoint's sample-counted LR schedule, notes to print) for the two changes that are allowed."""
    t, notes, keep = recipe.training, [], False
    old_gbs = saved.get("global_batch_size")
    if old_gbs is not None and old_gbs != t.global_batch_size:
        keep = True
        notes.append(
            f"global batch size {old_gbs} -> {t.global_batch_size} at iteration {saved['iteration']}: the "
            f"{saved['consumed_samples']:,} consumed samples carry over (the data continues where it stopped) and "
            "the LR schedule keeps the checkpoint's sample counts, as megatron-core does"
        )
    finished = saved.get("train_iters") is not None and saved["iteration"] >= saved["train_iters"]
    if finished and plan_iters > saved["iteration"]:
        follows = recipe.schedule.lr_decay_iters is None and not recipe.schedule.override_on_resume
        keep = keep or follows
        notes.append(
            f"the run finished at iteration {saved['iteration']}; training.train_iters is now {plan_iters}: "
            + (
                "continuing after the finished LR decay (the LR stays at optimizer.min_lr; "
                "schedule.override_on_resume=true re-plans the decay over the new length instead)"
                if follows
                else "continuing on the recipe's schedule"
            )
        )
    if notes:
        notes.append(
            "the sample index is rebuilt for the new number of samples: megatron-core keeps the order of the consumed "
            "samples while no source needs more epochs than before, and reshuffles otherwise (as Megatron-LM does)"
        )
    return keep, notes


__all__ = ["MANIFEST", "ResumePoint", "check_compatible", "damaged_error", "find_resume_point"]
