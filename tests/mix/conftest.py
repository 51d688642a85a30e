"""Fixtures for the mixture layer: tiny Megatron indexed datasets written with megatron-core's own builder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def make_prefix(prefix: Path, doc_lengths: list[int], *, vocab: int = 1000, eod: int = 0, seed: int = 0) -> Path:
    """Write PREFIX.bin/.idx with megatron-core's IndexedDatasetBuilder: one document per length, ending in `eod`."""
    import torch
    from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder

    torch.set_num_threads(1)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=DType.optimal_dtype(vocab))
    for n in doc_lengths:
        ids = rng.integers(1, vocab, size=n, dtype=np.int64)
        ids[-1] = eod
        builder.add_document(ids, [n])
    builder.finalize(f"{prefix}.idx")
    return prefix


def write_tokenizer(path: Path, vocab: int = 1000, eod: int = 0) -> Path:
    """A word-level tokenizer.json of `vocab` ids with `</s>` (EOD) at `eod`: the vocabulary of `make_prefix` data."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {f"t{i}": i for i in range(vocab) if i != eod}
    tok = Tokenizer(models.WordLevel({**words, "</s>": eod}, unk_token=next(iter(words))))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def write_manifest(prefix: Path, tokenizer: str, *, bos: bool = False, eod: bool = True, special: str = "text"):
    """The part of a `cptkit tokenize` manifest the settings check reads, for a prefix made by `make_prefix`."""
    import json

    from cptkit.tokenize.tokenizers import load_tokenizer

    tok = load_tokenizer(tokenizer, split_special_tokens=special == "text")
    options = {
        "prepend_bos": bos,
        "append_eod": eod,
        "split_special_tokens": special == "text",
        "bos_id": tok.bos_id if bos else None,
        "eod_id": tok.eod_id if eod else None,
    }
    doc = {"tokenizer": {"spec": str(tokenizer), **tok.describe()}, "options": options}
    Path(f"{prefix}.manifest.json").write_text(json.dumps(doc), encoding="utf-8")


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real `cptkit` entry point in a fresh interpreter."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cptkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=full_env,
        cwd=cwd or REPO,
    )


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    monkeypatch.setenv("DATA_ROOT", str(root))
    write_tokenizer(root / "tokenizer.json")  # the 1000-id vocabulary of make_prefix's data (eod 0)
    return root
