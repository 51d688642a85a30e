from __future__ import annotations

import json

from cptkit.demo.corpus import build_corpus, roff_to_text


def test_roff_markup_is_stripped():
    page = '.\\" comment\n.TH APROPOS 1\n.SH 名前\napropos \\- \\fBマニュアル\\fP を検索する\n.PP\n本文\\|です。\n'
    assert roff_to_text(page) == "名前\napropos - マニュアル を検索する\n本文です。"


def test_corpus_has_real_code_english_and_japanese(tmp_path):
    stats = build_corpus(tmp_path, max_bytes_per_source=200_000)
    assert set(stats) == {"code", "en", "ja"}
    docs = {s: [json.loads(x) for x in (tmp_path / "raw" / s / "part-000.jsonl").open()] for s in stats}
    assert any("def " in d["text"] for d in docs["code"])
    assert any(" the " in d["text"] for d in docs["en"])
    ja_chars = sum(sum(0x3040 <= ord(c) <= 0x9FFF for c in d["text"]) for d in docs["ja"])
    assert ja_chars > 1000, "the Japanese source must be mostly Japanese text"
