"""One interface over HF tokenizer.json, tiktoken tokenizer.model (Llama-3) and sentencepiece, with the real Llama-3.

Run on CPU: `.venv/bin/pytest tests/tokenize/test_tokenize_tokenizers.py -q`.
"""

from __future__ import annotations

import json
import shutil

import pytest
from tokhelp import texts_of

from cptkit.errors import UserError
from cptkit.tokenize.tokenizers import (
    LLAMA3_SPECIAL_TOKENS,
    HFTokenizer,
    SentencePieceTokenizer,
    TiktokenTokenizer,
    load_tokenizer,
)

BOS, EOT = 128000, 128001
CODE_WITH_SPECIALS = 'BOS = "<|begin_of_text|>"\nEOS = "<|end_of_text|>"\n'


def test_tokenizer_json_and_tiktoken_model_give_identical_ids(llama3_json, llama3_tiktoken):
    texts = texts_of()
    assert (
        any("東京" in t for t in texts)
        and any("def " in t for t in texts)
        and any("<|begin_of_text|>" in t for t in texts)
    )
    for split in (True, False):
        hf = load_tokenizer(llama3_json, split_special_tokens=split)
        tk = load_tokenizer(llama3_tiktoken, split_special_tokens=split)
        assert isinstance(hf, HFTokenizer) and isinstance(tk, TiktokenTokenizer)
        ids_hf, ids_tk = hf.encode_batch(texts), tk.encode_batch(texts)
        assert ids_hf == ids_tk
        assert sum(map(len, ids_hf)) > 2000
    # The comparison is not blind: a tiktoken built with another split pattern disagrees on the same texts.
    import tiktoken

    other = tiktoken.Encoding("x", pat_str=r"\S+|\s+", mergeable_ranks=tk._enc._mergeable_ranks, special_tokens={})
    assert other.encode_ordinary_batch(texts) != ids_tk
    assert (hf.eod_id, hf.bos_id) == (tk.eod_id, tk.bos_id) == (EOT, BOS)


def test_llama3_special_token_table_matches_tokenizer_json(llama3_json):
    added = {t["id"]: t["content"] for t in json.loads(llama3_json.read_text())["added_tokens"]}
    assert [added[128000 + i] for i in range(len(LLAMA3_SPECIAL_TOKENS))] == LLAMA3_SPECIAL_TOKENS


@pytest.mark.parametrize("which", ["llama3_json", "llama3_tiktoken"])
def test_special_token_strings_are_text_by_default_and_special_with_the_switch(which, request):
    path = request.getfixturevalue(which)
    safe = load_tokenizer(path).encode_batch([CODE_WITH_SPECIALS])[0]
    assert BOS not in safe and EOT not in safe  # data cannot inject control tokens
    compat = load_tokenizer(path, split_special_tokens=False).encode_batch([CODE_WITH_SPECIALS])[0]
    assert compat.count(BOS) == 1 and compat.count(EOT) == 1  # Megatron-LM HuggingFaceTokenizer behaviour
    assert len(safe) > len(compat)


def test_alias_picks_metas_tiktoken_model_and_a_directory_its_tokenizer_json(llama3_tokenizer, tmp_path):
    assert load_tokenizer("llama3").path.name == "tokenizer.model"  # Meta's own file, the fast encoder
    assert load_tokenizer(llama3_tokenizer).path == llama3_tokenizer / "tokenizer.json"
    only_model = tmp_path / "orig"
    only_model.mkdir()
    shutil.copy(llama3_tokenizer / "tokenizer.model", only_model / "tokenizer.model")
    tok = load_tokenizer(only_model)
    assert isinstance(tok, TiktokenTokenizer) and tok.vocab_size == 128256
    assert len(tok.checksum) == 64 and tok.checksum != load_tokenizer(llama3_tokenizer).checksum


def test_sentencepiece_model(tiny_sentencepiece):
    tok = load_tokenizer(tiny_sentencepiece)
    assert isinstance(tok, SentencePieceTokenizer)
    assert tok.vocab_size == 300 and tok.eod_id is not None
    ids = tok.encode_batch(["hello world", "東京"])
    assert all(ids) and all(0 <= i < 300 for seq in ids for i in seq)


def test_bad_tokenizer_specs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_tokenizer(tmp_path / "nope.json")
    with pytest.raises(UserError, match="no tokenizer"):
        load_tokenizer(tmp_path)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="cannot load"):
        load_tokenizer(bad)
    with pytest.raises(UserError, match="not in the vocabulary"):
        load_tokenizer("llama3", eod_token="<|no_such_token|>")
