"""The FIM token table reaches the release tokenizer (`cptkit.convert.fim_tokens`, called by mcore-to-hf)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from cptkit.convert.fim_tokens import apply_fim_tokens, checkpoint_used_fim
from cptkit.errors import UserError
from cptkit.mix.fim import LLAMA3_FIM_TOKENS
from cptkit.tokenize.tokenizers import llama3_dir


@pytest.fixture
def release(tmp_path):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(llama3_dir() / name, tmp_path / name)
    return tmp_path


def test_release_tokenizer_encodes_the_fim_strings_to_the_trained_ids(release):
    import tokenizers

    text = "<|fim_prefix|>def f(<|fim_suffix|>)\n<|fim_middle|>"
    before = tokenizers.Tokenizer.from_file(str(release / "tokenizer.json")).encode(text, add_special_tokens=False)
    assert 128002 not in before.ids  # the stock tokenizer splits the FIM strings into plain pieces

    assert apply_fim_tokens(release) == ["tokenizer.json", "tokenizer_config.json"]
    tok = tokenizers.Tokenizer.from_file(str(release / "tokenizer.json"))
    ids = tok.encode(text, add_special_tokens=False).ids
    want = {role: tid for role, (_, tid, _) in LLAMA3_FIM_TOKENS.items()}
    assert ids[0] == want["prefix"] and want["suffix"] in ids and ids[-1] == want["middle"]
    assert tok.decode([want["pad"]], skip_special_tokens=False) == "<|fim_pad|>"
    config = json.loads((release / "tokenizer_config.json").read_text())
    assert config["added_tokens_decoder"]["128011"]["content"] == "<|fim_suffix|>"
    assert "<|fim_middle|>" in config["additional_special_tokens"]
    # The trainer's codec finds the same ids in the renamed tokenizer as in the stock one.
    from cptkit.train.fim import codec_for

    assert codec_for(str(release / "tokenizer.json"))[1] == codec_for("llama3")[1]
    apply_fim_tokens(release)  # idempotent
    assert tokenizers.Tokenizer.from_file(str(release / "tokenizer.json")).encode(text).ids[1:] == ids


def test_a_slot_holding_another_token_is_refused(release):
    doc = json.loads((release / "tokenizer.json").read_text())
    next(t for t in doc["added_tokens"] if t["id"] == 128003)["content"] = "<|my_token|>"
    (release / "tokenizer.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=re.escape("holds '<|my_token|>'")):
        apply_fim_tokens(release)


def test_fim_is_read_from_the_checkpoint_state(tmp_path):
    assert not checkpoint_used_fim(tmp_path)
    (tmp_path / "cptkit_state.json").write_text(json.dumps({"mixture": {"fim": False}}))
    assert not checkpoint_used_fim(tmp_path)
    (tmp_path / "cptkit_state.json").write_text(json.dumps({"mixture": {"fim": True}}))
    assert checkpoint_used_fim(tmp_path)


@pytest.mark.slow
def test_training_with_fim_then_export_names_the_tokens(tmp_path):
    """End to end: a FIM source trains (FIMGPTDataset inside the real loop, 2 workers), the checkpoint records it,
    and `convert mcore-to-hf` writes the FIM tokens into the release without being asked."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    import tokenizers

    from cptkit.train.fim import codec_for

    sys.path.insert(0, str(Path(__file__).parent))
    from test_fim import code_doc, doc_tokens, write_prefix

    codec, _ = codec_for("llama3")
    rng = np.random.default_rng(5)
    for name in ("code", "text"):
        write_prefix(
            tmp_path / f"{name}_text_document",
            [np.append(doc_tokens(codec, code_doc(rng)), codec.eod_id) for _ in range(200)],
        )
    mix = tmp_path / "mix.yaml"
    mix.write_text(
        f"name: fimrun\ntokenizer: llama3\nsources:\n"
        f"  - {{name: code, tokens: 60k, prefix: {tmp_path}/code_text_document, fim: {{rate: 0.9}}}}\n"
        f"  - {{name: text, tokens: 20k, prefix: {tmp_path}/text_text_document}}\n"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cptkit(*argv):
        r = subprocess.run([sys.executable, "-m", "cptkit.cli", *argv], capture_output=True, text=True, env=env,
                           cwd=repo, timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout

    run = tmp_path / "run"
    out = cptkit("train", "recipes/tiny_cpu.yaml", f"run_dir={run}", f"data.mixture={mix}", "training.train_iters=2",
                 "data.num_workers=2", "eval.interval_iters=null", "schedule.lr_warmup_iters=1")  # fmt: skip
    assert "training complete: 2 iterations" in out
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(llama3_dir() / name, assets / name)
    # Verified by logits (the default): a model from random init exports its RoPE base and scaling too.
    out = cptkit("convert", "mcore-to-hf", str(run), str(tmp_path / "release"), "--hf-assets", str(assets))
    assert "FIM special tokens written" in out
    tok = tokenizers.Tokenizer.from_file(str(tmp_path / "release" / "tokenizer.json"))
    assert tok.encode("<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>", add_special_tokens=False).ids[::2] == [
        128002, 128011, 128003,
    ]  # fmt: skip
