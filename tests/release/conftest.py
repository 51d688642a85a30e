"""One finished tiny run per session for the release tests: a tiny HF Llama (with a tokenizer) converted to mcore,
trained 4 iterations on two tiny tokenized sources (checkpoints at 2 and 4), with `cptkit eval`-format results for
iteration 2 only. Helpers come from tests/train/train_helpers.py (the trainer tests' tiny data and recipe).

~30 s once per session on CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release_helpers import EVAL_SCORES, JOB_ENV, train_tiny_release_run, write_eval


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("release_run")
    # What a rendered job script exports (launch/render.py) and a scheduler sets: recorded in logs/jobs_env.jsonl.
    saved = {k: os.environ.get(k) for k in JOB_ENV}
    os.environ.update(JOB_ENV)
    try:
        run_dir = train_tiny_release_run(
            root, "release.base_model=meta-llama/Llama-3.1-8B", "release.ablation=tiny-ablation"
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    state = json.loads((run_dir / "checkpoints" / "iter_0000002" / "cptkit_state.json").read_text())
    write_eval(run_dir, 2, EVAL_SCORES, state["consumed_tokens"])
    return run_dir


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A copy a test may change (logs, eval results, recipe) without touching the session's run."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst, symlinks=True)
    return dst
