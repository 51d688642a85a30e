"""`cptkit tokenize MIXTURE.yaml`: every prefix not tokenized yet, `--source`, `--dry-run`, and `cptkit mix resolve`
reading the result.

Run on CPU: `.venv/bin/pytest tests/tokenize/test_tokenize_mixture_cli.py -q`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokhelp import corpus, cptkit, megatron_documents, tokenize, write_jsonl

from cptkit.mix.resolve import resolve
from cptkit.mix.schema import load_mixture


def _mixture(tmp_path: Path) -> Path:
    docs = corpus(60, seed=3)
    write_jsonl(tmp_path / "raw" / "code" / "a.jsonl", docs[:20])
    write_jsonl(tmp_path / "raw" / "web" / "d1" / "x.jsonl", docs[20:40], field="content")
    write_jsonl(tmp_path / "raw" / "web" / "d2" / "y.jsonl", docs[40:])
    text = f"""
name: t
tokenizer: llama3
total_tokens: 10k
sources:
  - name: code
    tokens: 2k
    input: {{paths: ["{tmp_path}/raw/code/*.jsonl"]}}
    prefix: {tmp_path}/tok/code_text_document
  - name: web
    tokens: 8k
    datasets:
      - prefix: {tmp_path}/tok/web1_text_document
        input: {{paths: ["{tmp_path}/raw/web/d1/*.jsonl"], format: jsonl, text_field: content}}
      - prefix: {tmp_path}/tok/web2_text_document
        input: {{paths: ["{tmp_path}/raw/web/d2/*.jsonl"]}}
"""
    path = tmp_path / "mix.yaml"
    path.write_text(text)
    return path


def test_mixture_tokenizes_every_missing_prefix_and_mix_resolves_it(tmp_path):
    mix = _mixture(tmp_path)
    r = tokenize(str(mix), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("to tokenize") == 3 and "dry run: nothing written" in r.stdout
    assert not (tmp_path / "tok").exists()

    r = tokenize(str(mix), "--source", "web", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert {p.name for p in (tmp_path / "tok").glob("*.idx")} == {"web1_text_document.idx", "web2_text_document.idx"}
    assert len(megatron_documents(tmp_path / "tok" / "web1_text_document")) == 20  # text_field: content honoured

    r = tokenize(str(mix), "--workers", "1")  # only `code` is left; the web prefixes are skipped as done
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith(("code", "web"))}
    assert "tokenized" in rows["code"] and " done " in rows["web[0]"] and " done " in rows["web[1]"]

    blend = resolve(load_mixture(mix))  # the mix stage reads what tokenize wrote
    assert [Path(e.prefix).name for e in blend.entries] == [
        "code_text_document",
        "web1_text_document",
        "web2_text_document",
    ]
    manifest = json.loads((tmp_path / "tok" / "code_text_document.manifest.json").read_text())
    assert (
        all(e.available_tokens > 0 for e in blend.entries) and manifest["tokens"] == blend.entries[0].available_tokens
    )

    r = tokenize(str(mix), "--dry-run")
    assert r.stdout.count("done (skipped)") == 3


def test_mixture_cli_errors_are_one_line(tmp_path):
    mix = _mixture(tmp_path)
    for args, needle in (
        ([str(mix), "--source", "nope"], "no source named nope"),
        ([str(mix), "--tokenizer", "llama3"], "--tokenizer is for ad-hoc jobs"),
        ([str(mix), "--shard-index", "1"], "go together"),
        ([str(mix), "--merge", "--shard-index", "0", "--num-shards", "2"], "--merge runs once"),
        (["--input", "x"], "needs --output-prefix, --tokenizer"),
    ):
        r = cptkit(*args) if needle == "no source named nope" else tokenize(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
