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
    return root
