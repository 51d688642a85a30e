"""`cptkit convert verify`: run the HF model and the megatron-core model on the same token ids, compare logits.

The HF model runs in this process (fp32, eager attention). The megatron-core model is built from the checkpoint's
`cptkit_model.json` with cptkit's builder, loaded with `dist_checkpointing` at the requested TP (so resharding is
exercised), and run in TP spawned gloo processes on CPU. Reported: max and mean absolute logit difference and top-1
agreement over every position; the check passes when the max difference is within `tolerance`.

Both models are held in fp32, so this is for small and medium models on CPU (tests use 2-layer ones); for 8B run it
on a node with ~80 GB of RAM.

It works on any checkpoint cptkit writes: `hf-to-mcore` output, a training run's `iter_N` (saved at any TP/PP, with
optimizer state; only the model is read) or a RUN_DIR (its latest checkpoint). The checkpoint's checksums
(`cptkit_checksums.json`) are verified first.

On CPU:  cptkit convert verify ./tiny-llama-hf ./tiny-llama-mcore --tp 2
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cptkit.convert.layout import check_tp
from cptkit.errors import UserError
from cptkit.model.config import ModelConfig


@dataclass(frozen=True)
class VerifyResult:
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    positions: int
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        return (
            f"{verdict}: max |dlogit| {self.max_abs_diff:.3g} (tolerance {self.tolerance:g}), "
            f"mean {self.mean_abs_diff:.3g}, top-1 agreement {self.top1_agreement:.2%} over {self.positions} positions"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def compare_logits(a: torch.Tensor, b: torch.Tensor, tolerance: float) -> VerifyResult:
    diff = (a.double() - b.double()).abs()
    agree = (a.argmax(-1) == b.argmax(-1)).double().mean().item()
    return VerifyResult(diff.max().item(), diff.mean().item(), agree, a.shape[0] * a.shape[1], tolerance)


def sample_tokens(vocab_size: int, batch: int, seq_len: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, seq_len), generator=g)


def hf_logits(hf_dir: str | Path, tokens: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        return model(tokens).logits.float()


def canonical_sharded_state_dict(model, ckpt_keys: set[str] | None = None, spec=None) -> dict[str, Any]:
    """`model.sharded_state_dict()` with megatron's per-spec key names mapped to cptkit's canonical ones
    (`cptkit.model.keys`: e.g. the local spec's `linear_qkv.layer_norm_weight` → `input_layernorm.weight`), or to
    whichever name a given checkpoint uses when `ckpt_keys` is passed. `spec=None` leaves megatron's names."""
    from cptkit.model.keys import canonical_key, te_key

    sd = model.sharded_state_dict()
    if spec is None:
        return sd
    for value in sd.values():
        key = getattr(value, "key", None)
        if key is None:
            continue
        target = canonical_key(key)
        if ckpt_keys is not None and target not in ckpt_keys and te_key(target) in ckpt_keys:
            target = te_key(target)
        value.key = target
    return sd


def _mcore_worker(
    rank: int, world: int, ckpt_dirs: list[str], tokens: torch.Tensor, resave_dir: str | None = None, round_to=None
):
    """One TP rank: for each checkpoint, build the model, load it at this TP and return its logits (rank 0);
    optionally re-save the first one at this TP, as the trainer would."""
    return [
        _load_and_run(rank, world, d, tokens, resave_dir if i == 0 else None, round_to) for i, d in enumerate(ckpt_dirs)
    ]


def _load_and_run(rank: int, world: int, ckpt_dir: str, tokens: torch.Tensor, resave_dir: str | None, round_to=None):
    from megatron.core import dist_checkpointing

    from cptkit.backend.dist import initialize_model_parallel
    from cptkit.model.build import build_gpt_model, forward_logits, transformer_config
    from cptkit.model.keys import canonical_model_state, checkpoint_naming, load_model_state

    initialize_model_parallel(tp=world, pp=1)
    cfg = ModelConfig.load(ckpt_dir)
    model = build_gpt_model(cfg, transformer_config(cfg, tensor_model_parallel_size=world))
    # The same request the trainer makes: canonical (or TE-style) names, no `_extra_state` (a training checkpoint
    # has none), so any checkpoint cptkit writes loads — hf-to-mcore output, a run's iter_N, any TP/PP.
    sd, back = canonical_model_state(model, checkpoint_naming(ckpt_dir))
    state = dist_checkpointing.load({"model": sd}, ckpt_dir)
    load_model_state(model, state["model"], back)
    if round_to is not None:  # what an export in this dtype holds: compare like with like, in fp32
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(round_to).float())
    if resave_dir is not None:  # what the trainer does: save this TP layout with canonical keys
        Path(resave_dir).mkdir(parents=True, exist_ok=True)
        dist_checkpointing.save({"model": canonical_model_state(model)[0]}, resave_dir)
        if rank == 0:
            cfg.save(resave_dir)
    logits = forward_logits(model, tokens, vocab_size=cfg.vocab_size)
    # numpy, not a tensor: torch would pass a shared-memory handle that dies with this process
    return logits.numpy() if rank == 0 else None


def mcore_logits(
    ckpt_dirs: list[str | Path],
    tokens: torch.Tensor,
    tp: int = 1,
    resave_dir: str | Path | None = None,
    round_to: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """Logits of each checkpoint at TP=`tp`, computed in `tp` spawned gloo processes (one spawn for all); with
    `round_to`, the weights are first rounded to that dtype (as an export in it holds them), the math stays fp32."""
    from cptkit.backend.spawn import run_spawned

    resave = str(resave_dir) if resave_dir is not None else None
    out = run_spawned(_mcore_worker, tp, [str(d) for d in ckpt_dirs], tokens, resave, round_to)[0]
    return [torch.from_numpy(a) for a in out]


def verify(
    hf_dir: str | Path,
    mcore_dir: str | Path,
    *,
    tp: int = 1,
    seq_len: int = 256,
    batch: int = 2,
    seed: int = 0,
    tolerance: float = 1e-4,
    dry_run: bool = False,
    round_to: torch.dtype | None = None,
    check_files: bool = True,
    log=print,
) -> VerifyResult | None:
    """Compare an HF folder's logits with a megatron-core checkpoint's (first verifying the checkpoint's checksums).
    `round_to`: the dtype the HF folder was exported in (`convert mcore-to-hf` checks its own output this way)."""
    from cptkit.convert.hf_checkpoint import read_config
    from cptkit.convert.mcore_to_hf import resolve_checkpoint
    from cptkit.model.integrity import verify_checkpoint

    ckpt = resolve_checkpoint(mcore_dir)
    if check_files:
        verify_checkpoint(ckpt, log=log)
    cfg = ModelConfig.load(ckpt)
    hf_vocab = read_config(Path(hf_dir)).get("vocab_size")
    if hf_vocab != cfg.vocab_size:
        raise UserError(
            f"vocab_size {hf_vocab} differs from the checkpoint's {cfg.vocab_size}", file=f"{hf_dir}/config.json"
        )
    problems = check_tp(cfg, tp)
    if problems:
        raise UserError(f"--tp {tp} does not divide {', '.join(problems)}", file=str(ckpt / "cptkit_model.json"))
    if seq_len > cfg.max_position_embeddings:
        raise UserError(f"--seq-len {seq_len} exceeds max_position_embeddings {cfg.max_position_embeddings}")
    log(f"verify: {hf_dir} vs {ckpt} at TP={tp}: {batch} x {seq_len} random token ids (seed {seed}), fp32")
    if dry_run:
        return None
    tokens = sample_tokens(cfg.vocab_size, batch, seq_len, seed)
    reference = hf_logits(hf_dir, tokens)
    ours = mcore_logits([ckpt], tokens, tp, round_to=round_to)[0]
    result = compare_logits(reference, ours, tolerance)
    log(result.summary())
    return result
