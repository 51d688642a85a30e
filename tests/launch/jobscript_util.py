"""Helpers to run rendered job scripts outside a scheduler: a recipe for the stand-in trainer, stub commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from launchtest_util import ROOT

FAKE = ROOT / "tests" / "launch" / "fake_cptkit.py"


def write_recipe(tmp: Path, run_dir: Path, **training) -> Path:
    t = {"train_iters": 30, **training}
    lines = "\n".join(f"  {k}: {v}" for k, v in t.items())
    path = tmp / "recipe.yaml"
    path.write_text(
        f"inherit: {ROOT / 'recipes' / 'tiny_cpu.yaml'}\nname: fake\nrun_dir: {run_dir}\ntraining:\n{lines}\n"
        "checkpoint:\n  interval_iters: 10\n"
    )
    return path


def stub(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / name).write_text("#!/bin/bash\n" + body)
    (bin_dir / name).chmod(0o755)


def cptkit_stub(bin_dir: Path) -> None:
    """`cptkit` on PATH that runs the stand-in trainer."""
    stub(bin_dir, "cptkit", f'exec {sys.executable} {FAKE} "$@"\n')


def uninterrupted_loss(tmp: Path, **training) -> float:
    run = tmp / "reference"
    (tmp / "ref").mkdir(exist_ok=True)
    recipe = write_recipe(tmp / "ref", run, **training)
    env = {**os.environ, "FAKE_SECONDS_PER_ITER": "0"}
    subprocess.run([sys.executable, str(FAKE), "train", str(recipe)], check=True, env=env, capture_output=True)
    return json.loads((run / "COMPLETED").read_text())["loss"]


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    latest = run_dir / "checkpoints" / "latest_checkpointed_iteration.txt"
    deadline = time.monotonic() + timeout
    while not latest.exists():
        assert proc.poll() is None, f"job ended before its first checkpoint: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.1)


def times_started(run_dir: Path) -> int:
    """How often the run logged iteration 1: more than once means a job restarted from scratch instead of resuming
    (which the stand-in's final loss alone would not show)."""
    lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return sum(json.loads(line)["iteration"] == 1 for line in lines)


def write_tiny_training(root: Path, run_dir: Path, train_iters: int = 30) -> Path:
    """Tiny tokenized data (megatron-core's IndexedDatasetBuilder), a mixture over it, and a recipe for the real
    trainer: recipes/tiny_cpu.yaml with a 512-token vocabulary. Returns the recipe path."""
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    vocab = 512
    root.mkdir(parents=True, exist_ok=True)
    sources = []
    for seed, name in enumerate(("code", "text"), start=1):
        prefix = root / f"{name}_text_document"
        if not prefix.with_suffix(".idx").exists():
            rng = np.random.default_rng(seed)
            builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
            for _ in range(120):
                doc = rng.integers(1, vocab - 1, size=int(rng.integers(75, 300)))
                builder.add_document(torch.from_numpy(doc), [len(doc)])
            builder.finalize(f"{prefix}.idx")
        sources.append(f"  - name: {name}\n    tokens: {'16k' if name == 'code' else '84k'}\n    prefix: {prefix}")
    mixture = root / "mix.yaml"
    # The declared tokenizer must be the data's 512-id vocabulary (the trainer checks it): a word-level one.
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({**{f"t{i}": i for i in range(vocab - 1)}, "</s>": vocab - 1}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(root / "tokenizer.json"))
    mixture.write_text(f"name: launchmix\ntokenizer: {root / 'tokenizer.json'}\nsources:\n" + "\n".join(sources) + "\n")
    recipe = root / f"{run_dir.name}.yaml"
    recipe.write_text(
        f"inherit: {ROOT / 'recipes' / 'tiny_cpu.yaml'}\nname: {run_dir.name}\nrun_dir: {run_dir}\n"
        "model:\n  config:\n    architecture: llama\n    num_layers: 2\n    hidden_size: 64\n    ffn_hidden_size: 176\n"
        "    num_attention_heads: 4\n    num_query_groups: 2\n    kv_channels: 16\n"
        f"    vocab_size: {vocab}\n    padded_vocab_size: {vocab}\n    max_position_embeddings: 256\n"
        "    rotary_base: 500000\n    norm_epsilon: 1.0e-5\n"
        f"data:\n  mixture: {mixture}\ntraining:\n  train_iters: {train_iters}\nlogging:\n  tensorboard: false\n"
    )
    return recipe


def last_loss(run_dir: Path) -> float:
    """The loss of the run's last iteration (a resumed run appends the iterations it repeats; the last record wins)."""
    records = {}
    for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        records[rec["iteration"]] = rec
    return records[max(records)]["loss"]
