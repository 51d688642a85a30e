"""`mix check`: megatron-core's own BlendedMegatronDatasetBuilder realizes each source's target share."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cptkit.errors import UserError
from cptkit.mix import resolve_file
from cptkit.mix.check import check_blend, check_file, eod_from_manifests

from .conftest import make_prefix, run_cli, write_manifest, write_yaml

# Three sources of very different sizes and targets; `small` is repeated ~3 times, `big` is subsampled.
MIX = """
name: three
tokenizer: ${DATA_ROOT}/tokenizer.json  # the 1000-id vocabulary of make_prefix's data
total_tokens: 400k
sources:
  - {name: big, tokens: 200k, prefix: "${DATA_ROOT}/big_text_document"}
  - name: mid
    tokens: 140k
    datasets:
      - {prefix: "${DATA_ROOT}/mid/a_text_document"}
      - {prefix: "${DATA_ROOT}/mid/b_text_document"}
  - {name: small, tokens: 60k, prefix: "${DATA_ROOT}/small_text_document"}
"""


@pytest.fixture
def three(tmp_path, data_root):
    make_prefix(data_root / "big_text_document", [400] * 1000, seed=1)  # 400k tokens
    make_prefix(data_root / "mid/a_text_document", [97] * 600, seed=2)  # 58.2k
    make_prefix(data_root / "mid/b_text_document", [131] * 500, seed=3)  # 65.5k
    make_prefix(data_root / "small_text_document", [40] * 500, seed=4)  # 20k -> 3 epochs
    return write_yaml(tmp_path / "three.yaml", MIX)


def test_realized_shares_match_targets_and_a_wrong_blend_is_caught(three):
    blend = resolve_file(three)
    result = check_blend(blend, samples=3000, seq_length=128, seed=1234, eod_id=0)
    got = {s.source: s for s in result.shares}
    assert [s.target_percent for s in result.shares] == pytest.approx([50.0, 35.0, 15.0])
    for s in result.shares:
        assert s.error_points <= 0.5, s
    assert sum(s.samples for s in result.shares) == 3000
    assert got["small"].samples > 0 and got["mid"].samples > 0

    # The same check on a blend with big's and small's weights swapped must fail the 0.5-point bound.
    w = {e.source: e.weight_tokens for e in blend.entries}
    swapped = dataclasses.replace(
        blend,
        entries=tuple(
            dataclasses.replace(e, weight_tokens={"big": w["small"], "small": w["big"]}.get(e.source, e.weight_tokens))
            for e in blend.entries
        ),
    )
    wrong = check_blend(swapped, samples=3000, seq_length=128, seed=1234, eod_id=0, targets_from=blend)
    assert wrong.max_error_points() > 0.5
    assert {s.source: round(s.realized_percent) for s in wrong.shares} == {"big": 15, "mid": 35, "small": 50}


def test_eod_comes_from_the_manifests(three, data_root):
    with pytest.raises(UserError, match="pass --eod-id"):
        check_file(three, samples=10, seq_length=16)
    tok = str(data_root / "tokenizer.json")
    write_manifest(data_root / "big_text_document", tok)
    assert eod_from_manifests(resolve_file(three)) == 0
    with pytest.raises(UserError, match="disagrees"):
        check_file(three, samples=10, seq_length=16, eod_id=3)
    # A manifest recording another end-of-document id is refused by the settings check, naming the prefix.
    doc = json.loads((data_root / "big_text_document.manifest.json").read_text())
    doc["options"]["eod_id"] = doc["tokenizer"]["eod_id"] = 8
    (data_root / "small_text_document.manifest.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"small_text_document \(source small\): its eod_id is 8"):
        check_file(three, samples=10, seq_length=16)
    with pytest.raises(UserError, match="different end-of-document ids"):
        eod_from_manifests(resolve_file(three))


def test_cli_check_prints_shares_and_exit_codes(three, tmp_path):
    r = run_cli("mix", "check", str(three), "--samples", "2000", "--seq-length", "64", "--eod-id", "0", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] and doc["samples"] == 2000 and [s["source"] for s in doc["sources"]] == ["big", "mid", "small"]
    assert all(s["error_points"] <= 0.5 for s in doc["sources"])
    assert not list(tmp_path.rglob("*.npy"))  # no index cache written next to the data
    r = run_cli("mix", "check", str(three), "--samples", "10", "--seq-length", "64", "--eod-id", "0", "--dry-run")
    assert r.returncode == 0 and "dry run" in r.stdout, r.stderr
    r = run_cli("mix", "check", str(three), "--samples", "10", "--seq-length", "64")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--eod-id" in r.stderr


def test_cli_check_lists_every_missing_prefix(three, data_root):
    (data_root / "small_text_document.idx").unlink()
    (data_root / "mid/a_text_document.bin").unlink()
    r = run_cli("mix", "check", str(three), "--samples", "10", "--seq-length", "64", "--eod-id", "0")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "2 of 4 prefixes are not usable" in r.stderr
    assert "sources[1].datasets[0].prefix" in r.stderr and "sources[2].prefix" in r.stderr
