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


# A two-stage CPU curation pipeline (syntax, then the exp-4 language filter) over tiny records in two input files, for
# the `cptkit launch curate` array-job tests; ids say what each record must become.
CURATE_RECORDS = [
    {"id": "keep-0", "text": "# add two numbers\ndef add(a, b):\n    return a + b\n"},
    {"id": "keep-1", "text": "x = '日本語のコメント'  # ja\n"},
    {"id": "keep-2", "text": "print('hello')\n"},
    {"id": "syntax-0", "text": "print 'python 2'\n"},
    {"id": "syntax-1", "text": "def f(:\n    pass\n"},
    {"id": "language-0", "text": "# сложить два числа\ndef add(a, b):\n    return a + b\n"},
]


def write_curate_pipeline(root: Path, num_inputs: int = 2) -> Path:
    """Input files root/in/partK.jsonl, output root/out, statistics without a tokenizer (nothing to load)."""
    (root / "in").mkdir(parents=True, exist_ok=True)
    for k in range(num_inputs):
        rows = CURATE_RECORDS[k::num_inputs]
        (root / "in" / f"part{k}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    pipe = root / "pipe.yaml"
    pipe.write_text(
        f'name: launchcurate\ninput: {{paths: ["{root}/in/*.jsonl"]}}\noutput: {root}/out\ntasks: {num_inputs}\n'
        "stats: {tokenizer: null}\nstages:\n  - kind: syntax\n  - kind: language\n"
    )
    return pipe


def curate_output_problems(out: Path) -> list[str]:
    """What is wrong with a finished curation output of CURATE_RECORDS (empty: complete and right): every record kept
    or rejected exactly once, by the right stage, and the statistics written and adding up."""
    import gzip

    def rows(folder: Path) -> list[dict]:
        got = []
        for p in sorted(folder.rglob("*.jsonl.gz")):
            with gzip.open(p, "rt", encoding="utf-8") as f:
                got += [json.loads(line) for line in f]
        return got

    problems = []
    kept, rejected = rows(out / "data"), rows(out / "rejected")
    seen = sorted(r["id"] for r in kept + rejected)
    if seen != sorted(r["id"] for r in CURATE_RECORDS):
        problems.append(f"records kept + rejected {seen} are not each input record once")
    problems += [f"{r['id']} kept" for r in kept if not r["id"].startswith("keep")]
    problems += [f"{r['id']} dropped by {r.get('dropped_by')}" for r in rejected if r.get("dropped_by") != r["id"][:-2]]
    stats_file = out / "curate_stats.json"
    if not stats_file.exists():
        return [*problems, "no curate_stats.json"]
    syntax, language = json.loads(stats_file.read_text())["stages"]
    if syntax["counts"].get("records_in") != len(CURATE_RECORDS):
        problems.append(f"statistics: syntax saw {syntax['counts'].get('records_in')} records")
    if language["counts"].get("records_out") != 3:
        problems.append(f"statistics: language kept {language['counts'].get('records_out')} records")
    return problems
