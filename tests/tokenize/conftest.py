"""Fixtures for the tokenization stage. Run on CPU: `.venv/bin/pytest tests/tokenize -q` (about a minute, 2 cores)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokhelp import texts_of


@pytest.fixture(scope="session")
def llama3_json(llama3_tokenizer: Path) -> Path:
    return llama3_tokenizer / "tokenizer.json"


@pytest.fixture(scope="session")
def llama3_tiktoken(llama3_tokenizer: Path) -> Path:
    return llama3_tokenizer / "tokenizer.model"


@pytest.fixture(scope="session")
def tiny_sentencepiece(tmp_path_factory) -> Path:
    """A 300-piece sentencepiece model trained in a second on the checked-in sample (vocab < 65,500 → uint16)."""
    import sentencepiece as spm

    out = tmp_path_factory.mktemp("spm")
    train = out / "train.txt"
    train.write_text("\n".join(t.replace("\x00", "") for t in texts_of()), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(train),
        model_prefix=str(out / "tiny"),
        vocab_size=300,
        character_coverage=1.0,
        model_type="bpe",
        minloglevel=2,
        num_threads=1,
    )
    return out / "tiny.model"
