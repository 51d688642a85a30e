"""Helpers for the release tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
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
