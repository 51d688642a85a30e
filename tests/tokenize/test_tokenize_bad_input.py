"""Bad records are skipped, counted per reason with file:line, never silently dropped; `--strict` makes them fatal.

Run on CPU: `.venv/bin/pytest tests/tokenize/test_tokenize_bad_input.py -q`.
"""

from __future__ import annotations

import json

import pytest
from tokhelp import cptkit, megatron_documents, read_prefix, tokenize

from cptkit.tokenize.tokenizers import load_tokenizer

GOOD = ["first good document", "二番目の文書", "def third(): return 3"]
# (raw line, reason): every reason the manifest knows, each on a known line.
BAD = [
    (b'{"text": "unterminated', "malformed_json"),
    (b'["a", "list", "not", "an", "object"]', "malformed_json"),
    (b'{"id": 7}', "missing_text"),
    (b'{"text": null}', "missing_text"),
    (b'{"text": 42}', "text_not_string"),
    (b'{"text": "bad \xff\xfe bytes"}', "invalid_utf8"),
    (b'{"text": "lone \\ud800 surrogate"}', "invalid_utf8"),
    (b'{"text": ""}', "empty_text"),
    (b'{"text": "nul \\u0000 inside"}', "nul_byte"),
    (b"   ", "blank_line"),
]


def _write(path):
    lines, expected_where = [], {}
    good = iter(GOOD)
    for k, (raw, reason) in enumerate(BAD):
        lines.append(raw)
        expected_where.setdefault(reason, []).append(f"{path}:{len(lines)}")
        if k % 4 == 0:
            lines.append(json.dumps({"text": next(good)}, ensure_ascii=False).encode())
    lines.extend(json.dumps({"text": t}).encode() for t in good)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines), expected_where


def test_bad_records_are_skipped_counted_and_located(tmp_path, llama3_json):
    src = tmp_path / "dirty.jsonl"
    n_lines, where = _write(src)
    out = tmp_path / "out"
    r = tokenize(
        "--input",
        str(src),
        "--output-prefix",
        str(out),
        "--tokenizer",
        str(llama3_json),
        "--workers",
        "1",
        "--chunk-bytes",
        "64",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    _, _, m = read_prefix(out)
    counts = {}
    for _, reason in BAD:
        counts[reason] = counts.get(reason, 0) + 1
    assert m["skipped"] == counts
    assert m["documents"] == len(GOOD)
    assert m["documents_read"] == n_lines == m["documents"] + m["documents_skipped"]  # read = written + skipped
    got_where = {}
    for ex in m["skipped_examples"]:
        got_where.setdefault(ex["reason"], []).append(ex["where"])
    assert got_where == where  # every example names the exact file:line, in input order
    assert "skipped" in r.stdout and "invalid_utf8 2" in r.stdout  # the summary says so too
    expected = [[*ids, 128001] for ids in load_tokenizer(llama3_json).encode_batch(GOOD)]
    assert megatron_documents(out) == expected


def test_only_the_first_few_examples_are_kept(tmp_path, llama3_json):
    src = tmp_path / "many.jsonl"
    src.write_text("".join('{"text": ""}\n' for _ in range(25)) + '{"text": "ok"}\n')
    r = tokenize(
        "--input", str(src), "--output-prefix", str(tmp_path / "o"), "--tokenizer", str(llama3_json), "--workers", "1"
    )
    assert r.returncode == 0, r.stderr
    _, _, m = read_prefix(tmp_path / "o")
    assert m["skipped"] == {"empty_text": 25} and len(m["skipped_examples"]) == 10
    assert m["skipped_examples"][-1]["where"].endswith("many.jsonl:10")


@pytest.mark.parametrize("k", [0, 5, 8])
def test_strict_makes_a_bad_record_fatal_with_one_line(tmp_path, llama3_json, k):
    raw, reason = BAD[k]
    src = tmp_path / "x.jsonl"
    src.write_bytes(b'{"text": "fine"}\n' + raw + b"\n")
    out = tmp_path / "out"
    run = cptkit if k == 0 else tokenize  # once through a real process: exit code and stderr as the user sees them
    r = run(
        "--input",
        str(src),
        "--output-prefix",
        str(out),
        "--tokenizer",
        str(llama3_json),
        "--workers",
        "2" if k == 0 else "1",
        "--strict",
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert reason.replace("_", " ") in lines[0] and "line 2" in lines[0] and str(src) in lines[0]
    assert not any(p.name.startswith("out.") and not p.name.endswith("cptkit-work") for p in tmp_path.iterdir())
    # Without --strict the same file tokenizes (the failure above is the strictness, not the file).
    assert (
        tokenize(
            "--input", str(src), "--output-prefix", str(out), "--tokenizer", str(llama3_json), "--workers", "1"
        ).returncode
        == 0
    )


def test_all_records_bad_is_an_error_not_an_empty_dataset(tmp_path, llama3_json):
    src = tmp_path / "x.jsonl"
    src.write_text('{"text": ""}\n{"nope": 1}\n')
    r = tokenize(
        "--input", str(src), "--output-prefix", str(tmp_path / "o"), "--tokenizer", str(llama3_json), "--workers", "1"
    )
    assert r.returncode == 2 and "all records were skipped" in r.stderr
    assert not (tmp_path / "o.idx").exists()
