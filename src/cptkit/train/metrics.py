"""Training metrics: console, `logs/metrics.jsonl`, `logs/validation.jsonl`, TensorBoard and wandb (offline works).

Only the logging rank (global rank 0) writes. Throughput is measured over the iterations since the last log:
tokens/s per GPU, model TFLOP/s per GPU (Llama model FLOPs as Megatron-LM counts them, `plan.flops_per_iteration`)
and MFU against `logging.peak_tflops_per_gpu`. Loss spikes (loss above `logging.loss_spike_factor` × the mean of the
last 20 logged losses) and non-finite losses are reported as warnings on the console and in the JSON line.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

SPIKE_WINDOW = 20


class MetricsLogger:
    def __init__(self, recipe, run_dir: Path, *, enabled: bool, flops_per_iteration: float, world_size: int):
        self.recipe = recipe
        self.enabled = enabled
        self.flops_per_iteration = flops_per_iteration
        self.world_size = world_size
        self.peak = recipe.logging.peak_tflops_per_gpu
        self.recent: deque[float] = deque(maxlen=SPIKE_WINDOW)
        self.tb = None
        self.wandb = None
        self._last_time = time.perf_counter()
        self._iters_since = 0
        if not enabled:
            return
        logs = run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.metrics_file = open(logs / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (open for the run)
        self.valid_file = open(logs / "validation.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        if recipe.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if recipe.logging.wandb_project:
            import wandb

            from cptkit.train.recipe import recipe_to_dict

            self.wandb = wandb.init(
                project=recipe.logging.wandb_project,
                entity=recipe.logging.wandb_entity,
                name=recipe.name,
                id=_wandb_id(run_dir, recipe.name),
                resume="allow",
                dir=str(run_dir),
                mode=recipe.logging.wandb_mode,
                config=recipe_to_dict(recipe),
            )

    def mark_start(self) -> None:
        """Start the throughput clock (after set-up and checkpoint loading)."""
        self._last_time = time.perf_counter()
        self._iters_since = 0

    def pause(self) -> float:
        """Stop counting time (validation, checkpointing); returns the moment to resume from."""
        return time.perf_counter()

    def resume(self, paused_at: float) -> None:
        self._last_time += time.perf_counter() - paused_at

    def train_step(self, iteration: int, values: dict[str, float], *, log: bool) -> dict[str, Any] | None:
        """Record one iteration; on logging iterations write it everywhere. Returns the logged record."""
        self._iters_since += 1
        loss = values["loss"]
        warnings = []
        if not math.isfinite(loss):
            warnings.append(f"non-finite loss {loss} at iteration {iteration}: the optimizer step was skipped")
        elif len(self.recent) >= 5:
            mean = sum(self.recent) / len(self.recent)
            if loss > self.recent_factor() * mean:
                warnings.append(
                    f"loss spike at iteration {iteration}: {loss:.4f} is {loss / mean:.2f}x the mean of the last "
                    f"{len(self.recent)} logged ({mean:.4f})"
                )
        if math.isfinite(loss):
            self.recent.append(loss)
        if not (log or warnings) or not self.enabled:
            return None
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        per_iter = elapsed / max(self._iters_since, 1)
        self._last_time, self._iters_since = now, 0
        tokens_per_iter = self.recipe.training.global_batch_size * self.recipe.training.seq_length
        tflops = self.flops_per_iteration / per_iter / self.world_size / 1e12
        record = {
            "iteration": iteration,
            **values,
            "tokens_per_sec_per_gpu": tokens_per_iter / per_iter / self.world_size,
            "tflops_per_gpu": tflops,
            "mfu": tflops / self.peak,
            "seconds_per_iteration": per_iter,
            "time_unix": time.time(),
        }
        if warnings:
            record["warnings"] = warnings
        for w in warnings:
            print(f"WARNING: {w}", file=sys.stderr, flush=True)
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        print(
            f"iter {iteration:>7}/{values.get('train_iters', '?')} | loss {loss:.5f} | lm {values['lm_loss']:.5f} | "
            f"z {values['z_loss']:.2e} | grad norm {values['grad_norm']:.3f} | lr {values['lr']:.3e} | "
            f"tokens {values['consumed_tokens']:,} | {record['tokens_per_sec_per_gpu']:,.0f} tok/s/GPU | "
            f"{tflops:.2f} TFLOP/s/GPU | MFU {record['mfu'] * 100:.1f}% | {per_iter:.3f} s/it",
            flush=True,
        )
        scalars = {k: v for k, v in record.items() if isinstance(v, int | float) and k not in ("iteration",)}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"train/{k}", v, iteration)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log({f"train/{k}": v for k, v in scalars.items()}, step=iteration)
        return record

    def recent_factor(self) -> float:
        return self.recipe.logging.loss_spike_factor

    def validation(self, iteration: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"iteration": iteration, **values, "time_unix": time.time()}
        self.valid_file.write(json.dumps(record) + "\n")
        self.valid_file.flush()
        print(
            f"validation at iter {iteration} | lm loss {values['lm_loss']:.5f} | ppl {values['ppl']:.3f} "
            f"| {values['tokens']:,} tokens",
            flush=True,
        )
        if self.tb is not None:
            for k in ("lm_loss", "ppl"):
                self.tb.add_scalar(f"valid/{k}", values[k], iteration)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log({"valid/lm_loss": values["lm_loss"], "valid/ppl": values["ppl"]}, step=iteration)

    def close(self) -> None:
        if not self.enabled:
            return
        self.metrics_file.close()
        self.valid_file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _wandb_id(run_dir: Path, name: str) -> str:
    """One wandb run per run directory, kept across resumed jobs."""
    path = run_dir / "logs" / "wandb_id.txt"
    if path.is_file():
        return path.read_text().strip()
    import uuid

    from cptkit.util.atomic import write_text

    run_id = f"{name[:40]}-{uuid.uuid4().hex[:8]}"
    write_text(path, run_id + "\n")
    return run_id
