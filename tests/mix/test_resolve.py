"""Resolve: weights per prefix, multi-prefix splits, fingerprint, Megatron data-args file, `mix resolve` CLI."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from cptkit.errors import UserError
from cptkit.mix import ResolvedBlend, load_mixture, resolve_file
from cptkit.mix.idx import IdxFormatError, read_idx
from cptkit.mix.resolve import resolve

from .conftest import make_prefix, run_cli, write_yaml

MIX = """
name: small
tokenizer: llama3
total_tokens: 100k
groups:
  code: {percent: 20}
  text: {percent: 80}
sources:
  - name: code
    group: code
    tokens: 20k
    prefix: ${DATA_ROOT}/code_text_document
  - name: cc
    group: text
    tokens: 60k
    datasets:
      - prefix: ${DATA_ROOT}/cc/2019_text_document
      - prefix: ${DATA_ROOT}/cc/2020_text_document
  - name: wiki
    group: text
    share: 20
    datasets:
      - {prefix: "${DATA_ROOT}/wiki/a_text_document", tokens: 3M}
      - {prefix: "${DATA_ROOT}/wiki/b_text_document", tokens: 1M}
"""

SIZES = {  # prefix -> document lengths (tokens, EOD included)
    "code_text_document": [100] * 50,  # 5,000 tokens
    "cc/2019_text_document": [200] * 30,  # 6,000
    "cc/2020_text_document": [300] * 30,  # 9,000
    "wiki/a_text_document": [50] * 100,  # 5,000
    "wiki/b_text_document": [70] * 100,  # 7,000
}


@pytest.fixture
def tokenized(tmp_path, data_root):
    for i, (name, lengths) in enumerate(SIZES.items()):
        make_prefix(data_root / name, lengths, seed=i)
    return write_yaml(tmp_path / "small.yaml", MIX)


def test_idx_reader_matches_megatron(tokenized, data_root):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    for name, lengths in SIZES.items():
        ours = read_idx(data_root / name)
        theirs = IndexedDataset(str(data_root / name))
        assert ours.tokens == int(np.sum(theirs.sequence_lengths)) == sum(lengths)
        assert ours.sequences == len(theirs) and ours.documents == len(theirs.document_indices) - 1 == len(lengths)
        assert ours.dtype == "uint16"
    # A truncated index is refused, not misread.
    idx = data_root / "code_text_document.idx"
    idx.write_bytes(idx.read_bytes()[:-8])
    with pytest.raises(IdxFormatError, match="truncated"):
        read_idx(data_root / "code_text_document")
    idx.write_bytes(b"NOTMMIDX" + bytes(40))
    with pytest.raises(IdxFormatError, match="magic"):
        read_idx(data_root / "code_text_document")


def test_weights_are_tokens_and_multi_prefix_sources_split(tokenized, data_root):
    blend = resolve_file(tokenized)
    got = {e.prefix.removeprefix(str(data_root) + "/"): e.weight_tokens for e in blend.entries}
    assert got["code_text_document"] == 20_000
    # No explicit tokens: split by available tokens (6k : 9k), so both CC dumps see the same epochs.
    assert got["cc/2019_text_document"] == pytest.approx(60_000 * 6 / 15)
    assert got["cc/2020_text_document"] == pytest.approx(60_000 * 9 / 15)
    cc = [e for e in blend.entries if e.source == "cc"]
    assert cc[0].epochs == pytest.approx(cc[1].epochs) == pytest.approx(4.0)
    # Explicit tokens 3M : 1M split the 20% share (20k) 3 : 1.
    assert got["wiki/a_text_document"] == pytest.approx(15_000) and got["wiki/b_text_document"] == pytest.approx(5_000)
    assert blend.target_tokens == pytest.approx(100_000)
    prefixes, weights = blend.megatron_blend()
    assert prefixes == [e.prefix for e in blend.entries] and sum(weights) == pytest.approx(100_000)


def test_data_args_file_is_what_megatron_lm_parses(tokenized, data_root):
    blend = resolve_file(tokenized)
    words = blend.data_args_text().split()  # Megatron-LM: open(args.data_args_path).read().split()
    assert len(words) == 2 * len(blend.entries)
    weights, prefixes = [float(w) for w in words[0::2]], words[1::2]
    assert prefixes == [str(data_root / n) for n in SIZES]
    assert weights == pytest.approx([e.weight_tokens for e in blend.entries], rel=1e-12)
    assert words[0] == "20000"  # whole numbers are written as integers


def test_fingerprint_tracks_weights_and_idx_bytes_not_paths(tokenized, tmp_path, data_root, monkeypatch):
    base = resolve_file(tokenized).fingerprint
    assert len(base) == 64 and resolve_file(tokenized).fingerprint == base
    # Moving the data keeps the fingerprint (resuming on another cluster's file system).
    moved = tmp_path / "moved"
    shutil.copytree(data_root, moved)
    monkeypatch.setenv("DATA_ROOT", str(moved))
    assert resolve_file(tokenized).fingerprint == base
    # A changed weight changes it (here: wiki's split 3:1 -> 3:2, same totals).
    other = write_yaml(tmp_path / "w.yaml", MIX.replace("tokens: 1M}", "tokens: 2M}"))
    assert resolve_file(other).fingerprint != base
    # Re-tokenized data (different .idx bytes) changes it.
    make_prefix(moved / "code_text_document", [100] * 49 + [101], seed=0)
    assert resolve_file(tokenized).fingerprint != base


def test_resolve_lists_every_missing_prefix_at_once(tokenized, data_root):
    (data_root / "code_text_document.bin").unlink()
    (data_root / "cc/2020_text_document.idx").unlink()
    with pytest.raises(UserError) as e:
        resolve(load_mixture(tokenized))
    line = e.value.one_line()
    assert "2 of 5 prefixes are not usable" in line
    assert "sources[0].prefix: " in line and "sources[1].datasets[1].prefix: " in line
    assert line.startswith(str(tokenized)) and "cptkit tokenize" in line


def test_cli_resolve_writes_both_files_and_dry_run_writes_nothing(tokenized, tmp_path):
    out = tmp_path / "out"
    r = run_cli("mix", "resolve", str(tokenized), "-o", str(out), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "fingerprint" in r.stdout and not out.exists()
    r = run_cli("mix", "resolve", str(tokenized), "-o", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "small.blend.json").read_text())
    blend = resolve_file(tokenized)
    assert doc["fingerprint"] == blend.fingerprint and doc["format"] == "cptkit-blend/1"
    assert [e["weight_tokens"] for e in doc["entries"]] == [e.weight_tokens for e in blend.entries]
    assert (out / "small.data-args.txt").read_text() == blend.data_args_text()
    assert ResolvedBlend.from_json(doc) == blend  # the trainer can read the JSON back
    assert sorted(p.name for p in out.iterdir()) == ["small.blend.json", "small.data-args.txt"]  # no temp files left


def test_cli_resolve_missing_prefix_is_one_line_exit_2(tmp_path, data_root):
    path = write_yaml(tmp_path / "small.yaml", MIX)
    r = run_cli("mix", "resolve", str(path), "-o", str(tmp_path / "out"))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "5 of 5 prefixes are not usable" in r.stderr
    assert not (tmp_path / "out").exists()


def test_show_and_resolve_import_no_torch_or_megatron(tokenized, tmp_path):
    """Login-node paths: `mix show/resolve/schema` on real data must not import torch, megatron or transformers."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from cptkit.cli import main\n"
        f"assert main(['mix', 'show', {str(tokenized)!r}]) == 0\n"
        f"assert main(['mix', 'resolve', {str(tokenized)!r}, '-o', {str(tmp_path / 'o')!r}]) == 0\n"
        "assert main(['mix', 'schema']) == 0\n"
        "bad = sorted(m for m in ('torch', 'megatron', 'transformers') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_prefixes_from_different_tokenizers_are_refused(tokenized, data_root):
    def manifest(name, sha):
        (data_root / f"{name}.manifest.json").write_text(json.dumps({"tokenizer": {"sha256": sha, "eod_id": 0}}))

    manifest("code_text_document", "a" * 64)
    manifest("wiki/a_text_document", "a" * 64)
    resolve_file(tokenized)  # one tokenizer (others without manifest, e.g. made by Megatron-LM): fine
    manifest("wiki/b_text_document", "b" * 64)
    with pytest.raises(
        UserError, match=re.escape("2 different tokenizers: aaaaaaaaaaaa (sources[0].prefix), bbbbbbbbbbbb")
    ):
        resolve_file(tokenized)
    r = run_cli("mix", "show", str(tokenized))
    assert r.returncode == 0 and "warning: the prefixes were tokenized with 2 different tokenizers" in r.stdout
