"""Stages 3-4 and the SwallowMath rewrite: journaled, resumable per shard, never re-asking a finished record; the
tiny random model runs the SGCR -> SCOR chain end to end on CPU through transformers.

Run on CPU: `.venv/bin/pytest tests/curate/test_rewrite.py -q` (the tiny-model test is marked slow).
"""

from __future__ import annotations

import json

import pytest
from curatehelp import curate, read_shards, write_jsonl, write_pipeline

import cptkit.curate.engines as engines

ANSWER = "### Evaluation: 5\n\n### Suggestions:\n- names\n\n### Improved Code:\n```python\ndef f_{i}(x: int) -> int:\n    return x + {i}\n```\n"


class ScriptedEngine:
    """Stands in for vLLM: answers SGCR prompts with a canned answer naming the record, and can die mid-run."""

    def __init__(self, die_on_call: int | None = None):
        self.asked: list[str] = []
        self.calls = 0
        self.die_on_call = die_on_call

    def render(self, messages):
        return "\n".join(m["content"] for m in messages)

    def generate(self, conversations, sampling):
        self.calls += 1
        if self.calls == self.die_on_call:
            raise RuntimeError("node lost")
        users = [c[-1]["content"] for c in conversations]
        self.asked += users
        return [ANSWER.format(i=u.split("#")[1].strip()) if "no-answer" not in u else "I cannot." for u in users]


def _records(n: int) -> list[dict]:
    return [{"id": f"r{i}", "text": f"x = 1  # {i}{' no-answer' if i % 5 == 4 else ''}\n"} for i in range(n)]


SGCR = "  - kind: sgcr\n    engine: {model: /nonexistent, batch_size: 3}\n"


def test_killed_rewrite_resumes_without_re_asking_or_duplicates(tmp_path, monkeypatch):
    records = _records(10)
    write_jsonl(tmp_path / "in" / "a.jsonl", records)
    pipe = write_pipeline(tmp_path, SGCR, extra="stats: {tokenizer: null}\n")

    dying = ScriptedEngine(die_on_call=3)  # batches of 3: 6 records answered and journaled, then the node dies
    monkeypatch.setattr(engines, "build_engine", lambda cfg: dying)
    with pytest.raises(RuntimeError, match="node lost"):
        curate(str(pipe))
    assert len(dying.asked) == 6
    assert not (tmp_path / "out" / "data").exists()  # nothing under a final name before the shard is done
    journal = tmp_path / "out" / ".curate" / "journal" / "sgcr" / "00000.jsonl"
    assert len(journal.read_text().splitlines()) == 6
    with open(journal, "a") as f:
        f.write('{"seq": 6, "id": "r6", "ans')  # torn line of a process killed mid-write: cut off, not trusted

    again = ScriptedEngine()
    monkeypatch.setattr(engines, "build_engine", lambda cfg: again)
    r = curate(str(pipe))
    assert r.returncode == 0, r.stderr
    assert again.asked == [rec["text"] for rec in records[6:]]  # only what no journal line holds
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted(e["seq"] for e in entries) == list(range(10))

    kept = read_shards(tmp_path / "out" / "data")
    rejected = read_shards(tmp_path / "out" / "rejected")
    assert sorted(x["id"] for x in kept + rejected) == sorted(x["id"] for x in records)
    assert {x["id"] for x in rejected} == {"r4", "r9"} and all(x["drop_reason"] == "no_improved_code" for x in rejected)
    for x in kept:
        i = x["id"][1:]
        assert x["text"] == f"def f_{i}(x: int) -> int:\n    return x + {i}" and x["sgcr_rewritten"] is True
        assert x["sgcr_score"] == 5.0


def test_changed_input_under_a_journal_is_refused(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "in" / "a.jsonl", _records(4))
    pipe = write_pipeline(tmp_path, SGCR, extra="stats: {tokenizer: null}\n")
    monkeypatch.setattr(engines, "build_engine", lambda cfg: ScriptedEngine(die_on_call=2))
    with pytest.raises(RuntimeError):
        curate(str(pipe))  # the first batch (3 records) is journaled, the second call dies
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"id": "other", "text": "y = 2  # 0\n"}, *_records(4)[1:]])
    r = curate(str(pipe))
    assert r.returncode == 2 and "the input changed" in r.stderr


def test_scor_and_math_keep_rules(tmp_path, monkeypatch):
    class Fixed(ScriptedEngine):
        def generate(self, conversations, sampling):
            out = []
            for c in conversations:
                u = c[-1]["content"]
                out.append(
                    {"short": "```python\nx=1\n```", "noblock": "z" * 80}.get(
                        u.strip(), "Here:\n```python\n" + u + "\n```\n" + "-" * 40
                    )
                )
            return out

    write_jsonl(
        tmp_path / "in" / "a.jsonl",
        [{"id": k, "text": k} for k in ("short", "noblock", "def good_function(): return 42")],
    )
    monkeypatch.setattr(engines, "build_engine", lambda cfg: Fixed())
    stages = "  - kind: scor\n    engine: {model: /x}\n"
    assert curate(str(write_pipeline(tmp_path, stages, extra="stats: {tokenizer: null}\n"))).returncode == 0
    kept = read_shards(tmp_path / "out" / "data")
    reasons = {x["id"]: x["drop_reason"] for x in read_shards(tmp_path / "out" / "rejected")}
    assert reasons == {"short": "short_output", "noblock": "no_code_block"}
    assert [x["text"] for x in kept] == ["def good_function(): return 42\n"]  # first block + final newline

    class Math(ScriptedEngine):
        def generate(self, conversations, sampling):
            return [
                "ok" if "tiny" in c[-1]["content"] else "The sum is 820.\n#### 820 " + "." * 40 for c in conversations
            ]

    monkeypatch.setattr(engines, "build_engine", lambda cfg: Math())
    math = tmp_path / "math"
    write_jsonl(
        math / "in" / "a.jsonl",
        [{"id": "p", "text": "sum 1..40"}, {"id": "t", "text": "tiny"}, {"id": "l", "text": "x" * 200_000}],
    )
    stages = "  - kind: math_rewrite\n    engine: {model: /x}\n"
    assert curate(str(write_pipeline(math, stages, extra="stats: {tokenizer: null}\n"))).returncode == 0
    reasons = {x["id"]: x["drop_reason"] for x in read_shards(math / "out" / "rejected")}
    assert reasons == {"t": "short_output", "l": "prompt_too_long"}
    assert [x["text"][:15] for x in read_shards(math / "out" / "data")] == ["The sum is 820."]


@pytest.mark.slow
def test_tiny_model_runs_sgcr_then_scor_end_to_end_on_cpu(tmp_path, tiny_chat_model):
    records = [{"id": f"c{i}", "text": f"def f{i}(a):\n    return a * {i}\n"} for i in range(5)]
    write_jsonl(tmp_path / "in" / "a.jsonl", records)
    engine = f"{{model: {tiny_chat_model}, backend: transformers, batch_size: 2}}"
    sampling = "{max_new_tokens: 12, seed: 0}"
    stages = (
        f"  - kind: sgcr\n    action: annotate\n    engine: {engine}\n    sampling: {sampling}\n"
        f"  - kind: scor\n    action: annotate\n    engine: {engine}\n    sampling: {sampling}\n"
    )
    r = curate(str(write_pipeline(tmp_path, stages)))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    for stage in ("sgcr", "scor"):
        entries = [
            json.loads(x) for x in (out / ".curate" / "journal" / stage / "00000.jsonl").read_text().splitlines()
        ]
        assert [e["id"] for e in entries] == [x["id"] for x in records]
        assert all(isinstance(e["answer"], str) and e["answer"] for e in entries)  # the model really generated
    kept = read_shards(out / "data")
    assert sorted(x["id"] for x in kept) == sorted(x["id"] for x in records)  # annotate: nothing dropped
    assert [c.model for c in engines._ENGINES].count(str(tiny_chat_model)) == 1  # SGCR and SCOR share the model
    stats = json.loads((out / "curate_stats.json").read_text())
    assert stats["stages"][0]["counts"]["generated"] == 5 and stats["stages"][0]["params"]["temperature"] == 0.2
    # a rerun asks nothing: both stages are complete
    assert curate(str(write_pipeline(tmp_path, stages))).returncode == 0
    assert len((out / ".curate" / "journal" / "sgcr" / "00000.jsonl").read_text().splitlines()) == 5


def test_engine_rejects_a_non_local_model(tmp_path):
    from cptkit.curate.config import Engine
    from cptkit.errors import UserError

    with pytest.raises(UserError, match=r"no config\.json"):
        engines.build_engine(Engine(model=str(tmp_path), backend="transformers"))
