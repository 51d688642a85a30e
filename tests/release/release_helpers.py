"""Helpers for the release tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

JOB_ENV = {"CPTKIT_CLUSTER": "test-cluster", "CPTKIT_JOB_ID": "4242"}
EVAL_SCORES = {"OpenBookQA": 0.3125, "HumanEval": 0.0625}


def write_eval(run_dir: Path, iteration: int, scores: dict[str, float], consumed_tokens: int, suite: str = "en"):
    """A results file as `cptkit eval` writes it (the fields `cptkit report` and the card read)."""
    doc = {
        "suite": suite,
        "model": {"iteration": iteration, "consumed_tokens": consumed_tokens},
        "scores": scores,
        "tasks": {c: {"label": "0-shot Acc"} for c in scores},
        "versions": {"lm_eval": "0.4.2", "torch": "x"},
    }
    out = run_dir / "eval" / f"iter_{iteration:07d}" / f"{suite}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc))


def train_tiny_release_run(root: Path, *overrides: str) -> Path:
    """A tiny HF Llama (with a tokenizer) converted to mcore, trained 4 iterations on two tiny tokenized sources
    (checkpoints at 2 and 4) under `root`; returns the run directory. Shared by the release tests and the release job
    test (tests/launch)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
    from train_helpers import cptkit_train, make_hf_llama, write_mixture, write_prefix, write_recipe, write_tokenizer

    from cptkit.convert.hf_to_mcore import convert_hf_to_mcore

    prefixes = {"code": root / "data" / "code_text_document", "text": root / "data" / "text_text_document"}
    for i, p in enumerate(prefixes.values()):
        write_prefix(p, seed=i + 1)
    mixture = write_mixture(root / "data" / "mix.yaml", prefixes, {"code": "16k", "text": "84k"})
    hf = make_hf_llama(root / "hf")
    write_tokenizer(hf / "tokenizer.json")
    convert_hf_to_mcore(hf, root / "base", log=lambda *a: None)
    run_dir = root / "run"
    recipe = write_recipe(root / "tiny_release.yaml", mixture, run_dir)
    rc, _, err = cptkit_train(recipe, "training.train_iters=4", "checkpoint.interval_iters=2",
                              "checkpoint.keep_last=null", "checkpoint.keep_every_iters=null",
                              "eval.interval_iters=null", f"model.init_checkpoint={root / 'base'}", *overrides)  # fmt: skip
    assert rc == 0, err[-3000:]
    return run_dir
