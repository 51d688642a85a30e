"""`cptkit curate` end to end without pylint or an LLM (fast): routing and accounting of every record, the
annotate/select path, shards, dry run, bad input, and the output feeding `cptkit tokenize` unchanged.

Run on CPU: `.venv/bin/pytest tests/curate/test_pipeline.py -q`.
"""

from __future__ import annotations

import json
from collections import Counter

from curatehelp import cases, curate, read_shards, write_jsonl, write_pipeline

from cptkit.curate.steps import pylint_version

CASES = cases()
SYNTAX_LANG = "  - kind: syntax\n  - kind: language\n"


def _inputs(tmp_path, split: int = 2) -> list[dict]:
    records = [{"id": name, "text": case["code"], "repo": "handmade"} for name, case in sorted(CASES.items())]
    for i in range(split):
        write_jsonl(tmp_path / "in" / f"part{i}.jsonl", records[i::split])
    return records


def test_every_record_is_kept_or_rejected_once_with_its_reason(tmp_path):
    records = _inputs(tmp_path)
    pipe = write_pipeline(tmp_path, SYNTAX_LANG, tasks=2, extra="stats: {tokenizer: llama3}\n")
    r = curate(str(pipe), "--workers", "2")  # two shards in two processes
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    kept, rejected = read_shards(out / "data"), read_shards(out / "rejected")
    ids = Counter(x["id"] for x in kept + rejected)
    assert ids == Counter(x["id"] for x in records)  # nothing lost, nothing twice
    for row in kept + rejected:
        case = CASES[row["id"]]
        assert row["syntax_ok"] == case["syntax"] and row["python_version"]
        assert row["repo"] == "handmade"  # the input's other fields travel with the record
    for row in rejected:
        want = "syntax_error" if not CASES[row["id"]]["syntax"] else "language_not_ja_en"
        assert row["drop_reason"] == want and row["dropped_by"] == want.split("_")[0]
    assert {x["id"] for x in kept} == {n for n, c in CASES.items() if c["syntax"] and c.get("language", True)}
    assert "empty" in {x["id"] for x in kept}  # an empty file is a record (datatrove alone would skip it)

    stats = json.loads((out / "curate_stats.json").read_text())
    syntax, language = stats["stages"]
    assert syntax["counts"]["records_in"] == len(records)
    assert syntax["counts"]["dropped:syntax_error"] == sum(not c["syntax"] for c in CASES.values())
    assert language["counts"]["records_in"] == syntax["counts"]["records_out"]
    assert syntax["counts"]["tokens_in"] > syntax["counts"]["tokens_out"] > 0
    table = (out / "curate_stats.md").read_text()
    assert f"| syntax | {len(records)} |" in table and "language_not_ja_en" in table
    assert not (out / ".curate" / "staging").exists()


def test_accounting_check_catches_a_lost_record(tmp_path):
    from cptkit.curate.report import check_accounting

    good = [
        {"stage": "a", "counts": {"records_in": 3, "records_out": 2, "dropped:x": 1}},
        {"stage": "b", "counts": {"records_in": 2, "records_out": 2}},
    ]
    check_accounting(good)
    lost = [good[0], {"stage": "b", "counts": {"records_in": 1, "records_out": 1}}]
    try:
        check_accounting(lost)
    except RuntimeError as e:
        assert "previous stage kept 2" in str(e)
    else:
        raise AssertionError("a lost record went unnoticed")


def test_annotate_keeps_everything_and_select_rethresholds(tmp_path):
    version = pylint_version()
    scores = [2.0, 6.5, 7.0, 9.0, None]
    recs = [
        {"id": f"r{i}", "text": "x = 1\n", "pylint_raw_score": s, "pylint_status": "ok", "pylint_version": version}
        for i, s in enumerate(scores)
    ]
    write_jsonl(tmp_path / "in" / "a.jsonl", recs)
    # pylint is not run again (a recorded score from the same version is reused): threshold 6 over recorded scores
    stages = "  - kind: language\n    action: annotate\n  - kind: pylint\n    threshold: 6.0\n"
    r = curate(str(write_pipeline(tmp_path, stages, extra="stats: {tokenizer: null}\n")))
    assert r.returncode == 0, r.stderr
    kept = read_shards(tmp_path / "out" / "data")
    assert sorted(x["id"] for x in kept) == ["r1", "r2", "r3"]
    assert all(x["language_type"] == "English or Japanese" for x in kept)
    rejected = {x["id"]: x["drop_reason"] for x in read_shards(tmp_path / "out" / "rejected")}
    assert rejected == {"r0": "pylint_below_threshold", "r4": "pylint_no_score"}
    assert not (tmp_path / "out" / ".curate" / "journal" / "pylint" / "00000.jsonl").read_text()  # nothing rated

    # a later select over the annotated output changes the threshold without pylint
    sel = tmp_path / "sel"
    stages = "  - kind: select\n    field: pylint_score\n    min: 7.0\n"
    pipe = write_pipeline(sel, stages, inputs=str(tmp_path / "out" / "data" / "*.jsonl.gz"))
    assert curate(str(pipe)).returncode == 0
    assert sorted(x["id"] for x in read_shards(sel / "out" / "data")) == ["r2", "r3"]


def test_shards_run_separately_and_the_last_one_writes_the_statistics(tmp_path):
    records = _inputs(tmp_path, split=3)
    pipe = write_pipeline(tmp_path, SYNTAX_LANG, tasks=3, extra="stats: {tokenizer: null}\n")
    out = tmp_path / "out"
    for index in (2, 0):
        r = curate(str(pipe), "--shard-index", str(index), "--num-shards", "3")
        assert r.returncode == 0, r.stderr
        assert not (out / "curate_stats.json").exists()
    assert (out / "data" / "00002.jsonl.gz").exists() and not (out / "data" / "00001.jsonl.gz").exists()
    r = curate(str(pipe), "--shard-index", "1", "--num-shards", "3")
    assert r.returncode == 0 and (out / "curate_stats.json").exists()
    assert len(read_shards(out / "data")) + len(read_shards(out / "rejected")) == len(records)
    r = curate(str(pipe), "--shard-index", "1", "--num-shards", "3")  # again: already done, nothing changes
    assert r.returncode == 0
    assert len(read_shards(out / "data")) + len(read_shards(out / "rejected")) == len(records)

    r = curate(str(pipe), "--num-shards", "4")  # another shard count on the same output is refused
    assert r.returncode == 2 and "different pipeline (changed: tasks)" in r.stderr


def test_dry_run_shows_the_plan_and_writes_nothing(tmp_path):
    _inputs(tmp_path)
    stages = "  - kind: syntax\n  - kind: pylint\n  - kind: language\n"
    r = curate(str(write_pipeline(tmp_path, stages, tasks=2)), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "threshold: 7.0" in r.stdout and "2 jsonl file(s)" in r.stdout and "shard 1: 1 file(s)" in r.stdout
    assert "keep score >= 7.0" in r.stdout and "pylint 4." in r.stdout
    assert not (tmp_path / "out").exists()


def test_bad_pipeline_is_one_line_naming_file_and_field(tmp_path):
    _inputs(tmp_path)
    for stages, field in [
        ("  - kind: pylint\n    threshold: high\n", "stages.0.pylint.threshold"),
        ("  - kind: pylint\n    treshold: 7\n", "stages.0.pylint.treshold"),
        ("  - kind: dedup\n", "stages.0"),
        ("  - kind: syntax\n  - kind: syntax\n", "stages"),
    ]:
        pipe = write_pipeline(tmp_path, stages)
        r = curate(str(pipe))
        assert r.returncode == 2, stages
        assert r.stderr.count("\n") == 1 and f"{pipe}: {field}" in r.stderr, r.stderr
    pipe = write_pipeline(tmp_path, SYNTAX_LANG, inputs=str(tmp_path / "nothing" / "*.jsonl"))
    r = curate(str(pipe))
    assert r.returncode == 2 and "input.paths[0]" in r.stderr


def test_corrupt_input_line_stops_the_run_with_file_and_line(tmp_path):
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"id": "a", "text": "x = 1\n"}])
    with open(tmp_path / "in" / "a.jsonl", "a") as f:
        f.write('{"id": "b", "text": \n')
    r = curate(str(write_pipeline(tmp_path, SYNTAX_LANG, extra="stats: {tokenizer: null}\n")))
    assert r.returncode == 2 and "a.jsonl: line 2 is not JSON" in r.stderr
    assert not (tmp_path / "out" / "data").exists()  # nothing half-written under a final name


def test_output_feeds_cptkit_tokenize_unchanged(tmp_path):
    from cptkit.cli import main

    _inputs(tmp_path)
    assert curate(str(write_pipeline(tmp_path, SYNTAX_LANG))).returncode == 0
    kept = read_shards(tmp_path / "out" / "data")
    mix = tmp_path / "mix.yaml"
    mix.write_text(f"""name: t
tokenizer: llama3
total_tokens: 1k
sources:
  - name: code
    tokens: 1k
    input: {{paths: ["{tmp_path}/out/data/*.jsonl.gz"]}}
    prefix: {tmp_path}/tok/code_text_document
""")
    assert main(["tokenize", str(mix), "--workers", "1"]) == 0
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from cptkit.tokenize.tokenizers import load_tokenizer

    torch.set_num_threads(1)
    ds = IndexedDataset(str(tmp_path / "tok" / "code_text_document"), multimodal=False, mmap=True)
    tok = load_tokenizer("llama3")
    docs = sorted(ds[i].tolist() for i in range(len(ds)))
    texts = [x["text"] for x in kept if x["text"]]  # tokenize skips (and counts) empty texts: docs/tokenize.md
    assert len(texts) == len(kept) - 1  # the empty file
    want = sorted([*ids, tok.eod_id] for ids in tok.encode_batch(texts))
    assert len(docs) == len(texts) and docs == want


def test_parquet_input(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in").mkdir()
    table = pa.table({"url": ["a", "b", "c"], "text": ["x = 1\n", "print 'py2'\n", ""], "score": [4.1, 4.5, 4.0]})
    pq.write_table(table, tmp_path / "in" / "p.parquet")
    text = f"""name: t
input: {{paths: ["{tmp_path}/in/*.parquet"], format: parquet, id_field: url}}
output: {tmp_path}/out
stats: {{tokenizer: null}}
stages:
  - kind: syntax
"""
    (tmp_path / "p.yaml").write_text(text)
    assert curate(str(tmp_path / "p.yaml")).returncode == 0
    kept = read_shards(tmp_path / "out" / "data")
    assert [(x["id"], x["score"]) for x in kept] == [("a", 4.1), ("c", 4.0)]
    assert [x["id"] for x in read_shards(tmp_path / "out" / "rejected")] == ["b"]
