"""Every input format gives the same tokens; globs over many files; BOS/EOD switches; dtype by vocabulary size.

Run on CPU: `.venv/bin/pytest tests/tokenize/test_tokenize_formats.py -q`.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from tokhelp import megatron_documents, read_prefix, texts_of, tokenize, write_jsonl

from cptkit.tokenize.tokenizers import load_tokenizer


def _write_all_formats(root, texts):
    import pyarrow as pa
    import pyarrow.parquet as pq

    half = len(texts) // 2
    parts = [texts[:half], texts[half:]]
    for k, part in enumerate(parts):  # two files per format: the glob must keep their (sorted) order
        lines = "".join(json.dumps({"text": t, "n": i}, ensure_ascii=False) + "\n" for i, t in enumerate(part)).encode()
        (root / "jsonl").mkdir(exist_ok=True)
        (root / "jsonl" / f"part{k}.jsonl").write_bytes(lines)
        (root / "gz").mkdir(exist_ok=True)
        (root / "gz" / f"part{k}.jsonl.gz").write_bytes(gzip.compress(lines))
        import zstandard

        (root / "zst").mkdir(exist_ok=True)
        (root / "zst" / f"part{k}.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
        (root / "pq").mkdir(exist_ok=True)
        # Small row groups: a chunk spans several of them.
        pq.write_table(
            pa.table({"body": part, "n": list(range(len(part)))}), root / "pq" / f"part{k}.parquet", row_group_size=5
        )
    import datasets

    datasets.Dataset.from_dict({"content": texts}).save_to_disk(str(root / "hf"), num_shards=2)


def test_all_formats_give_identical_output_read_by_megatron(tmp_path, llama3_json):
    texts = texts_of()
    _write_all_formats(tmp_path, texts)
    cases = {
        "jsonl": ["--input", str(tmp_path / "jsonl" / "*.jsonl")],
        "gz": ["--input", str(tmp_path / "gz" / "*.jsonl.gz")],
        "zst": ["--input", str(tmp_path / "zst" / "part0.jsonl.zst"), "--input", str(tmp_path / "zst" / "part1.*")],
        "pq": ["--input", str(tmp_path / "pq" / "*.parquet"), "--text-field", "body"],
        "hf": ["--input", str(tmp_path / "hf"), "--text-field", "content"],
    }
    outputs = {}
    for name, args in cases.items():
        r = tokenize(
            *args,
            "--output-prefix",
            str(tmp_path / "out" / name),
            "--tokenizer",
            str(llama3_json),
            "--workers",
            "2" if name == "gz" else "1",
            "--chunk-bytes",
            "2000",
            "--no-progress",
        )
        assert r.returncode == 0, (name, r.stderr)
        outputs[name] = read_prefix(tmp_path / "out" / name)
    first = outputs["jsonl"]
    for name, (b, i, manifest) in outputs.items():
        assert (b, i) == first[:2], name
        assert manifest["documents"] == len(texts) and manifest["documents_skipped"] == 0, name
        assert len(manifest["inputs"]) == 2 and all(len(x["sha256"]) == 64 for x in manifest["inputs"]), name
    assert outputs["gz"][2]["inputs"][0]["format"] == "jsonl.gz"
    expected = [[*ids, 128001] for ids in load_tokenizer(llama3_json).encode_batch(texts)]
    assert megatron_documents(tmp_path / "out" / "hf") == expected


def test_bos_eod_switches_and_uint16_for_small_vocab(tmp_path, tiny_sentencepiece):
    texts = ["hello world", "東京は大きい", "def f(): pass"]
    src = write_jsonl(tmp_path / "in.jsonl", texts)
    tok = load_tokenizer(tiny_sentencepiece)
    plain = tok.encode_batch(texts)
    for flags, want in (
        ([], [[*t, tok.eod_id] for t in plain]),  # default: EOD, no BOS
        (["--prepend-bos"], [[tok.bos_id, *t, tok.eod_id] for t in plain]),
        (["--no-append-eod"], plain),
        (["--prepend-bos", "--no-append-eod"], [[tok.bos_id, *t] for t in plain]),
    ):
        out = tmp_path / ("o" + "".join(flags))
        r = tokenize(
            "--input",
            str(src),
            "--output-prefix",
            str(out),
            "--tokenizer",
            str(tiny_sentencepiece),
            "--workers",
            "1",
            *flags,
        )
        assert r.returncode == 0, r.stderr
        b, i, manifest = read_prefix(out)
        assert manifest["dtype"] == "uint16" and i[17] == 8  # Megatron DType code of uint16
        assert megatron_documents(out) == want, flags
        assert len(b) == 2 * sum(map(len, want))


def test_text_field_missing_from_parquet_is_a_user_error(tmp_path, llama3_json):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["a", "b"]}), tmp_path / "x.parquet")
    r = tokenize(
        "--input", str(tmp_path / "x.parquet"), "--output-prefix", str(tmp_path / "o"), "--tokenizer", str(llama3_json)
    )
    assert r.returncode == 2 and "no column 'text'" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(tmp_path.glob("o.*.json")) and not (tmp_path / "o.bin").exists()


@pytest.mark.parametrize("pattern", ["nothing-*.jsonl", "x.txt"])
def test_bad_input_patterns_are_one_line_errors(tmp_path, llama3_json, pattern):
    (tmp_path / "x.txt").write_text("hi")
    r = tokenize(
        "--input", str(tmp_path / pattern), "--output-prefix", str(tmp_path / "o"), "--tokenizer", str(llama3_json)
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert np.all([not p.name.startswith("o.") for p in tmp_path.iterdir()])
