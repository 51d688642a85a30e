"""Helpers for the tokenization tests (a unique module name: `tests/tokenize` cannot be a package, `tokenize` is
stdlib). Small corpora written on the fly, a runner for `cptkit tokenize`, megatron-core reading a prefix back.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from cptkit.cli import main

DATA = Path(__file__).parent / "data"
MIXED = DATA / "mixed.jsonl"  # 48 documents: English, Japanese, code, special-token strings, emoji, CRLF


def texts_of(path: Path = MIXED) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, records: list, *, field: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r if isinstance(r, dict) else {field: r}, ensure_ascii=False) + "\n")
    return path


def corpus(n_docs: int, seed: int = 0) -> list[str]:
    """Deterministic mixed ja/en/code documents of varied length, built from the checked-in sample."""
    base = texts_of()
    rng = np.random.default_rng(seed)
    return [" ".join(base[j] for j in rng.integers(0, len(base), size=int(rng.integers(1, 6)))) for _ in range(n_docs)]


def cptkit(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`cptkit tokenize ARGS` in a fresh process (exit code, stdout, stderr exactly as a user sees them)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cptkit.cli", "tokenize", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def tokenize(*args: str) -> subprocess.CompletedProcess:
    """`cptkit tokenize ARGS` in this process (the CLI's code path, ~2 s faster per call than `cptkit`)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["tokenize", *args])
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def read_prefix(prefix: Path) -> tuple[bytes, bytes, dict]:
    return (
        Path(f"{prefix}.bin").read_bytes(),
        Path(f"{prefix}.idx").read_bytes(),
        json.loads(Path(f"{prefix}.manifest.json").read_text()),
    )


def megatron_documents(prefix: Path) -> list[list[int]]:
    """Read a prefix back with megatron-core's own IndexedDataset."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    torch.set_num_threads(1)
    ds = IndexedDataset(str(prefix), multimodal=False, mmap=True)
    assert len(ds.document_indices) == len(ds) + 1
    return [ds[i].tolist() for i in range(len(ds))]
