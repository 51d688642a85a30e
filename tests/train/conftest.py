"""Fixtures for the trainer's CPU tests (helpers in train_helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from train_helpers import write_mixture, write_prefix


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_data")
    prefixes = {"code": root / "code_text_document", "text": root / "text_text_document"}
    for i, p in enumerate(prefixes.values()):
        write_prefix(p, seed=i + 1)
    mixture = write_mixture(root / "mix.yaml", prefixes, {"code": "16k", "text": "84k"})
    return {"root": root, "mixture": mixture, **prefixes}


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
