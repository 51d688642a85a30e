"""A mixture's `tokenization:` (BOS, EOD, special tokens; per source) and the check that holds prefixes to it.

Run on CPU: `.venv/bin/pytest tests/mix/test_settings.py -q`.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from cptkit.cli import main
from cptkit.errors import UserError
from cptkit.mix import resolve_file
from cptkit.mix.schema import load_mixture
from cptkit.mix.settings import Settings, check_tokenization, effective

from .conftest import make_prefix, run_cli, write_yaml

BOS, EOD = 128000, 128001
DOCS = ['def f():\n    return "<|begin_of_text|>"\n', "吾輩は猫である。", "The quick brown fox."]


def _tokenize(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["tokenize", *args, "--workers", "1", "--no-progress"])
    return rc, err.getvalue()


def _jsonl(path, texts):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def _tokens(prefix) -> np.ndarray:
    return np.fromfile(f"{prefix}.bin", dtype=np.int32)


SWALLOW = """
name: swallowish
tokenizer: {tokenizer}
tokenization: {{bos: true, eod: true, special_tokens: parse}}
sources:
  - name: a
    tokens: 1k
    input: {{paths: ["{raw}/a.jsonl"]}}
    prefix: {data}/a_text_document
  - name: b
    tokens: 1k
    input: {{paths: ["{raw}/b.jsonl"]}}
    prefix: {data}/b_text_document
    tokenization: {{bos: false}}
"""


@pytest.fixture
def swallowish(tmp_path):
    raw, data = tmp_path / "raw", tmp_path / "data"
    _jsonl(raw / "a.jsonl", DOCS)
    _jsonl(raw / "b.jsonl", DOCS[::-1])
    return write_yaml(tmp_path / "mix.yaml", SWALLOW.format(tokenizer="llama3", raw=raw, data=data)), data


def test_settings_default_merge_per_source_and_bad_values_name_the_field(swallowish, tmp_path):
    path, _ = swallowish
    mix = load_mixture(path)
    assert effective(mix, mix.sources[0]) == Settings(bos=True, eod=True, special_tokens="parse")
    assert effective(mix, mix.sources[1]) == Settings(bos=False, eod=True, special_tokens="parse")
    plain = write_yaml(
        tmp_path / "plain.yaml", "name: p\ntokenizer: llama3\nsources: [{name: s, tokens: 1k, prefix: x}]"
    )
    assert effective(load_mixture(plain)) == Settings(bos=False, eod=True, special_tokens="text")  # cptkit's defaults
    text = path.read_text()
    for bad, where in (
        ("special_tokens: parse}", "special_tokens: maybe}"),
        ("{bos: true,", "{boss: true,"),
        ("tokenization: {bos: false}", "tokenization: {tokenizer: llama3}"),  # one vocabulary per blend
    ):
        broken = write_yaml(tmp_path / "bad.yaml", text.replace(bad, where, 1))
        with pytest.raises(UserError, match="tokenization") as e:
            load_mixture(broken)
        assert "\n" not in str(e.value)


def test_tokenize_follows_the_mixture_and_the_check_refuses_a_prefix_made_otherwise(swallowish, tmp_path):
    path, data = swallowish
    rc, err = _tokenize(str(path))
    assert rc == 0, err
    a, b = _tokens(data / "a_text_document"), _tokens(data / "b_text_document")
    assert a[0] == BOS and a[-1] == EOD and (a == BOS).sum() == 4  # 3 documents + the parsed "<|begin_of_text|>"
    assert b[0] != BOS and b[-1] == EOD and (b == BOS).sum() == 1  # the source's override: no BOS
    manifest = json.loads((data / "a_text_document.manifest.json").read_text())
    assert manifest["options"]["prepend_bos"] and not manifest["options"]["split_special_tokens"]
    assert manifest["tokenizer"]["vocab_sha256"] and manifest["tokenizer"]["encoder"] == "tiktoken"
    check_tokenization(path, resolve_file(path))  # made as declared: accepted

    # b re-made by hand with cptkit's defaults (special tokens as text): refused, naming b's prefix and the reason.
    rc, err = _tokenize(
        "--input", str(tmp_path / "raw/b.jsonl"), "--output-prefix", str(data / "b_text_document"),
        "--tokenizer", "llama3", "--overwrite",
    )  # fmt: skip
    assert rc == 0, err
    with pytest.raises(UserError, match=r"b_text_document \(source b\): made with special tokens as text") as e:
        check_tokenization(path, resolve_file(path))
    assert "a_text_document" not in str(e.value)
    # The same through the CLI: one line, exit 2, before megatron builds anything.
    r = run_cli("mix", "check", str(path), "--samples", "10", "--seq-length", "8")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "b_text_document" in r.stderr, r.stderr
    # A mixture's settings are not overridden by tokenize flags.
    rc, err = _tokenize(str(path), "--prepend-bos")
    assert rc == 2 and "tokenization:" in err


def test_vocabulary_is_checked_with_and_without_manifests(tmp_path, llama3_tokenizer):
    data = tmp_path / "data"
    mix = write_yaml(
        tmp_path / "mix.yaml",
        f"name: v\ntokenizer: llama3\nsources:\n  - {{name: m, tokens: 1k, prefix: {data}/megatron_text_document}}\n",
    )
    make_prefix(data / "megatron_text_document", [50] * 20, vocab=128256, eod=EOD)  # int32, no manifest: Megatron's
    check_tokenization(mix, resolve_file(mix))
    # A uint16 prefix without manifest was made with a < 65,500-id vocabulary: not Llama-3 data.
    make_prefix(data / "megatron_text_document", [50] * 20, vocab=1000)
    with pytest.raises(UserError, match=r"megatron_text_document \(source m\): its .idx stores uint16 tokens"):
        check_tokenization(mix, resolve_file(mix))

    # With a manifest: the vocabulary, not the file, must match. The package's tokenizer.json (its ordinary ids are
    # Meta's tokenizer.model's, plus <|image|>) is the same vocabulary as `llama3`; a word-level one is not.
    raw = _jsonl(tmp_path / "raw.jsonl", ["t1 t2 t3", "t4 t5"])
    for tokenizer, ok in ((llama3_tokenizer / "tokenizer.json", True), (data / "tokenizer.json", False)):
        if not ok:
            from .conftest import write_tokenizer

            write_tokenizer(data / "tokenizer.json")
        rc, err = _tokenize(
            "--input", str(raw), "--output-prefix", str(data / "megatron_text_document"),
            "--tokenizer", str(tokenizer), "--overwrite",
        )  # fmt: skip
        assert rc == 0, err
        if ok:
            check_tokenization(mix, resolve_file(mix))
        else:
            with pytest.raises(UserError, match="another vocabulary than the declared 'llama3'"):
                check_tokenization(mix, resolve_file(mix))

    # The trainer passes the model's vocabulary: Llama-3 ids do not fit a 512-row embedding.
    make_prefix(data / "megatron_text_document", [50] * 20, vocab=128256, eod=EOD)
    (data / "megatron_text_document.manifest.json").unlink()
    check_tokenization(mix, resolve_file(mix), model_vocab_size=128256)
    with pytest.raises(UserError, match="tokenizer: tokenizer 'llama3' produces ids up to 128,001"):
        check_tokenization(mix, resolve_file(mix), model_vocab_size=512)

    # A tokenizer path that does not exist is an error naming the field, not some default vocabulary.
    missing = write_yaml(tmp_path / "missing.yaml", mix.read_text().replace("llama3", str(tmp_path / "nope")))
    with pytest.raises(UserError, match=r"missing.yaml: tokenizer: .*nope: tokenizer not found"):
        check_tokenization(missing, resolve_file(missing))
