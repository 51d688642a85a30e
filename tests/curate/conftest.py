"""Fixtures for tests/curate. Run on CPU: `.venv/bin/pytest tests/curate -q` (`-m slow` for pylint, kill/resume and
the tiny-model rewrite)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from curatehelp import CHAT_TEMPLATE


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory, llama3_tokenizer) -> Path:
    """A random 2-layer Llama with the real Llama-3 tokenizer and a chat template: made here, nothing downloaded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny_chat")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=128256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=128000,
        eos_token_id=128009,
    )
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    shutil.copy(llama3_tokenizer / "tokenizer.json", out / "tokenizer.json")
    tok_cfg = json.loads((llama3_tokenizer / "tokenizer_config.json").read_text())
    tok_cfg["chat_template"] = CHAT_TEMPLATE
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    return out
