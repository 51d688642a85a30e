"""Fixtures for the converter tests. The helpers live in `convhelp.py`: test modules import them from there,
because a module named `conftest` is ambiguous in spawned processes (every test directory has one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from convhelp import make_hf_model


@pytest.fixture
def tiny_llama(tmp_path: Path) -> Path:
    return make_hf_model(tmp_path / "llama-hf")


@pytest.fixture
def tiny_qwen2(tmp_path: Path) -> Path:
    return make_hf_model(tmp_path / "qwen2-hf", "qwen2")
