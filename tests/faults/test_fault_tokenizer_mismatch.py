"""Fault #12.5: a mixture's `tokenizer:` was never checked against its prefixes.

Reproduced as a user met it, through the real `cptkit` commands:
  - data from another vocabulary trained on a 128,256-id model with exit 0 -> `cptkit train` and `mix check` exit 2,
    naming the prefix;
  - a uint16 `.idx` without manifest mixed with int32 Llama-3 data -> refused, naming the uint16 prefix;
  - a nonexistent tokenizer path resolved like `llama3` -> an error naming the `tokenizer` field.
Each case also shows the honest input passes, so the check is not blind.

Run on CPU: `.venv/bin/pytest tests/faults/test_fault_tokenizer_mismatch.py -q`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cptkit.errors import UserError
from cptkit.mix import resolve_file
from cptkit.mix.settings import check_tokenization

REPO = Path(__file__).resolve().parents[2]
DOCS = ["The quick brown fox jumps over the lazy dog.", "吾輩は猫である。名前はまだ無い。", "def f(x):\n    return x\n"]


def cptkit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cptkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def word_level_tokenizer(path: Path, vocab: int) -> Path:
    """Another vocabulary: `vocab` word ids (int32 data when >= 65,500, like Llama-3's), `</s>` last."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {w: i for i, w in enumerate(dict.fromkeys(" ".join(DOCS).split()))}
    words.update({f"w{i}": i for i in range(len(words), vocab - 1)})
    tok = Tokenizer(models.WordLevel({**words, "</s>": vocab - 1}, unk_token="w1000"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


@pytest.fixture
def workspace(tmp_path):
    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in DOCS * 20), encoding="utf-8")
    data = tmp_path / "data"
    r = cptkit(
        "tokenize", "--input", str(raw), "--output-prefix", str(data / "llama3_text_document"),
        "--tokenizer", "llama3", "--workers", "1", "--no-progress",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return tmp_path, raw, data


def mixture(tmp: Path, tokenizer: str, *prefixes: Path) -> Path:
    lines = ["name: fault", f"tokenizer: {tokenizer}", "sources:"]
    lines += [f"  - {{name: s{k}, tokens: 10k, prefix: {p}}}" for k, p in enumerate(prefixes)]
    path = tmp / "mix.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_data_of_another_vocabulary_is_refused_by_train_and_mix_check(workspace):
    tmp, raw, data = workspace
    other = data / "other_text_document"
    tok = word_level_tokenizer(tmp / "other" / "tokenizer.json", vocab=70_000)  # int32 too: only the vocabulary differs
    r = cptkit(
        "tokenize", "--input", str(raw), "--output-prefix", str(other), "--tokenizer", str(tok),
        "--workers", "1", "--no-progress",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert np.fromfile(f"{other}.bin", dtype=np.int32).max() < 70_000
    mix = mixture(tmp, "llama3", other)
    r = cptkit("mix", "check", str(mix), "--samples", "10", "--seq-length", "16")
    one_line_error(r, "other_text_document", "another vocabulary than the declared 'llama3'")
    # Mixed with Llama-3 data, the two manifests' vocabularies already disagree with each other.
    both = mixture(tmp, "llama3", data / "llama3_text_document", other)
    r = cptkit("mix", "check", str(both), "--samples", "10", "--seq-length", "16")
    one_line_error(r, "2 different tokenizers")
    mix = mixture(tmp, "llama3", other)

    recipe = tmp / "recipe.yaml"
    recipe.write_text(
        f"inherit: {REPO / 'recipes/tiny_cpu.yaml'}\nname: fault\nrun_dir: {tmp / 'run'}\ndata:\n  mixture: {mix}\n"
        "logging:\n  tensorboard: false\n",
        encoding="utf-8",
    )
    r = cptkit("train", str(recipe))
    one_line_error(r, "other_text_document", "another vocabulary")
    assert not (tmp / "run" / "checkpoints").exists()

    # Not blind: the Llama-3 prefix alone passes the same check the trainer runs.
    honest = mixture(tmp, "llama3", data / "llama3_text_document")
    check_tokenization(honest, resolve_file(honest), model_vocab_size=128256)


def test_uint16_prefix_without_manifest_does_not_mix_with_llama3_data(workspace):
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    tmp, _, data = workspace

    def megatron_prefix(prefix: Path, dtype) -> Path:  # as Megatron-LM's preprocess_data.py leaves it: no manifest
        builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
        for n in (40, 60, 80):
            builder.add_document(torch.arange(1, n + 1), [n])
        builder.finalize(f"{prefix}.idx")
        return prefix

    small = megatron_prefix(data / "small_vocab_text_document", np.uint16)
    mix = mixture(tmp, "llama3", data / "llama3_text_document", small)
    r = cptkit("mix", "check", str(mix), "--samples", "10", "--seq-length", "16")
    one_line_error(r, "small_vocab_text_document", "uint16", "int32")
    # Not blind: an int32 prefix without manifest (Megatron-LM or the fork made it) is accepted as declared.
    big = megatron_prefix(data / "fork_text_document", np.int32)
    ok = mixture(tmp, "llama3", data / "llama3_text_document", big)
    check_tokenization(ok, resolve_file(ok))


def test_a_nonexistent_tokenizer_path_is_an_error_not_llama3(workspace):
    tmp, _, data = workspace
    missing = tmp / "no" / "such" / "tokenizer"
    mix = mixture(tmp, str(missing), data / "llama3_text_document")
    r = cptkit("mix", "check", str(mix), "--samples", "10", "--seq-length", "16")
    one_line_error(r, "mix.yaml: tokenizer:", str(missing), "not found")
    with pytest.raises(UserError, match="tokenizer not found"):
        check_tokenization(mix, resolve_file(mix))
    # Not blind: the same mixture naming the real tokenizer passes.
    check_tokenization(mixture(tmp, "llama3", data / "llama3_text_document"), resolve_file(mix))
