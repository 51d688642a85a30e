"""The demo pipeline at CI size (issue 7): every artifact it leaves is checked by the tool that consumes it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The whole demo (tokenize, train with a pre-emption, convert, eval) takes 2-4 min on 2 cores: `make test-slow`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    r = subprocess.run(
        [sys.executable, "-m", "cptkit.demo", "--out", str(out), "--iters", "24", "--small"],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return out, r.stdout


def test_tokenized_datasets_are_read_by_megatron_core(demo):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    out, _ = demo
    for source in ("code", "ja", "en"):
        ds = IndexedDataset(str(out / "tokenized" / f"{source}_text_document"))
        manifest = json.loads((out / "tokenized" / f"{source}_text_document.manifest.json").read_text())
        assert len(ds) == manifest["documents"] > 0
        assert int(ds[0][-1]) == 128001  # every document ends with <|end_of_text|>


def test_pre_emption_saved_and_the_run_resumed_to_completion(demo):
    out, stdout = demo
    run = out / "run"
    assert "pre-empted: the trainer saved iteration" in stdout
    assert (run / "COMPLETED").exists()
    iters = [json.loads(line)["iteration"] for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert iters == list(range(1, 25)), "resumed run must continue where the pre-empted one stopped, no repeats"
    assert int((run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text()) == 24


def test_conversion_verified_and_release_loads(demo):
    import torch
    from transformers import AutoModelForCausalLM

    out, stdout = demo
    assert "cptkit convert verify" in stdout  # the demo fails (exit 1) if the logits do not match
    model = AutoModelForCausalLM.from_pretrained(out / "hf_release", dtype=torch.float32)
    assert model.config.vocab_size == 128256
    assert model.config.rope_scaling["rope_type"] == "llama3"
    assert (out / "report" / "loss.png").stat().st_size > 1000


def test_release_folder_and_card_from_the_run(demo):
    """`cptkit release` on the demo's run: the HF folder under the recipe's release name, with a card written from
    the run's records (no evaluation in --small: a note instead of a table)."""
    out, _ = demo
    folder = out / "release" / "tiny_cpu-LR3e-3-iter0000024"
    assert (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
    card = (folder / "README.md").read_text()
    assert "after 12.29K training tokens" in card  # 24 iterations x 8 sequences x 64 tokens = 12,288
    assert "Mixture checked against the fingerprint recorded in the checkpoint." in card
    assert "- Jobs: 2" in card  # the pre-empted job and the one that resumed
    assert "| Tokens |" not in card and "No evaluation results" in card
