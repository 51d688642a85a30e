"""What `cptkit eval` scores: one HF folder, or every saved iteration of a run directory.

A run directory (see docs/architecture.md) holds `checkpoints/iter_NNNNNNN/` megatron-core checkpoints; an iteration
counts as saved when `checkpoints/latest_checkpointed_iteration.txt` (written after a save completes) is at least
that iteration, so a save still in progress is never evaluated. Each saved iteration is converted once with
`cptkit convert mcore-to-hf` into `RUN_DIR/hf/iter_NNNNNNN/` (a temporary name, renamed when complete) and its results
go to `RUN_DIR/eval/iter_NNNNNNN/SUITE.json`. Tokens trained come from the checkpoint's `cptkit_state.json`, else
from `logs/metrics.jsonl`.

Try it on a CPU machine:  cptkit eval RUN_DIR --suite quick --dry-run
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cptkit.errors import UserError

_ITER_DIR = re.compile(r"^iter_(\d{7,})$")


@dataclass
class Target:
    """One model to score and where its results go."""

    name: str
    output: Path
    hf_dir: Path | None  # None until a run-dir checkpoint is converted
    iteration: int | None = None
    checkpoint: Path | None = None
    consumed_tokens: int | None = None

    @property
    def done(self) -> bool:
        return self.output.is_file()

    def stale_reason(self, suite_sha256: str, limit: int | None) -> str | None:
        """Why existing results do not count as done for this request (None: they do).

        A `--limit` smoke run must not stand in for the full evaluation, nor results of edited suite tasks (editing
        comments or the `report:` layout changes no score and keeps them).
        """
        try:
            previous = json.loads(self.output.read_text())
        except (OSError, json.JSONDecodeError):
            return "unreadable previous results"
        if previous.get("limit") != limit:
            return f"previous results used --limit {previous.get('limit')}"
        if previous.get("suite_sha256") != suite_sha256:
            return "the suite's tasks changed since (its name, templates, shots, metrics, limits or overrides)"
        return None


def iter_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def is_run_dir(path: Path) -> bool:
    return (path / "checkpoints").is_dir()


def is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def saved_iterations(run_dir: Path) -> list[int]:
    """Iterations with a completed save, ascending."""
    ckpts = run_dir / "checkpoints"
    latest_file = ckpts / "latest_checkpointed_iteration.txt"
    if not latest_file.is_file():
        return []
    text = latest_file.read_text().strip()
    if not text.isdigit():
        raise UserError(f"expected an iteration number, got {text[:40]!r}", file=str(latest_file))
    latest = int(text)
    found = []
    for child in ckpts.iterdir():
        m = _ITER_DIR.match(child.name)
        if m and child.is_dir() and int(m.group(1)) <= latest:
            found.append(int(m.group(1)))
    return sorted(found)


def consumed_tokens(run_dir: Path, iteration: int) -> int | None:
    state = run_dir / "checkpoints" / iter_name(iteration) / "cptkit_state.json"
    if state.is_file():
        try:
            value = json.loads(state.read_text()).get("consumed_tokens")
            if isinstance(value, int):
                return value
        except (json.JSONDecodeError, AttributeError):
            pass
    metrics = run_dir / "logs" / "metrics.jsonl"
    best = None
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if not isinstance(row, dict) or row.get("iteration") is None or row.get("consumed_tokens") is None:
                continue
            if row["iteration"] <= iteration:
                best = int(row["consumed_tokens"])
    return best


def targets_for(path: Path, suite: str, *, output: Path | None, iteration_index: int | None) -> list[Target]:
    path = path.resolve()
    if is_run_dir(path):
        iterations = saved_iterations(path)
        if iteration_index is not None:
            if not 0 <= iteration_index < len(iterations):
                raise UserError(
                    f"no saved iteration at index {iteration_index}: {path} has {len(iterations)} "
                    f"({', '.join(map(str, iterations)) or 'none yet'})",
                    field="--iteration-index",
                )
            iterations = [iterations[iteration_index]]
        eval_root = output or path / "eval"
        targets = []
        for it in iterations:
            hf = path / "hf" / iter_name(it)
            targets.append(
                Target(
                    name=f"{path.name}/{iter_name(it)}",
                    output=eval_root / iter_name(it) / f"{suite}.json",
                    hf_dir=hf if is_hf_dir(hf) else None,
                    iteration=it,
                    checkpoint=path / "checkpoints" / iter_name(it),
                    consumed_tokens=consumed_tokens(path, it),
                )
            )
        return targets
    if is_hf_dir(path):
        if iteration_index is not None:
            raise UserError("--iteration-index needs a run directory, got an HF folder", field="--iteration-index")
        out = output if output is not None and output.suffix == ".json" else (output or path / "eval") / f"{suite}.json"
        return [Target(name=path.name, output=out, hf_dir=path)]
    raise UserError(
        f"{path} is neither an HF model folder (config.json) nor a run directory (checkpoints/)", field="TARGET"
    )


def convert(target: Target) -> Path:
    """Convert a run-dir checkpoint to HF with `cptkit convert mcore-to-hf`, in its own process (frees its memory)."""
    assert target.checkpoint is not None
    final = target.checkpoint.parent.parent / "hf" / target.checkpoint.name
    if is_hf_dir(final):
        return final
    from cptkit.model.integrity import verify_checkpoint

    verify_checkpoint(target.checkpoint)  # a damaged checkpoint is named before any conversion starts
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "cptkit.cli", "convert", "mcore-to-hf", str(target.checkpoint), str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not is_hf_dir(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"converting {target.checkpoint} failed ({' '.join(cmd[2:])}): {tail[0]}")
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    return final
