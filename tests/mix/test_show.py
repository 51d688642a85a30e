"""`cptkit mix show`: targets, shares, available tokens from the .idx, epochs, and each warning."""

from __future__ import annotations

import json

import pytest

from .conftest import make_prefix, run_cli, write_manifest, write_yaml

# code: 16.3% of the targets, text 83.7% (declared 16: drift 0.3 point, inside the 0.5 tolerance -> warning, not error).
# ja: 30k target over 5k tokens = 6 epochs > max_epochs 4. Targets 98k of a 100k budget.
MIX = """
name: warn
tokenizer: ${DATA_ROOT}/tokenizer.json  # the 1000-id vocabulary of make_prefix's data
total_tokens: 100k
groups:
  code: {percent: 16}
  text: {percent: 84}
sources:
  - {name: code, group: code, tokens: 16k, prefix: "${DATA_ROOT}/code_text_document"}
  - {name: ja, group: text, tokens: 30k, prefix: "${DATA_ROOT}/ja_text_document"}
  - name: en
    group: text
    tokens: 52k
    max_epochs: 10
    datasets:
      - {prefix: "${DATA_ROOT}/en/a_text_document"}
      - {prefix: "${DATA_ROOT}/en/b_text_document"}
"""
CLEAN = MIX.replace("tokens: 30k,", "tokens: 32k, max_epochs: 7,")


@pytest.fixture
def mixture(tmp_path, data_root):
    make_prefix(data_root / "code_text_document", [100] * 40, seed=1)  # 4,000 tokens -> 4 epochs
    make_prefix(data_root / "ja_text_document", [50] * 100, seed=2)  # 5,000 tokens -> 6 epochs
    make_prefix(data_root / "en/a_text_document", [200] * 30, seed=3)  # 6,000
    return write_yaml(tmp_path / "warn.yaml", MIX)


def test_show_json_reads_available_tokens_and_epochs(mixture):
    r = run_cli("mix", "show", str(mixture), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    src = {s["name"]: s for s in doc["sources"]}
    assert src["code"]["available_tokens"] == 4000 and src["code"]["epochs"] == pytest.approx(4.0)
    assert src["ja"]["available_tokens"] == 5000 and src["ja"]["epochs"] == pytest.approx(6.0)
    assert src["code"]["share_percent"] == pytest.approx(100 * 16 / 98)
    # en/b is not tokenized: shown, not an error.
    assert src["en"]["available_tokens"] is None and src["en"]["prefixes_not_tokenized"] == 1
    assert "sources[2].datasets[1].prefix" in src["en"]["problems"][0]
    groups = {g["name"]: g for g in doc["groups"]}
    assert groups["code"]["declared_percent"] == 16 and groups["text"]["target_tokens"] == 82_000

    warnings = doc["warnings"]
    assert len(warnings) == 5, warnings
    assert any(w.startswith("source 'ja': 6.00 epochs") and "max_epochs 4" in w for w in warnings)
    assert any(w.startswith("group 'code': sources make up 16.33%") for w in warnings)
    assert any(w.startswith("group 'text': sources make up 83.67%") for w in warnings)
    assert any("add up to 98.0k tokens, total_tokens is 100.0k (98.00%)" in w for w in warnings)
    assert any(w.startswith("1 prefix(es) not found and without `input:`") for w in warnings)


def test_show_table_and_a_clean_mixture_has_no_warnings(mixture, tmp_path, data_root):
    r = run_cli("mix", "show", str(mixture))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    ja = next(line for line in lines if line.startswith("ja "))
    assert ja.split() == ["ja", "text", "30.0k", "30.61%", "5.0k", "6.00", "4", "1"]
    assert "1/2 missing" in next(line for line in lines if line.startswith("en "))
    assert sum(line.startswith("warning: ") for line in lines) == 5

    make_prefix(data_root / "en/b_text_document", [100] * 60, seed=4)
    clean = write_yaml(tmp_path / "clean.yaml", CLEAN)
    r = run_cli("mix", "show", str(clean), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["warnings"] == []
    en = next(s for s in doc["sources"] if s["name"] == "en")
    assert en["available_tokens"] == 12_000 and en["epochs"] == pytest.approx(52 / 12)


def test_show_prints_the_tokenization_and_warns_on_prefixes_made_otherwise(mixture, tmp_path, data_root):
    declared = MIX.replace("total_tokens: 100k", "total_tokens: 100k\ntokenization: {bos: true, special_tokens: parse}")
    declared = declared.replace(
        'tokens: 30k, prefix: "${DATA_ROOT}/ja_text_document"}',
        'tokens: 30k, prefix: "${DATA_ROOT}/ja_text_document", tokenization: {bos: false}}',
    )
    path = write_yaml(tmp_path / "declared.yaml", declared)
    r = run_cli("mix", "show", str(path), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["tokenization"] == {"bos": True, "eod": True, "special_tokens": "parse"}
    src = {s["name"]: s["tokenization"] for s in doc["sources"]}
    assert src["ja"] == {"bos": False, "eod": True, "special_tokens": "parse"} and src["code"] == doc["tokenization"]
    assert not any("tokenized as" in w or "made with" in w for w in doc["warnings"])  # no manifests: as declared

    # A manifest recording other settings is warned about, naming the prefix (mix check / the trainer refuse it).
    write_manifest(data_root / "code_text_document", str(data_root / "tokenizer.json"), bos=False, special="parse")
    r = run_cli("mix", "show", str(path))
    assert r.returncode == 0, r.stderr
    assert "documents: BOS + ids + EOD, special-token strings parsed as special ids" in r.stdout
    assert "  source ja: ids + EOD, special-token strings parsed as special ids" in r.stdout
    bad = [line for line in r.stdout.splitlines() if "code_text_document" in line and line.startswith("warning:")]
    assert len(bad) == 1 and "made with bos off" in bad[0], r.stdout
