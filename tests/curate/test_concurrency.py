"""Two copies of one curation task never run at once: a resubmitted array element whose first copy still runs stops
with one line (exit 2) instead of writing the same staging files; a run of every task excludes array elements.

Run on CPU: `.venv/bin/pytest tests/curate/test_concurrency.py -q`.
"""

from __future__ import annotations

from curatehelp import cases, curate, write_jsonl, write_pipeline

from cptkit.util.lock import output_lock


def _pipeline(tmp_path):
    good = cases()["good"]["code"]
    write_jsonl(tmp_path / "in" / "a.jsonl", [{"id": "a", "text": good}])
    write_jsonl(tmp_path / "in" / "b.jsonl", [{"id": "b", "text": good}])
    return write_pipeline(tmp_path, "  - kind: syntax\n", tasks=2, extra="stats: {tokenizer: null}\n")


def test_a_running_task_is_not_run_twice(tmp_path):
    pipe = _pipeline(tmp_path)
    meta = tmp_path / "out" / ".curate"
    # The first copy of task 0, still running, holds what an array element holds.
    with output_lock(meta / "run", shared=True), output_lock(meta / "task-00000"):
        r = curate(str(pipe), "--shard-index", "0", "--num-shards", "2")
        assert r.returncode == 2, r.stderr
        assert "another run holds curate task 0 of" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out" / "data").exists()
        other = curate(str(pipe), "--shard-index", "1", "--num-shards", "2")  # another task is not blocked
        assert other.returncode == 0, other.stderr
        everything = curate(str(pipe))  # nor may a run of every task start beside it
        assert everything.returncode == 2 and "another run holds the curation of" in everything.stderr
    # Control: once the first copy is gone, the same command runs and completes the output.
    r = curate(str(pipe), "--shard-index", "0", "--num-shards", "2")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "curate_stats.json").exists()


def test_a_full_run_excludes_array_elements(tmp_path):
    pipe = _pipeline(tmp_path)
    with output_lock(tmp_path / "out" / ".curate" / "run"):  # a local run of every task
        r = curate(str(pipe), "--shard-index", "1", "--num-shards", "2")
        assert r.returncode == 2 and "another run holds the curation of" in r.stderr, r.stderr
