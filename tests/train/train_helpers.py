"""Helpers for the trainer tests: tiny tokenized data, a mixture over it, and a tiny recipe.

The data is learnable (each document follows a fixed pseudo-random successor table with a little noise), so the loss
of a 2-layer model visibly falls within 30 iterations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
VOCAB = 512


def write_prefix(prefix: Path, seed: int, documents: int = 120, mean_len: int = 150) -> None:
    """A Megatron indexed dataset (.bin/.idx) written with megatron-core's own IndexedDatasetBuilder."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(seed)
    successor = np.random.default_rng(0).permutation(VOCAB - 2) + 1  # shared by all sources: one "language"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
    for _ in range(documents):
        n = int(rng.integers(mean_len // 2, mean_len * 2))
        doc = np.empty(n, dtype=np.int64)
        doc[0] = rng.integers(1, VOCAB - 1)
        for i in range(1, n):
            doc[i] = successor[doc[i - 1] - 1] if rng.random() > 0.1 else rng.integers(1, VOCAB - 1)
        doc[-1] = VOCAB - 1  # end of document
        builder.add_document(torch.from_numpy(doc), [n])
    builder.finalize(f"{prefix}.idx")


def write_tokenizer(path: Path, vocab: int = VOCAB) -> Path:
    """A word-level tokenizer.json of `vocab` ids, the last one `</s>` (EOD): the vocabulary the tiny data uses.

    The trainer holds a mixture's prefixes to its declared tokenizer (cptkit.mix.settings), so the tests declare this
    one, not Llama-3's 128,256 ids.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({**{f"t{i}": i for i in range(vocab - 1)}, "</s>": vocab - 1}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(path))
    return path


def write_mixture(path: Path, prefixes: dict[str, Path], tokens: dict[str, str]) -> Path:
    tokenizer = write_tokenizer(path.parent / "tokenizer.json")
    lines = ["name: testmix", f"tokenizer: {tokenizer}", "sources:"]
    for name, prefix in prefixes.items():
        lines += [f"  - name: {name}", f"    tokens: {tokens[name]}", f"    prefix: {prefix}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_recipe(path: Path, mixture: Path, run_dir: Path, extra: str = "") -> Path:
    """`extra`: more `logging:` lines; one setting `tensorboard:` replaces the default (a key given twice is an error)."""
    tensorboard = "" if "tensorboard:" in extra else "  tensorboard: false\n"
    path.write_text(
        f"""inherit: {REPO}/recipes/tiny_cpu.yaml
name: {path.stem}
run_dir: {run_dir}
model:
  config:
    architecture: llama
    num_layers: 2
    hidden_size: 64
    ffn_hidden_size: 176
    num_attention_heads: 4
    num_query_groups: 2
    kv_channels: 16
    vocab_size: {VOCAB}
    padded_vocab_size: {VOCAB}
    max_position_embeddings: 256
    rotary_base: 500000
    rope_scaling: {{rope_type: llama3, factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 64}}
    norm_epsilon: 1.0e-5
data:
  mixture: {mixture}
logging:
{tensorboard}{extra}"""
    )
    return path


def make_hf_llama(out: Path, seed: int = 0) -> Path:
    """A tiny random Llama-3.1-style HF model with the shape of `write_recipe`'s model (vocab 512)."""
    import torch
    import transformers

    config = transformers.LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=176,
        vocab_size=VOCAB,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        initializer_range=0.1,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        bos_token_id=1,
        eos_token_id=VOCAB - 1,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(out)
    return out


def cptkit_train(recipe: Path, *overrides: str, wait: bool = True):
    """`cptkit train RECIPE OVERRIDES...` in its own session, so a kill takes the whole job (checkpoint writer
    processes too), as a scheduler does. `wait=False` returns the Popen; otherwise (returncode, stdout, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "cptkit.cli", "train", str(recipe), *overrides]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    if not wait:
        return proc
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def losses(run_dir: Path) -> dict[int, dict]:
    """The last record of every iteration (a resumed run appends the iterations it repeats)."""
    out = {}
    for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["iteration"]] = rec
    return out
