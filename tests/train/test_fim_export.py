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
